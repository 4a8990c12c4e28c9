"""bench.replicate's comparison of two label configs: paired differences and fact-set views."""

import pytest

from bench.replicate import arm, fact_set_view, paired


def test_paired_differences_are_per_seed_main_minus_baseline():
    results = {
        "lacy": [{"cascade_fact_accuracy": 0.20}, {"cascade_fact_accuracy": 0.30}],
        arm("lacy", "old"): [{"cascade_fact_accuracy": 0.10}, {"cascade_fact_accuracy": 0.30}],
        "standard": [{"cascade_fact_accuracy": 0.5}, {"cascade_fact_accuracy": 0.5}],
    }
    got = paired(results, "old", ("cascade_fact_accuracy",))
    # Differences 0.1 and 0.0: mean 0.05, sample std 0.0707; standard has no baseline row.
    assert list(got) == ["lacy: cascade_fact_accuracy"]
    mean, sd = got["lacy: cascade_fact_accuracy"]
    assert mean == pytest.approx(0.05) and sd == pytest.approx(0.1 / 2**0.5)


def test_fact_set_view_reads_one_fact_set_under_plain_names():
    summary = {
        "lacy": {
            "cascade_fact_accuracy": (0.2, 0.01),
            "old/cascade_fact_accuracy": (0.3, 0.02),
            "cascade_accuracy": (0.5, 0.0),
        }
    }
    assert fact_set_view(summary, "old/") == {"lacy": {"cascade_fact_accuracy": (0.3, 0.02)}}
    assert fact_set_view(summary, "") == {"lacy": {"cascade_fact_accuracy": (0.2, 0.01)}}

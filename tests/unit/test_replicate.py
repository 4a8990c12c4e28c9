"""bench.replicate's comparison of two label configs: paired differences and fact-set views."""

import pytest

from bench.replicate import (
    arm,
    fact_set_view,
    leads_for_budget,
    objective_of,
    paired,
    parse_args,
    split_leads,
)


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


def test_leads_for_budget_takes_the_fewest_leads_within_the_passes():
    # 100 targets at 2 passes need 50 tokens: 20 + 20 falls short, the third lead reaches 60.
    assert leads_for_budget([20, 20, 20, 20], 100, 2.0) == 3
    assert leads_for_budget([20, 20, 20, 20], 100, 5.0) == 1
    with pytest.raises(ValueError, match="too few"):
        leads_for_budget([20, 20], 100, 1.0)


def test_held_out_leads_stay_the_same_whatever_the_training_count():
    small = split_leads(parse_args(["--train-docs", "3", "--eval-docs", "4"]))
    large = split_leads(parse_args(["--train-docs", "9", "--eval-docs", "4"]))
    assert small[1] == large[1] and len(small[1]) == 4
    assert small[0] == large[0][:3] and len(large[0]) == 9
    held = {d["id"] for d in large[1]}
    assert not held & {d["id"] for d in large[0]}


def test_default_training_leads_hold_the_budget_within_max_passes():
    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    args = parse_args(["--budget", "3000", "--max-passes", "2", "--eval-docs", "2"])
    train, _ = split_leads(args)
    tok = load_tokenizer(resolve_model_dir())
    counts = [len(tok(d["text"])["input_ids"]) for d in train]
    assert sum(counts) >= 1500 > sum(counts[:-1])


def test_an_objective_with_neg_trains_with_call_negatives():
    assert objective_of("lacy") == ("lacy", False)
    assert objective_of("lacy+neg") == ("lacy", True)
    with pytest.raises(ValueError, match="only option"):
        objective_of("lacy+full")

import numpy as np
import pytest

from pipelines.stats import HistogramQuantilesFn, StatsFn, histogram_quantile


def combine(fn, batches):
    """Run a CombineFn over batches split across two accumulators, merged."""
    accs = [fn.create_accumulator(), fn.create_accumulator()]
    for i, b in enumerate(batches):
        accs[i % 2] = fn.add_input(accs[i % 2], b)
    return fn.extract_output(fn.merge_accumulators(accs))


@pytest.mark.parametrize("q", [0.0, 0.1, 0.4, 0.85, 1.0])
def test_histogram_quantile_matches_numpy_to_the_resolution(q):
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1.5, 50_000)
    counts = combine(HistogramQuantilesFn(1e-3), np.array_split(values, 37))
    want = np.quantile(values, q, method="inverted_cdf")
    got = histogram_quantile(counts, q, 1e-3)
    assert want - 1e-3 < got <= want
    # Every value at or above the exact quantile passes the threshold.
    assert (values >= got).sum() >= (values >= want).sum()


def test_histogram_is_independent_of_order_and_bundling():
    rng = np.random.default_rng(1)
    values = rng.exponential(2.0, 30_000)
    fn = HistogramQuantilesFn(1e-3)
    a = combine(fn, np.array_split(values, 7))
    b = combine(fn, np.array_split(rng.permutation(values), 13))
    assert (a == b).all()
    assert histogram_quantile(fn.create_accumulator(), 0.4, 1e-3) is None
    big = combine(fn, [[1e6, 3.0]])
    assert histogram_quantile(big, 1.0, 1e-3) == pytest.approx(50.0, abs=1e-3)


def record(pos, fact, dele, loss, ents):
    return {
        "pos": np.array(pos, dtype=object),
        "is_fact": np.array(fact),
        "delegate": np.array(dele),
        "ref_loss": np.array(loss, dtype=np.float32),
        "ent_type": np.array(ents, dtype=object),
    }


def test_stats_counts_and_shares():
    recs = [
        record(
            ["PROPN", "VERB", "NUM"], [1, 0, 1], [1, 0, 0], [5.0, 1.0, 0.5], ["PERSON", "", "DATE"]
        ),
        record(["PROPN", ""], [1, 0], [0, 0], [np.nan, 2.0], ["GPE", ""]),
    ]
    recs = [
        {k: (v.astype(bool) if k in ("is_fact", "delegate") else v) for k, v in r.items()}
        for r in recs
    ]
    out = combine(StatsFn(), recs)
    assert (out["documents_out"], out["tokens"], out["fact_tokens"], out["delegated_tokens"]) == (
        2,
        5,
        3,
        1,
    )
    assert out["scored_tokens"] == 4
    assert out["delegation_rate_by_pos"]["PROPN"] == 0.5
    assert out["fact_rate_by_pos"]["VERB"] == 0.0
    assert out["delegation_rate_by_ent_type"] == {"DATE": 0.0, "GPE": 0.0, "PERSON": 1.0}
    assert sum(out["loss_histogram"]["fact"]) == 2 and sum(out["loss_histogram"]["nonfact"]) == 2

import numpy as np

from pipelines.stats import StatsFn


def combine(fn, batches):
    """Run a CombineFn over batches split across two accumulators, merged."""
    accs = [fn.create_accumulator(), fn.create_accumulator()]
    for i, b in enumerate(batches):
        accs[i % 2] = fn.add_input(accs[i % 2], b)
    return fn.extract_output(fn.merge_accumulators(accs))


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

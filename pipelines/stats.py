"""Dataset statistics as Beam CombineFns over labelled records (commutative and associative:
counts, fixed-bin loss histograms for the card, and loss sketches for thresholds and quantiles)."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import numpy as np

from lacy_labels.thresholds import MAX_ENTRIES, LossSketch

# Headline figures shown by the dataset card and the report.
COUNT_KEYS = (
    "documents_in",
    "documents_out",
    "documents_rejected",
    "tokens",
    "fact_tokens",
    "delegated_tokens",
)
SHARE_KEYS = ("fact_share", "delegated_share", "delegated_share_of_facts", "threshold")
HIST_MAX = 20.0  # nats
HIST_BINS = 80


def _empty() -> dict:
    return {
        "documents": 0,
        "tokens": 0,
        "fact_tokens": 0,
        "delegated_tokens": 0,
        "scored_tokens": 0,
        "by_pos": Counter(),
        "fact_by_pos": Counter(),
        "delegated_by_pos": Counter(),
        "by_ent_type": Counter(),
        "delegated_by_ent_type": Counter(),
        "hist_fact": np.zeros(HIST_BINS, dtype=np.int64),
        "hist_nonfact": np.zeros(HIST_BINS, dtype=np.int64),
    }


def _hist(loss: np.ndarray) -> np.ndarray:
    loss = loss[~np.isnan(loss)]
    return np.histogram(np.clip(loss, 0, HIST_MAX - 1e-6), bins=HIST_BINS, range=(0, HIST_MAX))[0]


class StatsFn(beam.CombineFn):
    """Counts per document, POS and entity type; loss histograms for fact / non-fact tokens."""

    def create_accumulator(self):
        return _empty()

    def add_input(self, acc, r):
        fact, dele, loss = r["is_fact"], r["delegate"], r["ref_loss"]
        acc["documents"] += 1
        acc["tokens"] += len(fact)
        acc["fact_tokens"] += int(fact.sum())
        acc["delegated_tokens"] += int(dele.sum())
        acc["scored_tokens"] += int((~np.isnan(loss)).sum())
        acc["by_pos"].update(r["pos"].tolist())
        acc["fact_by_pos"].update(r["pos"][fact].tolist())
        acc["delegated_by_pos"].update(r["pos"][dele].tolist())
        ents = r["ent_type"]
        acc["by_ent_type"].update(ents[ents != ""].tolist())
        acc["delegated_by_ent_type"].update(ents[dele & (ents != "")].tolist())
        acc["hist_fact"] += _hist(loss[fact])
        acc["hist_nonfact"] += _hist(loss[~fact])
        return acc

    def merge_accumulators(self, accs):
        out = _empty()
        for a in accs:
            for k, v in a.items():
                out[k] = out[k] + v  # numbers, arrays and Counters all add
        return out

    def extract_output(self, acc):
        def share(num: Counter, den: Counter) -> dict:
            return {k: round(num[k] / den[k], 6) for k in sorted(den) if den[k]}

        t = max(acc["tokens"], 1)
        return {
            "documents_out": acc["documents"],
            "tokens": acc["tokens"],
            "scored_tokens": acc["scored_tokens"],
            "fact_tokens": acc["fact_tokens"],
            "delegated_tokens": acc["delegated_tokens"],
            "fact_share": round(acc["fact_tokens"] / t, 6),
            "delegated_share": round(acc["delegated_tokens"] / t, 6),
            "delegated_share_of_facts": round(
                acc["delegated_tokens"] / max(acc["fact_tokens"], 1), 6
            ),
            "tokens_by_pos": dict(sorted(acc["by_pos"].items())),
            "pos_share": {k: round(v / t, 6) for k, v in sorted(acc["by_pos"].items())},
            "fact_rate_by_pos": share(acc["fact_by_pos"], acc["by_pos"]),
            "delegation_rate_by_pos": share(acc["delegated_by_pos"], acc["by_pos"]),
            "tokens_by_ent_type": dict(sorted(acc["by_ent_type"].items())),
            "delegation_rate_by_ent_type": share(acc["delegated_by_ent_type"], acc["by_ent_type"]),
            "loss_histogram": {
                "bin_edges": np.linspace(0, HIST_MAX, HIST_BINS + 1).round(4).tolist(),
                "fact": acc["hist_fact"].tolist(),
                "nonfact": acc["hist_nonfact"].tolist(),
            },
        }


class LossSketchFn(beam.CombineFn):
    """Beam wiring of `lacy_labels.thresholds.LossSketch` over batched float inputs: bounded,
    mergeable, and its result independent of element order and bundling (Beam's
    ApproximateQuantiles is not, so labels would differ between runs)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries

    def create_accumulator(self):
        return LossSketch(self.max_entries)

    def add_input(self, acc, values):
        return acc.add(values)

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = next(accs)
        for a in accs:
            out = out.merge(a)
        return out

    def extract_output(self, acc):
        return acc

"""Dataset statistics as a Beam CombineFn over labelled records (commutative and associative:
counts and fixed-bin loss histograms), plus helpers turning quantile grids into thresholds."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import numpy as np

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
                out[k] = out[k] + v if not isinstance(v, Counter) else out[k] + v
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


class HistogramQuantilesFn(beam.CombineFn):
    """Exact-to-`resolution` quantiles of batched float inputs from fixed-width bin counts over
    [0, max_value] (larger values fall in the last bin). Integer counts make the result
    independent of element order and bundling, so labels are reproducible on any runner (Beam's
    ApproximateQuantiles is order-dependent once it holds more than ~20k values)."""

    def __init__(self, resolution: float = 1e-3, max_value: float = 50.0):
        self.resolution, self.bins = resolution, int(np.ceil(max_value / resolution)) + 1

    def create_accumulator(self):
        return np.zeros(self.bins, dtype=np.int64)

    def add_input(self, acc, values):
        v = np.asarray(values, dtype=np.float64)
        if len(v):
            idx = np.clip(np.floor(v / self.resolution), 0, self.bins - 1).astype(np.int64)
            acc += np.bincount(idx, minlength=self.bins)
        return acc

    def merge_accumulators(self, accs):
        return sum(accs, self.create_accumulator())

    def extract_output(self, acc):
        return acc


def histogram_quantile(counts: np.ndarray, q: float | None, resolution: float) -> float | None:
    """Inverted-CDF quantile: the lower edge of the bin holding the ceil(q * n)-th value, so
    every value in that bin passes `loss >= threshold` (None for an empty population)."""
    n = int(counts.sum())
    if q is None or n == 0:
        return None
    rank = max(1, int(np.ceil(q * n)))
    return round(float(np.searchsorted(np.cumsum(counts), rank) * resolution), 9)


def histogram_summary(counts: np.ndarray, resolution: float) -> dict:
    if int(counts.sum()) == 0:
        return {}
    return {
        f"p{p:02d}": histogram_quantile(counts, p / 100, resolution)
        for p in (1, 10, 25, 50, 75, 90, 99)
    }


def pick_quantile(grid: list[float], q: float | None) -> float | None:
    """Value at quantile q from an evenly spaced grid (min .. max) of approximate quantiles."""
    if q is None or not grid:
        return None
    return float(grid[int(round(q * (len(grid) - 1)))])


def summarize_quantiles(grid: list[float]) -> dict:
    if not grid:
        return {}
    return {
        f"p{p:02d}": round(pick_quantile(grid, p / 100), 4) for p in (1, 10, 25, 50, 75, 90, 99)
    }

"""Loss thresholds: the one quantile rule behind `delegate`, for a document or a whole dataset.

A rule wants a share `1 - q` of its population (fact losses for `lacy`, all losses for `loss`)
delegated, with `delegate = loss >= threshold`. The threshold is the candidate value `t` (a
population value, or "above everything") whose delegated count `#{loss >= t}` is nearest to
`(1 - q) * n`; a halfway case takes the lower `t` (one more token delegated). Without ties that
delegates exactly round((1 - q) * n) tokens; tokens tied at the threshold always go together, so
only ties (or a coarsened sketch's bins) can push the share further from the target.

`LossSketch` holds the population as counts per float32 bit pattern (for non-negative floats the
bit order is the numeric order): exact while it has at most `max_entries` distinct values; past
that it drops low mantissa bits until it fits (relative bin width 2**(level - 23)). The level it
ends at depends only on the multiset of values, so the threshold is independent of element
order, bundling and worker count, and the sketch's size is bounded whatever the dataset's."""

from __future__ import annotations

import numpy as np

ABOVE_ALL = float(np.finfo(np.float32).max)  # "delegate nothing": no finite loss reaches it
MAX_ENTRIES = 1 << 16  # ~0.8 MB; at 1e9 values the bins are still ~1e-4 relative wide
SUMMARY_PERCENTILES = (1, 10, 25, 50, 75, 90, 99)


def _bits(values) -> np.ndarray:
    """Order-preserving uint32 keys of the non-NaN values (negatives and -0.0 count as 0)."""
    v = np.asarray(values, dtype=np.float32).ravel()
    v = v[~np.isnan(v)]
    return (np.maximum(v, np.float32(0)) + np.float32(0)).view(np.uint32)


class LossSketch:
    """Mergeable, deterministic counts of float32 losses (see the module docstring)."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        if max_entries < 512:
            raise ValueError("max_entries must be >= 512 (one bin per float32 exponent)")
        self.max_entries, self.level = max_entries, 0
        self.keys = np.zeros(0, dtype=np.uint32)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0

    @classmethod
    def of(cls, values, max_entries: int = MAX_ENTRIES) -> LossSketch:
        return cls(max_entries).add(values)

    def add(self, values) -> LossSketch:
        keys = _bits(values)
        if len(keys):
            self._pending.append(keys)
            self._pending_n += len(keys)
            if self._pending_n >= self.max_entries:
                self._compact()
        return self

    def merge(self, other: LossSketch) -> LossSketch:
        other._compact()
        self._compact()
        level = max(self.level, other.level)
        keys = np.concatenate(
            [self.keys >> (level - self.level), other.keys >> (level - other.level)]
        )
        counts = np.concatenate([self.counts, other.counts])
        self.level = level
        self._set(keys, counts)
        return self

    @property
    def n(self) -> int:
        self._compact()
        return int(self.counts.sum())

    def _compact(self) -> None:
        if not self._pending:
            return
        new = np.concatenate(self._pending) >> self.level
        self._pending, self._pending_n = [], 0
        self._set(
            np.concatenate([self.keys, new]),
            np.concatenate([self.counts, np.ones(len(new), dtype=np.int64)]),
        )

    def _set(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Sum counts per key, coarsening one mantissa bit at a time until it fits."""
        while True:
            uniq, inverse = np.unique(keys, return_inverse=True)
            if len(uniq) <= self.max_entries:
                break
            keys, self.level = keys >> 1, self.level + 1
        self.keys = uniq.astype(np.uint32)
        self.counts = np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)

    def edges(self) -> np.ndarray:
        """The lowest value each bin can hold (the values themselves at level 0)."""
        self._compact()
        return (self.keys.astype(np.uint32) << np.uint32(self.level)).view(np.float32)

    def threshold(self, q: float | None) -> float | None:
        """Threshold leaving a share q of the population below it (None: empty population)."""
        self._compact()
        n = int(self.counts.sum())
        if q is None or n == 0:
            return None
        below = np.concatenate([[0], np.cumsum(self.counts)])  # tokens below edge i; n = above all
        i = int(np.searchsorted(below, q * n))
        if i == len(below) or (i > 0 and q * n - below[i - 1] <= below[i] - q * n):
            i -= 1  # the candidate below is as near or nearer: it delegates more
        return float(self.edges()[i]) if i < len(self.keys) else ABOVE_ALL

    def value_at(self, q: float) -> float | None:
        """Inverted-CDF quantile: the (lower edge of the) ceil(q * n)-th smallest value."""
        self._compact()
        n = int(self.counts.sum())
        if n == 0:
            return None
        rank = max(1, int(np.ceil(q * n)))
        return float(self.edges()[int(np.searchsorted(np.cumsum(self.counts), rank))])

    def summary(self, digits: int = 6) -> dict:
        """p01 .. p99 of the population ({} when empty)."""
        if self.n == 0:
            return {}
        return {f"p{p:02d}": round(self.value_at(p / 100), digits) for p in SUMMARY_PERCENTILES}

    def __eq__(self, other) -> bool:
        self._compact()
        other._compact()
        return (
            self.level == other.level
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.counts, other.counts)
        )

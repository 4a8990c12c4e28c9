"""Label rules: which target tokens are delegated (become <CALL>).

- `lacy`: a fact token whose reference loss is at or above a threshold taken over fact tokens
  (default the 40th percentile, so the top 60% of facts by loss are delegated);
- with `min_loss` (nats), a token is delegated only when its loss is also at or above that
  floor: a fact the reference model predicts well (a repeated name, the "19" of a year) is
  learnable, whatever the quantile over the dataset's facts says;
- `loss`: any token whose loss is at or above the (1 - fraction) quantile over all tokens
  (default fraction 0.15);
- `none`: nothing is delegated.

A threshold is either given (dataset-wide: a `LossSketch` merged over the whole dataset, or a
fixed value) or computed within one document; both use `lacy_labels.thresholds`, so the
quantile rule and its tie rule are the same at every scope. Tokens without a loss (NaN) are
never delegated and never enter a threshold's population."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lacy_labels.thresholds import LossSketch

RULES = ("lacy", "loss", "none")
SCOPES = ("dataset", "document")


@dataclass(frozen=True)
class LabelRule:
    rule: str = "lacy"
    fact_quantile: float = 0.4  # lacy: threshold quantile over fact-token losses
    loss_fraction: float = 0.15  # loss: share of all tokens delegated
    scope: str = "dataset"  # where thresholds come from: the whole dataset or each document
    min_loss: float = 1.0  # an absolute floor (nats) under every threshold (docs/design.md)

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if not 0.0 <= self.fact_quantile <= 1.0:
            raise ValueError("fact_quantile must be in [0, 1]")
        if not 0.0 <= self.loss_fraction <= 1.0:
            raise ValueError("loss_fraction must be in [0, 1]")
        if not self.min_loss >= 0.0:
            raise ValueError("min_loss must be >= 0 nats")

    def to_dict(self) -> dict:
        return asdict(self)

    def quantile(self) -> float | None:
        """The quantile of the threshold's population (None for `none`)."""
        if self.rule == "lacy":
            return self.fact_quantile
        if self.rule == "loss":
            return 1.0 - self.loss_fraction
        return None

    def population(self, loss: np.ndarray, is_fact: np.ndarray) -> np.ndarray:
        """The losses a threshold is taken over: fact tokens (lacy) or all tokens (loss)."""
        loss = np.asarray(loss, dtype=np.float32)
        keep = ~np.isnan(loss)
        if self.rule == "lacy":
            keep &= np.asarray(is_fact, dtype=bool)
        return loss[keep]

    def threshold(self, loss: np.ndarray, is_fact: np.ndarray) -> float | None:
        """Threshold over one document's population (None when it is empty or rule is none)."""
        return LossSketch.of(self.population(loss, is_fact)).threshold(self.quantile())

    def dataset_threshold(self, sketch: LossSketch) -> float | None:
        """The threshold a whole dataset's population sketch gives (None with document scope:
        each document then takes its own)."""
        return sketch.threshold(self.quantile()) if self.scope == "dataset" else None

    def delegate(
        self, loss: np.ndarray, is_fact: np.ndarray, threshold: float | None = None
    ) -> np.ndarray:
        """Boolean per token. With scope `document` (or no dataset threshold given) the threshold
        is computed from this document; tokens without a loss are never delegated."""
        loss = np.asarray(loss, dtype=np.float32)
        out = np.zeros(len(loss), dtype=bool)
        if self.rule == "none":
            return out
        if self.scope == "document" or threshold is None:
            threshold = self.threshold(loss, is_fact)
        if threshold is None:
            return out
        with np.errstate(invalid="ignore"):
            out = loss >= np.float32(max(threshold, self.min_loss))
        if self.rule == "lacy":
            out &= np.asarray(is_fact, dtype=bool)
        return out & ~np.isnan(loss)

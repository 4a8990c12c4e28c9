"""Training objectives on logits [B, T, V] and aligned target labels.

Every objective returns (loss, stats) where stats counts `gt_targets` (targets that received a
ground-truth gradient: the paper's budget accounting) and `call_targets`.

- standard: plain NLL over the full vocabulary; `<CALL>` is never a target.
- lacy: targets flagged `delegate` become `<CALL>` (full softmax); every other target gets an
  NLL whose softmax excludes `<CALL>` (the model is not pushed away from `<CALL>` there).
- lacy-online: fact targets whose *current* loss is in the top `fraction` (0.6) of the batch's
  fact losses become `<CALL>`.
- loss-online: the top `fraction` (0.15) of all targets by current loss become `<CALL>`.
- rho: Rho-1; keep only the top `fraction` (0.6) of targets by current loss minus `ref_loss`
  (targets without a reference loss are dropped); NLL excluding `<CALL>`.
- ignore-facts: fact targets are masked out; NLL excluding `<CALL>` on the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("lacy", "lacy-online", "loss-online", "rho", "ignore-facts", "standard")
DEFAULT_FRACTION = {"lacy-online": 0.6, "loss-online": 0.15, "rho": 0.6}


def nll_without_call(logits: torch.Tensor, targets: torch.Tensor, call: int) -> torch.Tensor:
    """Per-target NLL with the softmax renormalised over the vocabulary without `<CALL>`.
    `<CALL>` is the last id (it is added to the tokenizer), so dropping it is a view."""
    if call == logits.shape[-1] - 1:
        return F.cross_entropy(
            logits[..., :call].float().transpose(1, 2), targets, reduction="none"
        )
    masked = logits.float().clone()
    masked[..., call] = float("-inf")
    return F.cross_entropy(masked.transpose(1, 2), targets, reduction="none")


def nll_full(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")


def top_fraction(values: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the top `fraction` of `values` among positions where `mask` holds
    (ties broken by position, so the count is exact: round(fraction * n))."""
    n = int(mask.sum())
    k = int(round(fraction * n))
    out = torch.zeros_like(mask)
    if k == 0:
        return out
    flat = torch.where(mask, values.detach().float(), torch.tensor(float("-inf"))).flatten()
    idx = torch.topk(flat, k).indices
    out.view(-1)[idx] = True
    return out


def compute_loss(
    objective: str,
    logits,
    targets,
    delegate,
    is_fact,
    ref_loss,
    call: int,
    fraction: float | None = None,
):
    """(mean loss over trained targets, stats dict)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    fraction = DEFAULT_FRACTION.get(objective) if fraction is None else fraction
    ones = torch.ones_like(targets, dtype=torch.bool)
    if objective == "standard":
        per, train, calls = nll_full(logits, targets), ones, ~ones
    else:
        per = nll_without_call(logits, targets, call)
        train, calls = ones, ~ones
        if objective == "lacy":
            calls = delegate.bool()
        elif objective == "lacy-online":
            calls = top_fraction(per, is_fact.bool(), fraction)
        elif objective == "loss-online":
            calls = top_fraction(per, ones, fraction)
        elif objective == "rho":
            has_ref = ~torch.isnan(ref_loss)
            excess = per.detach() - torch.nan_to_num(ref_loss, nan=0.0)
            train = top_fraction(excess, has_ref, fraction)
        elif objective == "ignore-facts":
            train = ~is_fact.bool()
        if calls.any():
            call_targets = torch.full_like(targets, call)
            per = torch.where(calls, nll_full(logits, call_targets), per)
    gt = train & ~calls
    used = train | calls
    loss = (per * used).sum() / used.sum().clamp(min=1)
    return loss, {
        "gt_targets": int(gt.sum()),
        "call_targets": int(calls.sum()),
        "trained_targets": int(used.sum()),
    }

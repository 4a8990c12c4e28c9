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

`call_negatives=True` trains every target that is not a `<CALL>` with the full softmax
instead, so `<CALL>` is pushed down wherever the labels do not call. The paper's objective
never pushes it down: its `<CALL>` probability then only rises, and on real text its ranking of
positions stops following the facts as training goes on (docs/training.md).
"""

from __future__ import annotations

import torch

OBJECTIVES = ("lacy", "lacy-online", "loss-online", "rho", "ignore-facts", "standard")
DEFAULT_FRACTION = {"lacy-online": 0.6, "loss-online": 0.15, "rho": 0.6}


def token_nlls(logits: torch.Tensor, targets: torch.Tensor, call: int):
    """Per-target (NLL with `<CALL>` excluded from the softmax, NLL of `<CALL>` under the full
    softmax, NLL of the target under the full softmax), from one log-sum-exp pass over the
    vocabulary: lse_full = logaddexp(lse_without_call, logit_call)."""
    lg = logits.float()
    if call == lg.shape[-1] - 1:  # <CALL> is added last to the tokenizer: a view drops it
        body = lg[..., :call]
    else:
        body = lg.clone()
        body[..., call] = float("-inf")
    lse_nocall = torch.logsumexp(body, dim=-1)
    logit_call = lg[..., call]
    lse_full = torch.logaddexp(lse_nocall, logit_call)
    logit_target = lg.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return lse_nocall - logit_target, lse_full - logit_call, lse_full - logit_target


def nll_without_call(logits: torch.Tensor, targets: torch.Tensor, call: int) -> torch.Tensor:
    """Per-target NLL with the softmax renormalised over the vocabulary without `<CALL>`."""
    return token_nlls(logits, targets, call)[0]


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
    call_negatives: bool = False,
):
    """(mean loss over trained targets, stats dict)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
    fraction = DEFAULT_FRACTION.get(objective) if fraction is None else fraction
    ones = torch.ones_like(targets, dtype=torch.bool)
    nocall, call_nll, full = token_nlls(logits, targets, call)
    if objective == "standard":
        per, train, calls = full, ones, ~ones
    else:
        per = full if call_negatives else nocall
        train, calls = ones, ~ones
        if objective == "lacy":
            calls = delegate.bool()
        elif objective == "lacy-online":
            calls = top_fraction(nocall, is_fact.bool(), fraction)
        elif objective == "loss-online":
            calls = top_fraction(nocall, ones, fraction)
        elif objective == "rho":
            has_ref = ~torch.isnan(ref_loss)
            excess = nocall.detach() - torch.nan_to_num(ref_loss, nan=0.0)
            train = top_fraction(excess, has_ref, fraction)
        elif objective == "ignore-facts":
            train = ~is_fact.bool()
        per = torch.where(calls, call_nll, per)
    gt = train & ~calls
    used = train | calls
    loss = (per * used).sum() / used.sum().clamp(min=1)
    return loss, {
        "gt_targets": int(gt.sum()),
        "call_targets": int(calls.sum()),
        "trained_targets": int(used.sum()),
    }


class LacyLoss:
    """An objective as a loss function for any training loop, with the paper's accounting.

    `transformers.Trainer(compute_loss_func=LacyLoss("lacy", call))` calls it with the model's
    outputs and the labels of `trainer.packing.collate`; a plain loop calls
    `loss_fn(model(input_ids=x).logits, labels)`. The loss is the mean over the micro-batch's
    trained targets, as lacy-train computes it, divided by `gradient_accumulation_steps` (the
    Trainer does not divide a `compute_loss_func`'s loss itself). Under gradient mode it adds
    each micro-batch's counts to `totals`: `gt_targets` (targets that received a ground-truth
    gradient: the paper's budget), `call_targets` and `trained_targets`; `last` holds the
    latest (loss before the division, counts)."""

    def __init__(
        self,
        objective: str,
        call: int,
        fraction: float | None = None,
        gradient_accumulation_steps: int = 1,
        call_negatives: bool = False,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
        self.objective, self.call, self.fraction = objective, call, fraction
        self.call_negatives = call_negatives
        self.accum = gradient_accumulation_steps
        self.totals = {"gt_targets": 0, "call_targets": 0, "trained_targets": 0}
        self.last: tuple[float, dict] | None = None

    def __call__(self, outputs, labels: dict, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs if isinstance(outputs, torch.Tensor) else outputs["logits"]
        loss, stats = compute_loss(
            self.objective,
            logits.float(),
            labels["targets"],
            labels["delegate"],
            labels["is_fact"],
            labels["ref_loss"],
            self.call,
            self.fraction,
            self.call_negatives,
        )
        self.last = (float(loss.detach()), stats)
        if torch.is_grad_enabled():  # training, not evaluation
            for k in self.totals:
                self.totals[k] += stats[k]
        return loss / self.accum

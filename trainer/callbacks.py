"""`transformers.Trainer` callbacks for lacy objectives."""

from __future__ import annotations

from transformers import TrainerCallback

from trainer.objectives import LacyLoss


class GroundTruthBudget(TrainerCallback):
    """Adds a `LacyLoss`'s accounting to the Trainer's logs (gt_tokens: targets that received a
    ground-truth gradient so far, call_targets, trained_targets) and, given `token_budget`,
    stops training once gt_tokens reaches it, as `lacy-train --token_budget` does. Counts are
    this process's (with several processes, each counts its own micro-batches)."""

    def __init__(self, loss: LacyLoss, token_budget: int | None = None):
        self.loss, self.token_budget = loss, token_budget

    def on_step_end(self, args, state, control, **kwargs):
        if self.token_budget is not None and self.loss.totals["gt_targets"] >= self.token_budget:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            t = self.loss.totals
            counts = {"gt_tokens": t["gt_targets"], "call_targets": t["call_targets"],
                      "trained_targets": t["trained_targets"]}  # fmt: skip
            logs.update(counts)  # what the Trainer prints and reports
            if state.log_history and state.log_history[-1].get("loss") == logs["loss"]:
                state.log_history[-1].update(counts)  # and trainer_state.json
        return control

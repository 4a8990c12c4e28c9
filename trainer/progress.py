"""lacy-train's progress bar: tqdm on stderr over the run's budget."""

from __future__ import annotations

import sys

from trainer.config import TrainConfig


class ProgressBar:
    """A tqdm bar on stderr over the run's budget: steps with --max_steps, ground-truth tokens
    with --token_budget (a resumed run starts where it stopped)."""

    def __init__(self, cfg: TrainConfig, step: int, gt_tokens: int):
        from tqdm import tqdm

        self.by_steps = cfg.max_steps is not None
        total, done = (cfg.max_steps, step) if self.by_steps else (cfg.token_budget, gt_tokens)
        unit = "step" if self.by_steps else "tok"
        self.bar = tqdm(total=total, initial=done, unit=unit, desc=cfg.objective,
                        file=sys.stderr, leave=False)  # fmt: skip

    def update(self, m: dict) -> None:
        self.bar.update(1 if self.by_steps else m["gt_targets"])
        self.bar.set_postfix(loss=m["loss"], step=m["step"])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

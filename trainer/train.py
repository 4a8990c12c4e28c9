"""Train an SLM on labelled shards with a <CALL> objective.

    python -m trainer.train --data DIR --output CKPT --objective NAME [--preset tiny]
        [--max-steps N | --token-budget N] [--seed S] [--resume]

A budget in tokens counts targets that received a ground-truth gradient (the paper's
accounting), so objectives that delegate or drop targets train on more text for the same
budget. The checkpoint is a save_pretrained folder (safetensors + tokenizer);
training_state.pt beside it holds the optimizer, scheduler, step, data position and RNG states,
so --resume continues with the identical next step. metrics.jsonl gets one line per log step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.data import SequenceLoader
from trainer.model import build_model, call_id, load_slm_tokenizer, separator_id
from trainer.objectives import OBJECTIVES, compute_loss

STATE_FILE = "training_state.pt"


@dataclass
class TrainConfig:
    data: str
    output: str
    objective: str = "lacy"
    preset: str = "tiny"
    max_steps: int | None = None
    token_budget: int | None = None
    seed: int = 0
    resume: bool = False
    seq_len: int = 128
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    fraction: float | None = None
    device: str = "cpu"
    dtype: str = "float32"
    log_every: int = 10
    save_every: int = 0
    reference_model: str = "smollm2"
    progress: bool = True

    def schedule_steps(self) -> int:
        """Steps the LR schedule spans (a token budget is converted with the batch size)."""
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.token_budget / (self.batch_size * self.seq_len)))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to min_lr_ratio * lr."""
    total = cfg.schedule_steps()
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        if cfg.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {cfg.objective!r}")
        if not (cfg.max_steps or cfg.token_budget):
            raise ValueError("give --max-steps or --token-budget")
        self.cfg = cfg
        self.out = Path(cfg.output)
        seed_everything(cfg.seed)
        self.tok = load_slm_tokenizer(cfg.reference_model)
        self.call = call_id(self.tok)
        self.eot = separator_id(self.tok)
        self.model = build_model(cfg.preset, len(self.tok), cfg.seed).to(cfg.device)
        self.model.to(getattr(torch, cfg.dtype))
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.95),
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_at(s, cfg) / cfg.lr)
        self.step, self.gt_tokens, position = 0, 0, 0
        if cfg.resume and (self.out / STATE_FILE).is_file():
            position = self._load_state()
        self.loader = SequenceLoader(cfg.data, cfg.seq_len, cfg.batch_size, self.eot, position)

    def done(self) -> bool:
        if self.cfg.max_steps is not None:
            return self.step >= self.cfg.max_steps
        return self.gt_tokens >= self.cfg.token_budget

    def train_step(self) -> dict:
        cfg = self.cfg
        b = self.loader.next_batch()
        t = lambda a: torch.from_numpy(a).to(cfg.device)  # noqa: E731
        self.model.train()
        logits = self.model(input_ids=t(b.input_ids)).logits
        loss, st = compute_loss(
            cfg.objective,
            logits,
            t(b.targets),
            t(b.delegate),
            t(b.is_fact),
            t(b.ref_loss),
            self.call,
            cfg.fraction,
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        self.gt_tokens += st["gt_targets"]
        return {
            "step": self.step,
            "loss": round(float(loss.detach()), 5),
            "lr": self.sched.get_last_lr()[0],
            "grad_norm": round(float(norm), 4),
            "gt_tokens": self.gt_tokens,
            **st,
        }

    def fit(self) -> list[dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        history = []
        bar = _progress(self.cfg)
        with (self.out / "metrics.jsonl").open("a") as metrics:
            while not self.done():
                m = self.train_step()
                history.append(m)
                if self.step % self.cfg.log_every == 0 or self.done():
                    metrics.write(json.dumps(m) + "\n")
                    metrics.flush()
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=m["loss"], gt=m["gt_tokens"])
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self.save()
        if bar:
            bar.close()
        self.save()
        return history

    def save(self) -> None:
        """Checkpoint folder + training state (written last, atomically)."""
        self.model.save_pretrained(self.out, safe_serialization=True)
        self.tok.save_pretrained(self.out)
        (self.out / "train_config.json").write_text(json.dumps(asdict(self.cfg), indent=1))
        state = {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "gt_tokens": self.gt_tokens,
            "position": self.loader.position,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "config": asdict(self.cfg),
        }
        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out / STATE_FILE)

    def _load_state(self) -> int:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(self.out / "model.safetensors"), strict=False)
        if getattr(self.model.config, "tie_word_embeddings", False):
            self.model.tie_weights()
        state = torch.load(self.out / STATE_FILE, weights_only=False)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.gt_tokens = state["step"], state["gt_tokens"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        return state["position"]


def _progress(cfg: TrainConfig):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, desc=cfg.objective, file=sys.stderr, leave=False)


def parse_args(argv=None) -> TrainConfig:
    ap = argparse.ArgumentParser(
        prog="python -m trainer.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data", required=True, help="labelled output DIR (DIR/data/*.parquet)")
    ap.add_argument("--output", required=True, help="checkpoint folder")
    ap.add_argument("--objective", required=True, choices=OBJECTIVES)
    ap.add_argument("--preset", default="tiny", choices=("tiny", "small", "paper-334m"))
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-steps", type=int)
    budget.add_argument("--token-budget", type=int, help="ground-truth-gradient targets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    for name in ("seq_len", "batch_size", "warmup_steps", "log_every", "save_every"):
        ap.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=TrainConfig.__dataclass_fields__[name].default,
        )
    for name in ("lr", "min_lr_ratio", "weight_decay", "grad_clip"):
        ap.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=TrainConfig.__dataclass_fields__[name].default,
        )
    ap.add_argument(
        "--fraction",
        type=float,
        default=None,
        help="online/rho selection fraction (defaults: 0.6, 0.15, 0.6)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reference-model", default="smollm2")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return TrainConfig(**vars(ap.parse_args(argv)))


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = parse_args(argv)
    history = Trainer(cfg).fit()
    last = history[-1] if history else {}
    print(
        json.dumps(
            {
                "output": cfg.output,
                "steps": last.get("step"),
                "loss": last.get("loss"),
                "gt_tokens": last.get("gt_tokens"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

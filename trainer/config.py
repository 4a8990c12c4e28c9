"""lacy-train's settings (`TrainConfig`: every flag and config key, with its default and help), and
the learning-rate schedule and optimizer they define."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lacy_labels.cli import setting
from lacy_labels.reference import DEFAULT_MODEL
from trainer.data import MAX_SHARD_BYTES
from trainer.model import PRESETS
from trainer.objectives import OBJECTIVES

AMP = ("auto", "bf16", "none")


@dataclass
class TrainConfig:
    data: str = setting(
        help="labelled output: a folder, an fsspec URL (gs://, s3://, hf://datasets/ORG/NAME, "
        "https://) or a Hub dataset id ORG/NAME"
    )
    output: str = setting(help="checkpoint folder")
    objective: str = setting("lacy", "training objective", choices=OBJECTIVES)
    preset: str = setting("tiny", "model size", choices=tuple(PRESETS))
    init: str | None = setting(
        None,
        "continue pretraining a causal LM instead of a fresh --preset: a model folder, a .gguf "
        "or 'smollm2' (its tokenizer must be the labels'; <CALL> is added)",
    )
    max_steps: int | None = setting(None, "optimizer steps (or --token_budget)")
    token_budget: int | None = setting(
        None, "targets that receive a ground-truth gradient (or --max_steps)"
    )
    seed: int = setting(0, "seed of the weights, data order and selection")
    resume: bool = setting(
        False, "continue from the newest sound checkpoint (OUT/checkpoint-STEP/training_state.pt)"
    )
    stop_after: int | None = setting(
        None, "train at most N steps in this invocation, checkpoint, and exit (--resume goes on)"
    )
    seq_len: int = setting(128, "tokens per training sequence")
    batch_size: int = setting(8, "sequences per micro-batch, per rank")
    global_batch_tokens: int | None = setting(
        None, "tokens per optimizer step over all ranks (gradient accumulation fills it)"
    )
    lr: float = setting(3e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "final learning rate / peak (cosine decay)")
    warmup_steps: int = setting(20, "linear warmup steps")
    weight_decay: float = setting(0.1, "AdamW weight decay (not on norms and biases)")
    grad_clip: float = setting(1.0, "gradient norm clip")
    fraction: float | None = setting(
        None, "online/rho selection fraction (defaults: lacy-online 0.6, loss-online 0.15, rho 0.6)"
    )
    call_negatives: bool = setting(
        False,
        "train every target that is not a <CALL> with the full softmax, pushing <CALL> down where "
        "the labels do not call (the paper renormalises without <CALL>)",
    )
    device: str = setting("cpu", "cpu or cuda (one GPU per torchrun rank)")
    dtype: str = setting("float32", "parameter dtype (keep float32 with --amp)")
    amp: str = setting(
        "auto", "autocast of the forward: auto = bf16 on CUDA, none on CPU", choices=AMP
    )
    log_every: int = setting(10, "steps between metrics.jsonl lines")
    save_every: int = setting(
        200, "steps between checkpoints (0: at the end only; a crash then loses the whole run)"
    )
    max_shard_bytes: int = setting(
        MAX_SHARD_BYTES, "refuse to read a shard larger than this (a wrong URL, a hostile server)"
    )
    reference_model: str = setting(DEFAULT_MODEL, "the labels' reference model (its tokenizer)")
    compact_vocab: bool = setting(
        False,
        "train on the token ids present in --data only (embeddings and output layer shrink to "
        "them; checkpoints still load with the full vocabulary): for small corpora",
    )
    progress: bool = setting(True, "progress bar on stderr")

    def validate(self) -> TrainConfig:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}")
        if self.compact_vocab and self.init:
            raise ValueError("--compact_vocab trains a fresh --preset; it cannot shrink --init")
        if bool(self.max_steps) == bool(self.token_budget):
            raise ValueError("give one of --max_steps and --token_budget")
        return self

    def step_tokens(self, world: int = 1) -> int:
        return self.global_batch_tokens or self.batch_size * self.seq_len * world

    def accum_steps(self, world: int = 1) -> int:
        """Micro-batches per rank and step that make up the global batch."""
        micro = self.batch_size * self.seq_len * world
        if self.step_tokens(world) % micro:
            raise ValueError(
                f"global_batch_tokens {self.global_batch_tokens} is not a multiple of "
                f"batch_size x seq_len x world ({micro})"
            )
        return self.step_tokens(world) // micro

    def schedule_steps(self, world: int = 1) -> int:
        """Steps the LR schedule spans (a token budget is converted with the global batch)."""
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.token_budget / self.step_tokens(world)))


def lr_at(step: int, cfg: TrainConfig, world: int = 1) -> float:
    """Linear warmup then cosine decay to min_lr_ratio * lr."""
    total = cfg.schedule_steps(world)
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def optimizer(model, cfg: TrainConfig, fused: bool):
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        **({"fused": True} if fused else {}),
    )

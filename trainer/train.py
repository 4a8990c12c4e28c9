"""Train an SLM on labelled shards with a <CALL> objective.

    python -m trainer.train --data DIR_OR_URL --output CKPT --objective NAME
        [--preset tiny | --init MODEL_DIR_OR_smollm2] [--max_steps N | --token_budget N]
        [--global_batch_tokens N] [--seed S] [--resume]
    torchrun --nproc_per_node N -m trainer.train ...   (data-parallel: gloo on CPU, NCCL on CUDA)

--data is a labelled output folder, any fsspec URL (gs://, s3://, hf://datasets/ORG/NAME,
https://) or a Hub dataset id. Each optimizer step covers --global_batch_tokens tokens (default
one micro-batch of --batch_size sequences per rank): micro-batches are dealt round-robin to the
ranks and gradients accumulated, so a run with N processes takes the same steps as one process
with the same global batch. One rank writes checkpoints, metrics and the progress bar.

A budget in tokens counts targets that received a ground-truth gradient (the paper's
accounting), so objectives that delegate or drop targets train on more text for the same
budget. Every --save_every steps and at the end the run writes OUT/checkpoint-STEP/ (the model,
tokenizer and training_state.pt: optimizer, scheduler, step, data position, RNG states),
crash-safe (trainer.checkpoint), and OUT holds a save_pretrained copy of the newest model;
--resume continues from the newest sound checkpoint with the identical next step (at the same
world size). metrics.jsonl gets one line per log step. On CUDA the forward runs under bf16
autocast (fp32 master weights) and AdamW is fused; on CPU everything stays fp32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lacy_labels import cli
from trainer import checkpoint
from trainer.config import TrainConfig, lr_at, optimizer
from trainer.data import SequenceLoader
from trainer.distributed import init_distributed
from trainer.model import SLM, build_slm
from trainer.objectives import LacyLoss
from trainer.progress import ProgressBar
from trainer.vocab import CompactVocab

__all__ = ["FitResult", "TrainConfig", "Trainer", "lr_at", "main"]
log = logging.getLogger("lacy")
LABELS = ("targets", "delegate", "is_fact", "ref_loss")


@dataclass
class FitResult:
    """What a run produced: the trained SLM, its counters and one metrics dict per step of
    this invocation (the lines of metrics.jsonl, every step)."""

    output: Path
    slm: SLM
    steps: int
    gt_tokens: int
    history: list[dict] = field(default_factory=list)

    @property
    def model(self):
        """The trained model over the full vocabulary, in eval mode."""
        return self.slm.full_vocabulary().eval()

    @property
    def tokenizer(self):
        return self.slm.tokenizer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One training run: `Trainer(cfg).fit()`. Resumes from OUT's newest sound checkpoint with
    --resume and refuses a folder that holds another run's checkpoints."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.dist, self.device = init_distributed(cfg.device)
        self.accum = cfg.accum_steps(self.dist.world)
        self.out = Path(cfg.output)
        self.resumed = self._checkpoint_to_resume()
        seed_everything(cfg.seed)
        saved = CompactVocab.load(self.resumed[0]) if self.resumed and cfg.compact_vocab else None
        self.slm = build_slm(
            cfg.preset, init=cfg.init, reference_model=cfg.reference_model, seed=cfg.seed,
            compact_data=cfg.data if cfg.compact_vocab else None, vocab=saved,
        )  # fmt: skip
        self.model = self.slm.model.to(self.device).to(getattr(torch, cfg.dtype))
        self.net = self._wrap(self.model)
        cuda = self.device.split(":")[0] == "cuda"
        self.amp = {"auto": cuda, "bf16": True, "none": False}[cfg.amp]
        self.loss_fn = LacyLoss(
            cfg.objective, self.slm.call_row, cfg.fraction, self.accum, cfg.call_negatives
        )
        self.opt = optimizer(self.model, cfg, fused=cuda)
        world = self.dist.world
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_at(s, cfg, world) / cfg.lr
        )
        self.step, self.gt_tokens, position, self.saved_step = 0, 0, 0, None
        if self.resumed is not None:
            position = self._resume(*self.resumed)
        self.loader = SequenceLoader(
            cfg.data, cfg.seq_len, cfg.batch_size, self.slm.separator, position, self.dist.rank,
            world, cfg.max_shard_bytes,
        )  # fmt: skip

    def _checkpoint_to_resume(self) -> tuple[Path, dict] | None:
        if self.cfg.resume:  # (folder, state) of the newest sound checkpoint, or None
            return checkpoint.latest(self.out, clean=self.dist.main)
        if checkpoint.checkpoints(self.out):
            raise ValueError(
                f"{self.out} holds the checkpoints of another run: pass --resume to continue it, "
                "or name a new folder (lacy does not overwrite them)"
            )
        return None

    def _wrap(self, model):
        if self.dist.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.dist.local_rank] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def done(self) -> bool:
        if self.cfg.max_steps is not None:
            return self.step >= self.cfg.max_steps
        return self.gt_tokens >= self.cfg.token_budget

    def _micro_step(self, sync: bool) -> list[float]:
        """Forward + backward of one micro-batch through `LacyLoss` (the loss transformers'
        Trainer users get); [loss, gt, call, trained targets]."""
        b = self.loader.next_batch()
        if self.slm.lut is not None:  # ids -> compact rows (every target is in the vocabulary)
            b.input_ids, b.targets = self.slm.lut[b.input_ids], self.slm.lut[b.targets]
        t = lambda a: torch.from_numpy(a).to(self.device, non_blocking=True)  # noqa: E731
        quiet = self.net.no_sync() if self.dist.world > 1 and not sync else contextlib.nullcontext()
        with quiet:
            with torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.amp):
                logits = self.net(input_ids=t(b.input_ids)).logits
            self.loss_fn(logits, {k: t(getattr(b, k)) for k in LABELS}).backward()
        loss, st = self.loss_fn.last
        return [loss, st["gt_targets"], st["call_targets"], st["trained_targets"]]

    def train_step(self) -> dict:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        sums = torch.zeros(4, dtype=torch.float64)
        for i in range(self.accum):
            sums += torch.tensor(self._micro_step(sync=i == self.accum - 1), dtype=torch.float64)
        if self.dist.world > 1:
            dist.all_reduce(sums)  # every rank logs and stops on the same global figures
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        per_step = self.accum * self.dist.world * self.cfg.batch_size
        self.loader.align(self.loader.position + (-self.loader.position) % per_step)
        loss, gt, calls, trained = sums.tolist()
        self.gt_tokens += int(gt)
        return {
            "step": self.step,
            "loss": round(loss / (self.accum * self.dist.world), 5),
            "lr": self.sched.get_last_lr()[0],
            "grad_norm": round(float(norm), 4),
            "gt_tokens": self.gt_tokens,
            "gt_targets": int(gt),
            "call_targets": int(calls),
            "trained_targets": int(trained),
        }

    def fit(self) -> FitResult:
        """Train to the budget (or --stop_after steps), checkpointing on the way and at the end."""
        main = self.dist.main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        history = []
        shown = main and self.cfg.progress
        bar = ProgressBar(self.cfg, self.step, self.gt_tokens) if shown else None
        metrics = (self.out / "metrics.jsonl").open("a") if main else contextlib.nullcontext()
        t0 = time.monotonic()
        with metrics, bar or contextlib.nullcontext():
            while not self.done() and len(history) != self.cfg.stop_after:
                m = self.train_step() | {"elapsed_s": round(time.monotonic() - t0, 3)}
                history.append(m)
                if main and (self.step % self.cfg.log_every == 0 or self.done()):
                    metrics.write(json.dumps(m) + "\n")
                    metrics.flush()
                if bar is not None:
                    bar.update(m)
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self.save()
        if self.saved_step != self.step:
            self.save()
        return FitResult(self.out, self.slm, self.step, self.gt_tokens, history)

    def save(self) -> None:
        """A crash-safe checkpoint (trainer.checkpoint), by rank 0; the other ranks wait for it,
        so that a checkpoint is complete before anyone goes on."""
        if self.dist.main:
            config = asdict(self.cfg)
            state = checkpoint.training_state(
                self.opt, self.sched, self.step, self.gt_tokens, self.loader.position,
                self.dist.world, config,
            )  # fmt: skip
            files = checkpoint.model_files(self.slm, config)
            checkpoint.write_checkpoint(self.out, self.step, files, state)
        if self.dist.world > 1:
            dist.barrier()
        self.saved_step = self.step

    def _resume(self, folder: Path, state: dict) -> int:
        """Weights and state of a verified checkpoint; returns the data position to go on from."""
        checkpoint.load_weights(self.model, folder)
        try:
            self.step, self.gt_tokens, position = checkpoint.restore_state(
                state, self.opt, self.sched, self.dist.world
            )
        except ValueError as e:
            raise ValueError(f"{self.out}: {e}") from None
        if self.dist.main:
            checkpoint.drop_metrics_after(self.out / "metrics.jsonl", self.step)
        log.info("resumed %s at step %d", folder, self.step)
        return position


def parse_args(argv=None) -> TrainConfig:
    cfg, _ = cli.parse(TrainConfig, argv, "lacy-train", __doc__)
    try:
        return cfg.validate()
    except ValueError as e:
        cli.build_parser(TrainConfig, "lacy-train", __doc__).error(str(e))


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = parse_args(argv)
    trainer = Trainer(cfg)
    result = trainer.fit()
    if dist.is_initialized():
        dist.destroy_process_group()
    if not trainer.dist.main:
        return 0
    last = result.history[-1] if result.history else {}
    summary = {"output": cfg.output, "steps": result.steps, "loss": last.get("loss"),
               "gt_tokens": result.gt_tokens}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lacy_labels import cli
from lacy_labels.cli import setting
from lacy_labels.reference import DEFAULT_MODEL
from trainer import checkpoint
from trainer.data import MAX_SHARD_BYTES, SequenceLoader
from trainer.model import (
    PRESETS,
    build_model,
    call_id,
    load_pretrained_slm,
    load_slm_tokenizer,
    separator_id,
)
from trainer.objectives import OBJECTIVES, compute_loss
from trainer.vocab import CompactLM, CompactVocab

AMP = ("auto", "bf16", "none")
log = logging.getLogger("lacy")


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


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, str]:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA, one GPU per
    local rank); returns (Dist, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.split(":")[0] == "cuda"
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local), device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.dist, self.device = init_distributed(cfg.device)
        self.accum = cfg.accum_steps(self.dist.world)
        self.out = Path(cfg.output)
        if cfg.resume:  # (folder, state) of the newest sound checkpoint, or None
            self.resumed = checkpoint.latest(self.out, clean=self.dist.main)
        elif checkpoint.checkpoints(self.out):
            raise ValueError(
                f"{self.out} holds the checkpoints of another run: pass --resume to continue it, "
                "or name a new folder (lacy does not overwrite them)"
            )
        else:
            self.resumed = None
        seed_everything(cfg.seed)
        if cfg.init:
            self.model, self.tok = load_pretrained_slm(cfg.init, cfg.reference_model)
        else:
            self.tok = load_slm_tokenizer(cfg.reference_model)
        self.call = call_id(self.tok)
        self.eot = separator_id(self.tok)
        self.vocab = self._compact_vocab() if cfg.compact_vocab else None  # never with --init
        if not cfg.init:
            rows = len(self.vocab) if self.vocab else len(self.tok)
            self.model = build_model(cfg.preset, rows, cfg.seed)
        self.lut = self.vocab.lut if self.vocab else None
        self.call_row = self.vocab.call_row if self.vocab else self.call
        self.model.to(self.device).to(getattr(torch, cfg.dtype))
        self.net = self._wrap(self.model)
        self.cuda = self.device.split(":")[0] == "cuda"
        self.amp = {"auto": self.cuda, "bf16": True, "none": False}[cfg.amp]
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.95),
            **({"fused": True} if self.cuda else {}),
        )
        world = self.dist.world
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_at(s, cfg, world) / cfg.lr
        )
        self.step, self.gt_tokens, position, self.saved_step = 0, 0, 0, None
        if self.resumed is not None:
            position = self._load_state(*self.resumed)
        self.loader = SequenceLoader(
            cfg.data, cfg.seq_len, cfg.batch_size, self.eot, position, self.dist.rank, world,
            cfg.max_shard_bytes,
        )  # fmt: skip

    def slm(self):
        """The trained model over the full vocabulary (what `load_checkpoint` returns)."""
        return CompactLM(self.model, self.vocab) if self.vocab else self.model

    def _compact_vocab(self) -> CompactVocab:
        """The checkpoint's map when resuming, else the ids in --data (with SEP and <CALL>)."""
        if self.resumed is not None:
            saved = CompactVocab.load(self.resumed[0])
            if saved is not None:
                return saved
        return CompactVocab.from_shards(self.cfg.data, self.call, len(self.tok), [self.eot])

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
        """Forward + backward of one micro-batch; [loss, gt, call, trained targets]."""
        cfg, b = self.cfg, self.loader.next_batch()
        if self.lut is not None:  # ids -> compact rows (every target is in the vocabulary)
            b.input_ids, b.targets = self.lut[b.input_ids], self.lut[b.targets]
        t = lambda a: torch.from_numpy(a).to(self.device, non_blocking=True)  # noqa: E731
        quiet = self.net.no_sync() if self.dist.world > 1 and not sync else contextlib.nullcontext()
        with quiet:
            with torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.amp):
                logits = self.net(input_ids=t(b.input_ids)).logits
            loss, st = compute_loss(
                cfg.objective,
                logits.float(),
                t(b.targets),
                t(b.delegate),
                t(b.is_fact),
                t(b.ref_loss),
                self.call_row,
                cfg.fraction,
                cfg.call_negatives,
            )
            (loss / self.accum).backward()
        return [float(loss.detach()), st["gt_targets"], st["call_targets"], st["trained_targets"]]

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

    def fit(self) -> list[dict]:
        main = self.dist.main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        history = []
        bar = _progress(self.cfg) if main else None
        metrics = (self.out / "metrics.jsonl").open("a") if main else contextlib.nullcontext()
        t0 = time.monotonic()
        with metrics:
            while not self.done() and len(history) != self.cfg.stop_after:
                m = self.train_step() | {"elapsed_s": round(time.monotonic() - t0, 3)}
                history.append(m)
                if main and (self.step % self.cfg.log_every == 0 or self.done()):
                    metrics.write(json.dumps(m) + "\n")
                    metrics.flush()
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=m["loss"], gt=m["gt_tokens"])
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self.save()
        if bar:
            bar.close()
        if self.saved_step != self.step:
            self.save()
        return history

    def save(self) -> None:
        """A crash-safe checkpoint (trainer.checkpoint), by rank 0; the other ranks wait for it,
        so that a checkpoint is complete before anyone goes on."""
        if self.dist.main:
            checkpoint.write_checkpoint(self.out, self.step, self._write_files, self._state())
        if self.dist.world > 1:
            dist.barrier()
        self.saved_step = self.step

    def _write_files(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tok.save_pretrained(folder)
        if self.vocab is not None:
            self.vocab.save(folder)
        (folder / "train_config.json").write_text(json.dumps(asdict(self.cfg), indent=1))

    def _state(self) -> dict:
        """Everything but the weights that the next step depends on, as plain types and tensors
        (loadable with weights_only=True)."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "gt_tokens": self.gt_tokens,
            "position": self.loader.position,
            "world_size": self.dist.world,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
                "python": random.getstate(),
            },
            "config": asdict(self.cfg),
        }

    def _load_state(self, folder: Path, state: dict) -> int:
        """Weights and state of a verified checkpoint (trainer.checkpoint.latest); returns the
        data position to continue from."""
        checkpoint.load_weights(self.model, folder)
        saved_world = state.get("world_size", 1)
        if saved_world != self.dist.world:
            raise ValueError(
                f"{self.out}: the checkpoint was trained by {saved_world} process(es); resume "
                f"with the same world size, not {self.dist.world}"
            )
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.gt_tokens = state["step"], state["gt_tokens"]
        torch.set_rng_state(state["rng"]["torch"])
        kind, keys, pos, has_gauss, gauss = state["rng"]["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_tuples(state["rng"]["python"]))
        if self.dist.main:
            _drop_metrics_after(self.out / "metrics.jsonl", self.step)
        log.info("resumed %s at step %d", folder, self.step)
        return state["position"]


def _tuples(x):
    """random.getstate()'s nesting of tuples (a saved state may come back with lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _drop_metrics_after(path: Path, step: int) -> None:
    """metrics.jsonl without the lines of steps after the checkpoint (a killed run logged them;
    the resumed run logs them again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


def _progress(cfg: TrainConfig):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.max_steps, desc=cfg.objective, file=sys.stderr, leave=False)


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
    history = trainer.fit()
    if dist.is_initialized():
        dist.destroy_process_group()
    if not trainer.dist.main:
        return 0
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

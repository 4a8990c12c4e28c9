"""Crash-safe checkpoints. A checkpoint is a folder `OUT/checkpoint-STEP/` (the model's
save_pretrained files, the tokenizer, `train_config.json` and `training_state.pt`), written
whole into a temporary folder and renamed into place, so that a kill at any moment leaves the
previous checkpoint intact; only then are the older ones removed. `training_state.pt` holds the
SHA-256 of the weights beside it, and resume takes the newest checkpoint whose weights and state
belong together. It loads with `weights_only=True` (a state file from elsewhere cannot run
code) and the weights load strictly, tied weights aside.

OUT itself holds a copy of the newest checkpoint's model files (hard links where the filesystem
allows), each replaced atomically: `from_pretrained(OUT)`, `lacy-eval --model OUT` read it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "training_state.pt"
WEIGHTS = "model.safetensors"
PREFIX = "checkpoint-"
TMP = ".tmp-"
_NAME = re.compile(rf"{PREFIX}(\d+)")
log = logging.getLogger("lacy")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(
    out: Path, step: int, write_files: Callable[[Path], None], state: dict
) -> Path:
    """Write a checkpoint of `step`: `write_files(folder)` saves the model files, then the state
    (with the weights' digest) goes beside them; the folder is renamed into place, OUT's copy of
    the model updated, and older checkpoints removed. Returns the checkpoint folder."""
    tmp = out / f"{TMP}{PREFIX}{step}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    write_files(tmp)
    state = state | {"weights_sha256": sha256(tmp / WEIGHTS)}
    torch.save(state, tmp / STATE_FILE)
    for f in tmp.iterdir():
        _fsync(f)
    final = out / f"{PREFIX}{step}"
    if final.exists():  # saved again at the same step (the end of a run): swap, then drop it
        old = out / f"{TMP}old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync(out)
    _export(final, out)
    for folder in checkpoints(out):
        if folder != final:
            shutil.rmtree(folder)
    _remove_temporaries(out)
    return final


def _export(folder: Path, out: Path) -> None:
    """OUT's copy of the checkpoint's model files, each file replaced atomically."""
    for src in sorted(folder.iterdir()):
        if src.name == STATE_FILE:
            continue
        tmp = out / f"{TMP}{uuid.uuid4().hex[:8]}-{src.name}"
        try:
            os.link(src, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copy2(src, tmp)
        os.replace(tmp, out / src.name)


def checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders in OUT, newest step first."""
    found = [p for p in out.glob(f"{PREFIX}*") if p.is_dir() and _NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name)[1]), reverse=True)


def _remove_temporaries(out: Path) -> None:
    """What a killed save left: lacy's own temporary folders and files in OUT."""
    for p in out.glob(f"{TMP}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def latest(out: Path, clean: bool = True) -> tuple[Path, dict] | None:
    """(folder, state) of the newest checkpoint whose weights and state belong together; None
    when OUT has no checkpoint. Raises ValueError when every checkpoint is broken. `clean`
    removes what a killed save left (one process of a data-parallel job does)."""
    if clean:
        _remove_temporaries(out)
    broken = []
    for folder in checkpoints(out):
        try:
            state = torch.load(folder / STATE_FILE, weights_only=True)
            if state.get("weights_sha256") != sha256(folder / WEIGHTS):
                raise ValueError("its weights are not the ones its training state was saved with")
            return folder, state
        except Exception as e:  # noqa: BLE001 - any broken checkpoint is skipped, with its reason
            log.warning("%s: not resumable (%s: %s)", folder, type(e).__name__, e)
            broken.append(f"{folder.name}: {e}")
    if broken:
        raise ValueError(f"{out}: no checkpoint can be resumed ({'; '.join(broken)})")
    if (out / STATE_FILE).exists():
        raise ValueError(f"{out}: a checkpoint of an older lacy (no {PREFIX}STEP folder); "
                         "it cannot be resumed safely: train into a new folder")  # fmt: skip
    return None


def load_weights(model, folder: Path) -> None:
    """The checkpoint's weights into `model`, strictly: every key present and used, except a
    parameter tied to one that is loaded (an output layer that is the input embedding)."""
    from safetensors.torch import load_file

    weights = load_file(folder / WEIGHTS)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in weights if k in params}
    untied = [k for k in missing if k not in params or id(params[k]) not in loaded]
    if untied or unexpected:
        raise ValueError(f"{folder}: the weights do not fit the model (missing {untied[:5]}, "
                         f"unexpected {list(unexpected)[:5]})")  # fmt: skip


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a save_pretrained folder (a checkpoint or OUT's copy), ready to
    evaluate; a model trained on a compact vocabulary comes wrapped in `trainer.vocab.CompactLM`
    (full-vocabulary ids and logits)."""
    from transformers import AutoTokenizer

    from trainer.vocab import CompactLM, CompactVocab

    model = load_causal_lm(path)
    tok = AutoTokenizer.from_pretrained(path)
    vocab = CompactVocab.load(path)
    if vocab is not None:
        model = CompactLM(model, vocab)
    return model.to(device).eval(), tok


def load_causal_lm(path: str | Path):
    """A causal LM from a save_pretrained folder (safetensors only), strictly: a weight the
    model expects and the folder lacks (tied ones aside, which transformers ties itself), one it
    does not use, or one of another shape is an error, not a silently random layer."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        path, use_safetensors=True, output_loading_info=True
    )
    bad = {k: list(v)[:5] for k, v in info.items() if k != "error_msgs" and v}
    if bad or info.get("error_msgs"):
        raise ValueError(f"{path}: the weights do not fit the model ({bad or info['error_msgs']})")
    return model


def model_files(slm, config: dict) -> Callable[[Path], None]:
    """`write_checkpoint`'s writer of an SLM (trainer.model.SLM): the model, its tokenizer, the
    compact vocabulary's map (when it has one) and the run's settings."""

    def write(folder: Path) -> None:
        slm.model.save_pretrained(folder, safe_serialization=True)
        slm.tokenizer.save_pretrained(folder)
        if slm.vocab is not None:
            slm.vocab.save(folder)
        (folder / "train_config.json").write_text(json.dumps(config, indent=1))

    return write


def training_state(opt, sched, step: int, gt_tokens: int, position: int, world: int,
                   config: dict) -> dict:  # fmt: skip
    """Everything but the weights that the next step depends on, as plain types and tensors
    (loadable with weights_only=True): optimizer, scheduler, counters, data position, RNGs."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "gt_tokens": gt_tokens,
        "position": position,
        "world_size": world,
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(),
        },
        "config": config,
    }


def restore_state(state: dict, opt, sched, world: int) -> tuple[int, int, int]:
    """Optimizer, scheduler and RNGs from `training_state`'s dict; returns (step, gt_tokens,
    data position). A state saved by another number of processes is refused."""
    saved_world = state.get("world_size", 1)
    if saved_world != world:
        raise ValueError(f"the checkpoint was trained by {saved_world} process(es); resume "
                         f"with the same world size, not {world}")  # fmt: skip
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    kind, keys, pos, has_gauss, gauss = state["rng"]["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_tuples(state["rng"]["python"]))
    return state["step"], state["gt_tokens"], state["position"]


def _tuples(x):
    """random.getstate()'s nesting of tuples (a saved state may come back with lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def drop_metrics_after(path: Path, step: int) -> None:
    """metrics.jsonl without the lines of steps after the checkpoint (a killed run logged them;
    the resumed run logs them again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(f"{TMP}{path.name}")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)

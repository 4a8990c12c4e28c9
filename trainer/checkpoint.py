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
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

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

"""Crash-safe training: a SIGKILL in the middle of a save costs the steps since the last
checkpoint, never the checkpoint; resume checks that weights and state belong together, loads
the state with weights_only=True and the weights strictly; shard reads survive network errors
and refuse a shard over the size cap."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_trainer import small_cfg

from trainer import checkpoint

# Run inside lacy-train: the second torch.save (the second checkpoint's training state) writes,
# then signals the test and waits to be killed, so the kill lands in the middle of a save: after
# the new checkpoint's files are written, before its folder is renamed into place.
SLOW_SAVE = """
import os, time, torch
_save, calls = torch.save, []
def save(obj, f, *a, **k):
    _save(obj, f, *a, **k)
    calls.append(f)
    if len(calls) == 2:
        open(os.environ["LACY_TEST_SIGNAL"], "w").write(str(f))
        time.sleep(600)
torch.save = save
"""


def train_cmd(shards, out, *extra):
    return [sys.executable, "-m", "trainer.train", "--data", str(shards), "--output", str(out),
            "--objective", "lacy", "--seq_len", "32", "--batch_size", "4", "--warmup_steps", "3",
            "--log_every", "1", "--progress", "false", "--max_steps", "6", "--save_every", "2",
            *extra]  # fmt: skip


def test_a_kill_during_a_save_keeps_the_last_checkpoint_and_resume_is_exact(shards, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SAVE)
    flag = tmp_path / "saving"
    env = dict(os.environ, PYTHONPATH=str(site), LACY_TEST_SIGNAL=str(flag))
    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(shards, out), env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not flag.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    assert ".tmp-checkpoint-4" in flag.read_text()  # mid-save of step 4
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.name for p in checkpoint.checkpoints(out)] == ["checkpoint-2"]  # still whole
    assert list(out.glob(".tmp-checkpoint-4-*"))  # the save it interrupted
    subprocess.run(train_cmd(shards, out, "--resume"), check=True, stderr=subprocess.DEVNULL)
    subprocess.run(train_cmd(shards, tmp_path / "whole"), check=True, stderr=subprocess.DEVNULL)
    for name in ("killed", "whole"):
        assert [p.name for p in checkpoint.checkpoints(tmp_path / name)] == ["checkpoint-6"]
    assert not list(out.glob(".tmp-*"))
    from safetensors.torch import load_file

    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "whole/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the lost steps 3 and 4 are logged once, as redone


def test_resume_refuses_weights_that_are_not_the_states(shards, tmp_path):
    from trainer.train import Trainer

    Trainer(small_cfg(shards, tmp_path / "a", max_steps=2)).fit()
    Trainer(small_cfg(shards, tmp_path / "b", max_steps=4)).fit()
    os.replace(tmp_path / "b/checkpoint-4/model.safetensors",
               tmp_path / "a/checkpoint-2/model.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match="not the ones its training state was saved with"):
        Trainer(small_cfg(shards, tmp_path / "a", max_steps=6, resume=True))


def test_a_state_file_that_would_run_code_is_not_loaded(shards, tmp_path):
    """training_state.pt from a shared folder: pickled code in it never runs (weights_only)."""
    from trainer.train import Trainer

    Trainer(small_cfg(shards, tmp_path / "a", max_steps=2)).fit()
    state_file = tmp_path / "a/checkpoint-2/training_state.pt"
    state = torch.load(state_file, weights_only=True)
    state["payload"] = Payload(tmp_path / "pwned")
    torch.save(state, state_file)
    with pytest.raises(ValueError, match="no checkpoint can be resumed"):
        Trainer(small_cfg(shards, tmp_path / "a", max_steps=4, resume=True))
    assert not (tmp_path / "pwned").exists()


class Payload:
    """Unpickling it runs a shell command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_weights_load_strictly(shards, tmp_path):
    from safetensors.torch import load_file, save_file

    from trainer.train import Trainer

    tr = Trainer(small_cfg(shards, tmp_path / "a", max_steps=2))
    tr.fit()
    folder = tmp_path / "a/checkpoint-2"
    weights = load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in weights  # tied to the input embedding: allowed missing
    checkpoint.load_weights(tr.model, folder)
    weights.pop(next(k for k in weights if "layers.0" in k))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not fit the model"):
        checkpoint.load_weights(tr.model, folder)


def test_a_new_run_does_not_overwrite_another_runs_checkpoints(shards, tmp_path):
    from trainer.train import Trainer

    Trainer(small_cfg(shards, tmp_path / "a", max_steps=2)).fit()
    with pytest.raises(ValueError, match="holds the checkpoints of another run"):
        Trainer(small_cfg(shards, tmp_path / "a", max_steps=2))
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "a")] == ["checkpoint-2"]

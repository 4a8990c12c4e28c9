"""The accelerator check runs end to end on CPU with tiny sizes, so it is known to work before a
GPU is lent (it then runs the same code with --device cuda)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_device_check_runs_on_cpu_tiny(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_TIMEOUT": "300"}
    cmd = ["bash", "bench/device_check.sh", "--device", "cpu", "--tiny", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["device"] == "cpu" and r["tiny"] and not r["skipped"]
    assert r["scoring_variants"]["eager_tokens_per_s"] > 0
    for dtype in ("float32", "bfloat16"):
        s = r["scoring"][dtype]
        assert s["tokens_per_s"] > 0 and s["naive_tokens_per_s"] > 0 and s["mfu_vs_bf16_matmul"] > 0
        assert s["grammar_cores_per_device"] > 0
    assert r["scoring"]["bf16_vs_fp32_random_weights"]["max_abs_loss_diff"] < 0.5
    t = r["training"]["tiny"]
    assert t["tokens_per_s"] > 0 and t["amp_bf16"] is False  # CPU stays fp32
    written = sorted(p.suffix for p in tmp_path.glob("device_check-*"))
    assert written == [".json", ".md"]
    assert "| float32 |" in next(tmp_path.glob("*.md")).read_text()

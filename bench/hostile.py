"""Peak memory of lacy-label with a huge line in its input, against the same input without it.

    python -m bench.hostile --gib 2 [--docs 20]

Both runs label `--docs` shipped leads as JSONL with the shipped models (the line itself never
reaches a model: it is rejected while it is read). The second
input adds, between two leads, one `.jsonl.gz` line of `--gib` GiB (a few MB on disk: a gzip
bomb); lacy must reject it as too_long while it streams. Each run is a separate process; its
peak RSS is the maximum resident set of it and its children (getrusage). The figures: both
peaks, their difference, and the wall times."""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_name, emit, wiki_docs

MEASURE = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def write_inputs(folder: Path, docs: list[dict], gib: int) -> tuple[Path, Path]:
    small, bomb = folder / "small", folder / "bomb"
    small.mkdir()
    bomb.mkdir()
    lines = [json.dumps({"id": d["id"], "text": d["text"]}).encode() + b"\n" for d in docs]
    (small / "leads.jsonl").write_bytes(b"".join(lines))
    chunk = gzip.compress(b"x" * (64 << 20), compresslevel=9)
    with gzip.open(bomb / "leads.jsonl.gz", "wb") as f:
        f.write(b"".join(lines[: len(lines) // 2]))
    with open(bomb / "leads.jsonl.gz", "ab") as f:
        f.write(gzip.compress(b'{"id": "bomb", "text": "'))
        for _ in range(gib * 16):
            f.write(chunk)
        f.write(gzip.compress(b'"}\n' + b"".join(lines[len(lines) // 2 :])))
    return small, bomb


def peak_run(spec: Path, out: Path) -> tuple[int, float, dict]:
    cmd = [sys.executable, "-m", "pipelines.label", "--input", str(spec), "--output", str(out),
           "--report", "false"]  # fmt: skip
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                          check=True)  # fmt: skip
    wall = time.perf_counter() - t
    stats = json.loads((out / "stats.json").read_text())
    return int(done.stdout.strip()), wall, stats


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=int, default=2, help="GiB of the huge line")
    p.add_argument("--docs", type=int, default=20, help="shipped leads around it")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lacy-hostile-") as tmp:
        root = Path(tmp)
        small, bomb = write_inputs(root, wiki_docs(args.docs), args.gib)
        peak_small, wall_small, s_small = peak_run(small, root / "out-small")
        peak_bomb, wall_bomb, s_bomb = peak_run(bomb, root / "out-bomb")
    assert s_bomb["rejected_by_reason"] == {"too_long": 1}, s_bomb["rejected_by_reason"]
    assert s_bomb["documents_out"] == s_small["documents_out"] == args.docs
    print(f"{cpu_name()}: peak RSS {peak_small} MB for {args.docs} leads, {peak_bomb} MB with a "
          f"{args.gib} GiB line among them ({peak_bomb - peak_small:+d} MB); wall "
          f"{wall_small:.1f} s and {wall_bomb:.1f} s")  # fmt: skip
    emit({
        "cpu": cpu_name(), "docs": args.docs, "line_gib": args.gib,
        "peak_rss_mb_small": peak_small, "peak_rss_mb_with_line": peak_bomb,
        "peak_rss_mb_difference": peak_bomb - peak_small,
        "wall_s_small": round(wall_small, 1), "wall_s_with_line": round(wall_bomb, 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()

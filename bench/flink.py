"""lacy-label on a local Flink cluster against the default runner in the same run, Flink's fixed
costs, and the job's scale shape on the cluster.

    python -m bench.flink --docs 200 [--scale 5] [--group_chars 32768]

All runs label the first N shipped leads with the shipped SmolLM2 (`lacy-label` as a subprocess,
--report false, the same --group_chars) and must give identical rows.
- default_s: the default runner (FnApiRunner, one process); the baseline.
- flink_loopback_s, flink_external_s, flink_external_p2_s, flink_external_p2_t1_s: Flink 1.19
  (a standalone cluster from deploy/flink/flink.sh: one TaskManager, 2 slots, --parallelism=2)
  with LOOPBACK workers
  (threads of the client), with lacy's worker pool (one SDK worker process per TaskManager),
  with the pool and --sdk_worker_parallelism=2 (one per slot), and the same with one torch
  thread per worker (--threads=1); ratios to default_s.
- install_s (`flink.sh install`: about 0 once cached), cluster_start_s (`flink.sh
  up`), job_server_start_s (`java -jar` of the launcher jar until its job port accepts), and
  submission_s: a Flink run's wall time minus the job's own duration in Flink (job server start,
  staging, translation, the client's epilogue).
- scale: the pool with --sdk_worker_parallelism=2 on N and scale x N leads: time ratio, peak RSS
  of the TaskManager JVM, of the SDK worker processes together and of the largest one (sampled
  every 0.5 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from bench.common import cpu_name, emit
from deploy.flink.cluster import Cluster, Pool
from lacy_labels import cli
from pipelines import flink
from pipelines.loopback import free_port, wait_for_port


class PeakRss:
    """Peak RSS (MB) of the TaskManagers and of the pool's workers, sampled in a thread."""

    def __init__(self, cluster: Cluster, pool: Pool | None, every: float = 0.5):
        self.cluster, self.pool, self.every = cluster, pool, every
        self.tm = self.workers = self.worker = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.every):
            tm = sum(_rss(p) for p in self.cluster.taskmanager_pids())
            ws = [_rss(p.pid) for p in self.pool.workers()] if self.pool else []
            self.tm, self.workers = max(self.tm, tm), max(self.workers, sum(ws))
            self.worker = max([self.worker, *ws])


def _rss(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def label(out: Path, n: int, extra: list[str]) -> float:
    """Wall seconds of one `lacy-label` run on the first n leads."""
    cmd = [sys.executable, "-m", "pipelines.label", "--output", str(out), "--limit", str(n),
           "--overwrite", "--report", "false", *extra]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def job_server_start_s(jar: Path) -> float:
    port = free_port()
    cmd = ["java", "-jar", str(jar), "--flink-master=[local]", f"--job-port={port}",
           "--artifact-port=0", "--expansion-port=0"]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, timeout=120)
        return time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def rows(out: Path) -> list[dict]:
    return pq.read_table(out / "data").to_pylist()


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--group_chars", type=int, default=32768)
    args = ap.parse_args()
    n, tmp = args.docs, Path(tempfile.mkdtemp(prefix="lacy-bench-flink-"))
    common = ["--group_chars", str(args.group_chars)]
    figs: dict = {"cpu": cpu_name(), "docs": n, "scale": args.scale}

    t = time.perf_counter()
    subprocess.run(["bash", str(flink.SCRIPT), "install"], check=True, stdout=subprocess.DEVNULL)
    figs["install_s"] = round(time.perf_counter() - t, 1)
    figs["job_server_start_s"] = round(job_server_start_s(flink.job_server_jar()), 1)
    cluster = Cluster(tmp / "cluster")
    t = time.perf_counter()
    cluster.script("up")
    figs["cluster_start_s"] = round(time.perf_counter() - t, 1)
    pool = Pool(tmp / "pool-logs")
    try:
        figs["default_s"] = label(tmp / "default", n, common)
        want = rows(tmp / "default")
        runs = {
            "flink_loopback": ["--environment_type=LOOPBACK"],
            "flink_external": pool.flags(),
            "flink_external_p2": [*pool.flags(), "--sdk_worker_parallelism=2"],
            "flink_external_p2_t1": [*pool.flags(), "--sdk_worker_parallelism=2", "--threads=1"],
        }
        for name, extra in runs.items():
            wall = label(tmp / name, n, [*common, *cluster.flags("--parallelism=2"), *extra])
            figs[f"{name}_s"] = wall
            figs[f"{name}_vs_default"] = wall / figs["default_s"]
            figs[f"{name}_rows_identical"] = rows(tmp / name) == want
            if name == "flink_loopback":
                figs["submission_s"] = wall - cluster.last_job()["duration"] / 1000
        p2 = [
            *common,
            *cluster.flags("--parallelism=2"),
            *pool.flags(),
            "--sdk_worker_parallelism=2",
        ]
        for size in (n, args.scale * n):
            with PeakRss(cluster, pool) as rss:
                wall = label(tmp / f"scale-{size}", size, p2)
            figs[f"scale_{size}"] = {
                "wall_s": wall, "tokens_per_s": _tokens(tmp / f"scale-{size}") / wall,
                "taskmanager_peak_rss_mb": rss.tm, "sdk_workers_peak_rss_mb": rss.workers,
                "largest_sdk_worker_peak_rss_mb": rss.worker,
            }  # fmt: skip
        figs["scale_time_ratio"] = (
            figs[f"scale_{args.scale * n}"]["wall_s"] / figs[f"scale_{n}"]["wall_s"]
        )
    finally:
        pool.close()
        cluster.script("down")
    emit({k: round(v, 3) if isinstance(v, float) else v for k, v in figs.items()})


def _tokens(out: Path) -> int:
    return json.loads((out / "stats.json").read_text())["tokens"]


if __name__ == "__main__":
    main()

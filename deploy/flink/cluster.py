"""A local Flink cluster and lacy worker pool driven from Python, for the Flink tests and the
benchmarks: deploy/flink/flink.sh in a folder of its own on free ports, Flink's REST API, and
`python -m pipelines.worker_pool` as a separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from pipelines import flink
from pipelines.loopback import free_port, wait_for_port


class Cluster:
    """A standalone cluster started by deploy/flink/flink.sh in `run_dir`, on free ports."""

    def __init__(self, run_dir: Path):
        self.port, self.run_dir = free_port(), Path(run_dir)
        self.env = dict(
            os.environ,
            LACY_FLINK_RUN=str(run_dir),
            LACY_FLINK_PORT=str(self.port),
            LACY_FLINK_RPC_PORT=str(free_port()),
        )

    def script(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(flink.SCRIPT), *args], env=self.env, stdout=subprocess.PIPE, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"flink.sh {' '.join(args)} failed ({done.returncode})")
        return done.stdout

    def get(self, path: str):
        with urllib.request.urlopen(f"http://localhost:{self.port}{path}", timeout=10) as r:
            return json.load(r)

    def flags(self, *extra: str) -> list[str]:
        return ["--runner=FlinkRunner", f"--flink_master=localhost:{self.port}", *extra]

    def jvm_pids(self) -> list[int]:
        """This cluster's live JobManager and TaskManager processes, from the pid files `up`
        wrote: a pid whose process is no longer this cluster's JVM (a killed TaskManager's,
        reused by another process) is left out, as flink.sh's `ours` does."""
        return [p for f in (self.run_dir / "pid").glob("*.pid") for p in self._ours(f)]

    def taskmanager_pids(self) -> list[int]:
        return self._ours(self.run_dir / "pid" / "flink-lacy-taskexecutor.pid")

    def _ours(self, pid_file: Path) -> list[int]:
        pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
        conf = f"--configDir {self.run_dir}/conf"
        return [p for p in pids if _is_jvm_of(p, conf)]

    def last_job(self) -> dict:
        jobs = self.get("/jobs/overview")["jobs"]
        return self.get(f"/jobs/{max(jobs, key=lambda j: j['start-time'])['jid']}")

    def failures(self, jid: str) -> list[str]:
        """The exceptions that made Flink restart (or fail) the job."""
        entries = self.get(f"/jobs/{jid}/exceptions")["exceptionHistory"]["entries"]
        return [e["exceptionName"] for e in entries]

    def scoring_taskmanager_pid(self) -> int:
        """The pid of the TaskManager running a task of the running job's Score stage."""
        jid = next(j["jid"] for j in self.get("/jobs/overview")["jobs"] if j["state"] == "RUNNING")
        vertex = next(
            v
            for v in self.get(f"/jobs/{jid}")["vertices"]
            if "Score" in v["name"] and v["status"] == "RUNNING"
        )
        tms = self.get(f"/jobs/{jid}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]
        tm_id = next(t["taskmanager-id"] for t in tms if t["status"] == "RUNNING")
        port = int(tm_id.split(":")[1].split("-")[0])  # "localhost:PORT-suffix": its RPC port
        return next(
            c.pid
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        )


class Pool:
    """lacy's worker pool in its own process (`python -m pipelines.worker_pool`)."""

    def __init__(self, log_dir: Path, env: dict | None = None):
        self.port, self.log_dir = free_port(), Path(log_dir)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.worker_pool", "--port", str(self.port),
             "--log_dir", str(log_dir)],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.proc)

    def flags(self) -> list[str]:
        return ["--environment_type=EXTERNAL", f"--environment_config=localhost:{self.port}"]

    def workers(self) -> list[psutil.Process]:
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _is_jvm_of(pid: int, conf: str) -> bool:
    """True if `pid` is a Flink JVM started with this cluster's configuration folder."""
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return "java" in cmd and "org.apache.flink." in cmd and conf in cmd

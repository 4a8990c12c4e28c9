"""lacy-label on a real Apache Flink 1.19 cluster: a standalone JobManager and TaskManagers
(separate JVMs) that deploy/flink/flink.sh starts on loopback, with Beam's Flink job server that
it assembles from Maven Central. Rows, rejects and stats.json must equal the default runner's,
and a killed SDK worker or TaskManager must cost a restart, not a document.

Without java, mvn or curl these tests skip with one line; LACY_REQUIRE_FLINK=1 (.ci/run) turns
that skip into a failure."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from hostile import LABEL_ARGS, check_output, make_hostile

from deploy.flink.cluster import Cluster, Pool
from pipelines import flink, label
from pipelines.layout import leftovers
from pipelines.outputs import read_rejects
from pipelines.publish import PublishError, check_dataset_dir

NEEDS = ("java", "mvn", "curl")
JOB_TIMEOUT_S = 600  # a hung job fails the test instead of the suite


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [c for c in NEEDS if shutil.which(c) is None]
    if missing:
        why = f"Flink tests need {', '.join(missing)} on PATH (OpenJDK 17, Maven 3.8+): not found"
        if os.environ.get("LACY_REQUIRE_FLINK") == "1":
            pytest.fail(why)
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("flink-cluster"))
    c.script("install")  # `make flink-install`: Flink and the job server (free once cached)
    c.script("up")
    yield c
    jvms = c.jvm_pids()
    c.script("down")
    assert jvms and not [p for p in jvms if psutil.pid_exists(p)]  # down stopped what up started


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_model_dir):
    """The hostile-input fixture and its output on the default runner."""
    root = tmp_path_factory.mktemp("hostile")
    expected = make_hostile(root)
    args = ["--input", str(root / "in"), "--reference_model", str(tiny_model_dir), *LABEL_ARGS]
    label.run(["--output", str(root / "default"), *args])
    default = read_output(root / "default")
    check_output(root, expected, default["rows"], default["rejects"], default["stats"])
    return {"root": root, "expected": expected, "args": args, "default": default}


def read_output(out: Path) -> dict:
    rejects = sorted(read_rejects(str(out)), key=lambda r: (r["source"], r["index"], r["id"]))
    return {
        "rows": pq.read_table(out / "data").to_pylist(),
        "rejects": rejects,
        "stats": json.loads((out / "stats.json").read_text()),
    }


def assert_same_output(got: dict, want: dict, stats_except: tuple = ()) -> None:
    assert got["rows"] == want["rows"]
    assert got["rejects"] == want["rejects"]
    drop = lambda s: {k: v for k, v in s.items() if k not in stats_except}  # noqa: E731
    assert drop(got["stats"]) == drop(want["stats"])


def assert_clean(out: Path) -> None:
    """No temporary or partial file left, and lacy-publish accepts the folder."""
    assert leftovers(str(out)) == []
    names = sorted(p.name for p in (out / "data").iterdir())
    assert all(n.startswith("train-") and n.endswith(".parquet") for n in names), names
    check_dataset_dir(str(out))


def test_rows_rejects_stats_and_counters_equal_the_default_runner(cluster, hostile):
    out = hostile["root"] / "flink"
    stats = label.run(
        [
            "--output",
            str(out),
            *hostile["args"],
            *cluster.flags("--parallelism=2"),
            "--environment_type=LOOPBACK",
        ]  # fmt: skip
    )
    got = read_output(out)
    assert_same_output(got, hostile["default"])
    check_output(hostile["root"], hostile["expected"], got["rows"], got["rejects"], got["stats"])
    s = got["stats"]
    m = stats["metrics"]  # from the job's PipelineResult.metrics(), through Flink's accumulators
    for key in ("documents_in", "documents_out", "documents_rejected", "tokens", "fact_tokens",
                "delegated_tokens"):  # fmt: skip
        assert m[key] == s[key], key
    for reason, count in s["rejected_by_reason"].items():
        assert m[f"rejected_{reason}"] == count
    assert m["tokens_per_document"]["sum"] == s["tokens"]
    job = cluster.last_job()  # Flink's own record of the job
    assert job["state"] == "FINISHED"
    assert flink.job_counters(f"localhost:{cluster.port}", job["jid"]) == m  # lacy-flink-counters
    assert max(v["parallelism"] for v in job["vertices"]) == 2
    saved = json.loads((out / "config.json").read_text())
    assert any(a.startswith("--flink_job_server_jar=") for a in saved["beam_args"])
    assert_clean(out)


def test_fixed_threshold_streams_without_a_barrier(cluster, hostile):
    """--threshold_from the default run's own output: the same threshold, hence the same rows,
    and no global sketch stage in Flink's job graph."""
    out = hostile["root"] / "flink-fixed"
    fixed = ["--threshold_from", str(hostile["root"] / "default")]
    label.run(["--output", str(out), *hostile["args"], *fixed, *cluster.flags("--parallelism=2"),
               "--environment_type=LOOPBACK"])  # fmt: skip
    got = read_output(out)
    differ = ("threshold_source", "threshold_population_quantiles", "threshold_sketch_level")
    assert_same_output(got, hostile["default"], stats_except=differ)
    assert got["stats"]["threshold_source"].endswith("default/stats.json")
    names = " ".join(v["name"] for v in cluster.last_job()["vertices"])
    assert "Score" in names and "PopulationSketch" not in names
    assert_clean(out)


def test_external_worker_pool_of_separate_processes(cluster, hostile, tmp_path):
    pool = Pool(tmp_path / "pool-logs")
    try:
        out = hostile["root"] / "flink-external"
        label.run(["--output", str(out), *hostile["args"], *cluster.flags("--parallelism=2"),
                   *pool.flags()])  # fmt: skip
        assert_same_output(read_output(out), hostile["default"])
        assert_clean(out)
        assert list(pool.log_dir.glob("worker-*.log"))  # the workers were the pool's processes
        deadline = time.time() + 30  # the runner stops its workers once the job is done
        while pool.workers() and time.time() < deadline:
            time.sleep(1)
        assert pool.workers() == []
    finally:
        pool.close()


def test_a_pool_whose_workers_cannot_start_fails_the_run(cluster, tmp_path, tiny_model_dir):
    """Workers that die at start (here: a package missing from their environment) fail the run
    with the worker's own error once Flink's restarts are spent, instead of a job that hangs;
    the output folder is then one that lacy-publish refuses."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise ImportError(\"No module named 'torch' (hidden by a test)\")\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    pool = Pool(tmp_path / "pool-logs", env=dict(os.environ, PYTHONPATH=str(site)))
    out = tmp_path / "out"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.label", "--output", str(out), "--limit", "3",
             "--reference_model", str(tiny_model_dir), *cluster.flags(), *pool.flags()],
            capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
        )  # fmt: skip
    finally:
        pool.close()
    assert done.returncode == 1
    assert "error: the job failed on the runner" in done.stderr
    assert "lacy worker pool: SDK worker" in done.stderr and "exited with 1" in done.stderr
    assert "No module named 'torch'" in done.stderr
    assert cluster.last_job()["state"] == "FAILED"
    assert not (out / "stats.json").exists()
    with pytest.raises(PublishError, match="missing"):
        check_dataset_dir(str(out))


@pytest.fixture(scope="module")
def leads(tmp_path_factory):
    """100 shipped leads, labelled with the shipped SmolLM2 on the default runner: scoring takes
    long enough (tens of seconds) to kill something in the middle of it."""
    root = tmp_path_factory.mktemp("leads")
    args = ["--limit", "100", "--group_chars", "16384", "--report", "false"]
    label.run(["--output", str(root / "default"), *args])
    return {"root": root, "args": args, "default": read_output(root / "default")}


def start_label(out: Path, args: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipelines.label", "--output", str(out), *args]
    return subprocess.Popen(cmd, stderr=open(log, "w"), stdout=subprocess.DEVNULL, text=True)


def wait_for_line(paths, needle: str, proc: subprocess.Popen, timeout: float = 300) -> str:
    """The first line containing `needle` in any of the files `paths()` lists."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in paths():
            for line in Path(p).read_text(errors="replace").splitlines():
                if needle in line:
                    return line
        assert proc.poll() is None, "the job ended before the line appeared"
        time.sleep(0.5)
    raise TimeoutError(f"no line with {needle!r}")


def test_a_killed_sdk_worker_costs_a_restart_not_a_document(cluster, leads, tmp_path):
    pool = Pool(tmp_path / "pool-logs")
    out = tmp_path / "out"
    try:
        proc = start_label(
            out, [*leads["args"], *cluster.flags("--parallelism=2"), *pool.flags()],
            tmp_path / "label.log",
        )  # fmt: skip
        # lacy's scorer logs its progress after a few seconds of scoring, with its pid
        line = wait_for_line(lambda: pool.log_dir.glob("worker-*.log"), "lacy: scored", proc)
        pid = int(line.split(" pid ")[1].split()[0])
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=JOB_TIMEOUT_S) == 0, (tmp_path / "label.log").read_text()[-3000:]
    finally:
        pool.close()
    job = cluster.last_job()
    assert job["state"] == "FINISHED" and cluster.failures(job["jid"])  # it did restart
    assert_same_output(read_output(out), leads["default"])
    assert_clean(out)


def test_a_killed_taskmanager_costs_a_restart_not_a_document(cluster, leads, tmp_path):
    """A second TaskManager stands by; the one running the scoring task is killed (kill -9).
    Flink notices it is gone, restarts the failed region on the other one, and the output is the
    uninterrupted run's."""
    cluster.script("add-taskmanager")
    out, log = tmp_path / "out", tmp_path / "label.log"
    proc = start_label(
        out, [*leads["args"], *cluster.flags("--parallelism=2"), "--environment_type=LOOPBACK"], log
    )
    wait_for_line(lambda: [log], "lacy: scored", proc)  # LOOPBACK workers log in the client
    os.kill(cluster.scoring_taskmanager_pid(), signal.SIGKILL)
    assert proc.wait(timeout=JOB_TIMEOUT_S) == 0, log.read_text()[-3000:]
    job = cluster.last_job()
    assert job["state"] == "FINISHED" and cluster.failures(job["jid"])
    assert cluster.get("/overview")["taskmanagers"] == 1
    assert_same_output(read_output(out), leads["default"])
    assert_clean(out)


def test_down_signals_only_this_clusters_jvms(tmp_path):
    """A pid file whose pid now belongs to another process (after a reboot or a crash): `down`
    and `up` leave that process alone and drop the entry. Needs no Flink."""
    other = subprocess.Popen(["sleep", "600"])
    try:
        (tmp_path / "pid").mkdir()
        (tmp_path / "pid/flink-lacy-taskexecutor.pid").write_text(f"{other.pid}\n")
        env = dict(os.environ, LACY_FLINK_RUN=str(tmp_path))
        done = subprocess.run(["bash", str(flink.SCRIPT), "down"], env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        assert other.poll() is None  # still running
        assert f"stale pid {other.pid}" in done.stderr and "no cluster running" in done.stderr
        assert not (tmp_path / "pid").exists()
    finally:
        other.kill()
        other.wait()


def listeners(pids) -> set[tuple[str, int]]:
    """(address, pid) of every TCP socket those processes listen on."""
    return {(c.laddr.ip, c.pid) for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}  # fmt: skip


def is_loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip)
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


def test_the_cluster_and_lacys_processes_listen_on_loopback(cluster, hostile, tmp_path):
    """Flink's own ports (REST, RPC, blob, data) are on loopback (deploy/flink/conf/config.yaml),
    and so is everything the Python side opens while a job runs: the launcher and its LOOPBACK
    workers. Beam's Java harness binds its Fn API servers (in the TaskManagers and the job
    server) on every interface whatever it is told (docs/safety.md): those are counted, not
    hidden."""
    # A TaskManager that ran a job may keep Beam's wildcard servers open after it (seen for
    # minutes after a failover), so Flink's own ports are read on a TaskManager that ran none.
    before = set(cluster.taskmanager_pids())
    cluster.script("add-taskmanager")
    fresh = set(cluster.taskmanager_pids()) - before
    jobmanager = set(cluster.jvm_pids()) - set(cluster.taskmanager_pids())
    idle = listeners(fresh | jobmanager)
    assert fresh and jobmanager and all(is_loopback(ip) for ip, _ in idle), sorted(idle)
    args = [*hostile["args"], *cluster.flags("--parallelism=2"), "--environment_type=LOOPBACK"]
    proc = start_label(tmp_path / "out", args, tmp_path / "label.log")
    python, java = set(), set()
    while proc.poll() is None:
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        jvms = set(cluster.jvm_pids()) | {k.pid for k in kids if k.name() == "java"}
        python |= listeners({proc.pid} | {k.pid for k in kids} - jvms)
        java |= listeners(jvms)
        time.sleep(0.3)
    assert proc.returncode == 0, (tmp_path / "label.log").read_text()[-2000:]
    assert python and all(is_loopback(ip) for ip, _ in python), sorted(python)
    assert java  # Beam's Java side is there; its wildcard sockets are Beam's (see the docstring)

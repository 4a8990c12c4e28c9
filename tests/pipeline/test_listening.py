"""What lacy listens on: loopback unless told otherwise. The job's local runner services (Beam
binds them on every interface; lacy keeps them on loopback), and lacy's SDK worker pool (loopback
unless --host says otherwise, at most --max_workers workers at once: a flood of StartWorker
requests is refused, not forked). Flink's cluster: test_flink.py."""

import ipaddress
import subprocess
import sys
import time

import grpc
import psutil
import pytest
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2

from pipelines.loopback import free_port, wait_for_port


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback


def listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.pid == pid and c.status == psutil.CONN_LISTEN}  # fmt: skip


@pytest.fixture
def pool(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.worker_pool", "--port", str(port),
                             "--log_dir", str(tmp_path), "--max_workers", "1"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for_port(port, proc)
    yield proc, port
    proc.terminate()
    proc.wait(timeout=30)


def start(port: int, wid: str) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
        nowhere = endpoints_pb2.ApiServiceDescriptor(url=f"localhost:{free_port()}")
        request = beam_fn_api_pb2.StartWorkerRequest(
            worker_id=wid, control_endpoint=nowhere, logging_endpoint=nowhere
        )
        return stub.StartWorker(request, timeout=180).error


def test_the_pool_listens_on_loopback_and_caps_its_workers(pool, tmp_path):
    proc, port = pool
    assert listening(proc.pid) and all(map(is_loopback, listening(proc.pid)))
    assert start(port, "w1") == ""
    refused = start(port, "../../w2")
    assert "the most it runs at once (--max_workers 1)" in refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-w1.log"]  # no path from the id
    assert len(psutil.Process(proc.pid).children()) == 1


def test_another_address_only_when_named(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.worker_pool", "--port", str(port),
                             "--host", "0.0.0.0", "--log_dir", str(tmp_path)],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_port(port, proc)
        deadline = time.time() + 10
        while not listening(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert listening(proc.pid) and not any(map(is_loopback, listening(proc.pid)))
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "NOT loopback" in err


def job_listeners(args: list[str], tmp_path) -> set[str]:
    """The addresses a lacy-label process (and its workers) listen on while it runs."""
    cmd = [sys.executable, "-m", "pipelines.label", "--output", str(tmp_path / "out"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = set()
    while proc.poll() is None:
        try:
            pids = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        except psutil.Error:
            continue
        seen |= {c.laddr.ip for c in psutil.net_connections("inet")
                 if c.pid in pids and c.status == psutil.CONN_LISTEN}  # fmt: skip
        time.sleep(0.2)
    assert proc.returncode == 0
    return seen


def test_local_worker_processes_talk_over_loopback(tmp_path, tiny_model_dir):
    args = ["--limit", "20", "--reference_model", str(tiny_model_dir), "--report", "false",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2"]  # fmt: skip
    seen = job_listeners(args, tmp_path / "a")
    assert seen and all(map(is_loopback, seen))  # Beam alone binds [::]
    assert not all(map(is_loopback, job_listeners([*args, "--listen_all"], tmp_path / "b")))

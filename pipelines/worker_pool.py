"""lacy's SDK worker pool for `--environment_type=EXTERNAL` (Flink, Beam's portable runner):
Beam's worker pool service, with workers that cannot start failing the run instead of hanging it.

    lacy-worker-pool --port 50000 [--log_dir DIR]      # or: python -m pipelines.worker_pool
    lacy-label ... --environment_type=EXTERNAL --environment_config=localhost:50000

It listens on loopback unless `--host` names another address: the pool has no authentication,
and whoever reaches it can have it start a worker against any control endpoint (so run code
here). It runs at most `--max_workers` workers at once and refuses more.

Beam's own pool (`apache_beam.runners.worker.worker_pool_main`) starts each worker as a bare
`python` from PATH and answers the runner at once: a worker that dies at start (another Python,
a missing package) leaves the runner waiting for it with no error. Here every worker is this
interpreter, with this environment's bin/ first on PATH; it imports Beam and lacy, finds torch,
transformers and spaCy, and says so before the pool answers; a worker that dies first makes the
pool answer with its exit code and the end of its log. The runner then fails the task with that
message (Flink retries it as its restart strategy says, then fails the job). Each worker logs to
DIR/worker-ID.log and to the runner's logging service (Flink's TaskManager log)."""

from __future__ import annotations

import importlib.util
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

from lacy_labels import cli
from lacy_labels.cli import setting

READY = b"lacy-worker-ready\n"
WORKER_NEEDS = ("torch", "transformers", "spacy")  # imported lazily by the stages' models
START_TIMEOUT_S = 120.0  # a worker that has neither started nor died by then is an error too
MAX_WORKERS = 32  # Flink starts one per slot and stage; more at once is a flood
REAP_EVERY_S = 5.0
log = logging.getLogger("lacy.worker_pool")


def worker_environment(environ: dict | None = None) -> dict[str, str]:
    """The workers' environment: this interpreter's bin/ first on PATH (anything a worker starts
    as `python` is this one), and OpenMP threads that sleep while they wait, since several
    workers share the machine's cores (a value already set wins)."""
    env = dict(os.environ if environ is None else environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class WorkerPool(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
    """The BeamFnExternalWorkerPool service: StartWorker answers once the worker has imported
    Beam and lacy, or with the error that stopped it; StopWorker ends it; exited workers are
    reaped (no zombies)."""

    def __init__(
        self, log_dir: Path, start_timeout: float = START_TIMEOUT_S, max_workers: int = MAX_WORKERS
    ):
        self.log_dir, self.start_timeout, self.max_workers = log_dir, start_timeout, max_workers
        self.env = worker_environment()
        self.procs: dict[str, subprocess.Popen] = {}
        self.starting = 0  # workers being started, not yet in procs
        self.lock = threading.Lock()

    def StartWorker(self, request, context):  # noqa: N802 - the gRPC method's name
        wid = request.worker_id
        self.reap()
        with self.lock:
            busy = len(self.procs) + self.starting
            if busy >= self.max_workers:
                error = (
                    f"lacy worker pool: {busy} workers are running, the most it runs at once "
                    f"(--max_workers {self.max_workers}); worker {wid} not started"
                )
                log.error("%s", error)
                return beam_fn_api_pb2.StartWorkerResponse(error=error)
            self.starting += 1
        try:
            return self._start(request, wid)
        finally:
            with self.lock:
                self.starting -= 1

    def _start(self, request, wid: str):
        path = self.log_dir / f"worker-{_safe(wid)}.log"
        call = (request.control_endpoint.url, request.logging_endpoint.url, wid)
        cmd = [
            sys.executable,
            "-c",
            f"from pipelines.worker_pool import run_worker; run_worker{call!r}",
        ]
        with open(path, "ab") as errors:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, env=self.env)
        error = self._await_ready(proc, wid, path)
        if error:
            log.error("%s", error)
            return beam_fn_api_pb2.StartWorkerResponse(error=error)
        with self.lock:
            self.procs[wid] = proc
        log.info("worker %s started (pid %d, log %s)", wid, proc.pid, path)
        return beam_fn_api_pb2.StartWorkerResponse()

    def _await_ready(self, proc: subprocess.Popen, wid: str, path: Path) -> str | None:
        """None once the worker says it is ready; else what went wrong."""
        ready, _, _ = select.select([proc.stdout], [], [], self.start_timeout)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line == READY:
            return None
        if not ready:
            proc.kill()
        rc = proc.wait()
        why = "did not start" if not ready else f"exited with {rc} before it started"
        return f"lacy worker pool: SDK worker {wid} {why} ({sys.executable}):\n{_tail(path)}"

    def StopWorker(self, request, context):  # noqa: N802
        with self.lock:
            proc = self.procs.pop(request.worker_id, None)
        if proc is not None:
            _stop(proc)
        return beam_fn_api_pb2.StopWorkerResponse()

    def reap(self) -> None:
        """Forget workers that have exited (wait for them, so none stays a zombie)."""
        with self.lock:
            for wid, proc in list(self.procs.items()):
                rc = proc.poll()
                if rc is not None:
                    log.warning("worker %s (pid %d) exited with %s", wid, proc.pid, rc)
                    del self.procs[wid]

    def stop_all(self) -> None:
        with self.lock:
            procs, self.procs = list(self.procs.values()), {}
        for proc in procs:
            _stop(proc)


def _safe(worker_id: str) -> str:
    """A worker id as a file name (the id comes from the network)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in worker_id)[:100] or "_"


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve(
    port: int,
    log_dir: Path,
    start_timeout: float = START_TIMEOUT_S,
    host: str = "localhost",
    max_workers: int = MAX_WORKERS,
) -> None:
    """Serve on `host`:`port` until SIGTERM or Ctrl-C, then stop the workers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(log_dir, start_timeout, max_workers)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers + 4))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    server.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    where = (
        "loopback only"
        if host in LOOPBACK
        else "NOT loopback: anyone who reaches it can run code here"
    )
    log.info("lacy worker pool on %s:%d (%s), at most %d workers, running %s, logs in %s",
             host, bound, where, max_workers, sys.executable, log_dir)  # fmt: skip
    try:
        while not stopping.wait(REAP_EVERY_S):
            pool.reap()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=2)
        pool.stop_all()


def run_worker(control: str, logging_url: str, worker_id: str) -> None:
    """One SDK worker: import what the pipeline needs, say so, then serve the runner."""
    from apache_beam.portability.api import endpoints_pb2
    from apache_beam.runners.worker.log_handler import FnApiLogRecordHandler
    from apache_beam.runners.worker.sdk_worker import SdkHarness

    import pipelines.transforms  # noqa: F401 - a worker that cannot import lacy fails before READY

    missing = [m for m in WORKER_NEEDS if importlib.util.find_spec(m) is None]
    if missing:  # loaded lazily by the stages; looked up here, so a worker without them says so
        raise ImportError(f"this worker's Python has no {', '.join(missing)}")
    os.write(1, READY)
    os.dup2(2, 1)  # from now on anything printed goes to the worker's log, not the pool's pipe
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s pid %(process)d %(name)s: %(message)s"
    )
    logging.getLogger("lacy").setLevel(logging.INFO)
    if logging_url:  # the runner's logging service: Flink writes these lines to its TM log
        handler = FnApiLogRecordHandler(endpoints_pb2.ApiServiceDescriptor(url=logging_url))
        logging.getLogger().addHandler(handler)
    SdkHarness(control, worker_id=worker_id).run()


LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass
class PoolConfig:
    port: int = setting(50000, "the pool's gRPC port (0: any free port)")
    host: str = setting(
        "localhost",
        "the address to listen on: loopback by default; another one (0.0.0.0 for every "
        "interface) lets anyone who reaches it start workers, so only on a trusted network",
    )
    max_workers: int = setting(MAX_WORKERS, "workers the pool runs at once; more are refused")
    log_dir: str | None = setting(None, "folder for the workers' logs (default: a new temp folder)")
    start_timeout: float = setting(
        START_TIMEOUT_S, "seconds a worker may take to start before the pool reports it"
    )


def main(argv: list[str] | None = None) -> int:
    cfg, _ = cli.parse(PoolConfig, argv, "lacy-worker-pool", __doc__.split("\n\n")[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log_dir = Path(cfg.log_dir or tempfile.mkdtemp(prefix="lacy-worker-pool-"))
    serve(cfg.port, log_dir, cfg.start_timeout, cfg.host, cfg.max_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Listening on loopback unless told otherwise. Beam's local runners bind their gRPC services
(the FnApiRunner's control, data, state and logging servers for local worker processes, the
LOOPBACK environment's worker pool) on every interface (`[::]:0`), though only processes on
this machine ever connect to them: anyone who reaches such a port could pose as a worker and be
sent the job's data. For the length of a job lacy rewrites a wildcard address to `localhost`;
`--listen_all` keeps Beam's choice. Also: a free loopback port and a wait for a server on one
(for the processes tests, benchmarks and the Flink driver start)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Iterator

_WILDCARD = re.compile(r"^(\[::\]|0\.0\.0\.0|\*|)(:\d+)$")


def loopback_address(address: str) -> str:
    """`[::]:N`, `0.0.0.0:N`, `*:N` or `:N` as `localhost:N`; any other address unchanged."""
    m = _WILDCARD.match(address)
    return f"localhost{m.group(2)}" if m else address


@contextlib.contextmanager
def loopback_only(enabled: bool = True) -> Iterator[None]:
    """gRPC servers that this process starts in the block bind loopback instead of every
    interface."""
    import grpc._server

    cls = grpc._server._Server
    original = cls.add_insecure_port
    if enabled:
        cls.add_insecure_port = lambda self, address: original(self, loopback_address(address))
    try:
        yield
    finally:
        cls.add_insecure_port = original


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a server a test or bench starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until `port` on loopback accepts connections; fails if `proc` (the server) exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} did not open")

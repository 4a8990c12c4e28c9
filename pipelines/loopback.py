"""Listening on loopback unless told otherwise. Beam's local runners bind their gRPC services
(the FnApiRunner's control, data, state and logging servers for local worker processes, the
LOOPBACK environment's worker pool) on every interface (`[::]:0`), though only processes on
this machine ever connect to them: anyone who reaches such a port could pose as a worker and be
sent the job's data. For the length of a job lacy rewrites a wildcard address to `localhost`;
`--listen_all` keeps Beam's choice."""

from __future__ import annotations

import contextlib
import re
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

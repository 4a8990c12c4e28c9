"""Shared helpers for the benchmarks: shipped documents, peak RSS, the JSON last line."""

from __future__ import annotations

import json
import os
import resource
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def wiki_docs(n: int, offset: int = 0) -> list[dict]:
    from lacy_labels.corpus import iter_wiki_docs

    return list(iter_wiki_docs(limit=n, offset=offset))


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(figures: dict) -> None:
    """Print the figures as one JSON object on the last line."""
    print(json.dumps(figures, sort_keys=True), flush=True)


def cpu_name() -> str:
    """The CPU's model name (lscpu's), to print beside every figure."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a server a test or bench starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

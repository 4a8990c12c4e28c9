"""Shared helpers for the benchmarks: shipped documents, peak RSS, the JSON last line."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time

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


def summarize(results: dict, metrics=None) -> dict:
    """{name: [run figures]} -> {name: {metric: (mean, std)}} over the runs (seeds)."""
    import numpy as np

    return {
        name: {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
               for k in (metrics or runs[0])}
        for name, runs in results.items()
    }  # fmt: skip


def mean_std_table(summary: dict, metrics, digits: int = 4, first: str = "objective") -> list[str]:
    """Markdown table lines: one row per name, `mean ± std` per metric."""
    lines = [f"| {first} | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, ms in summary.items():
        cells = [f"{ms[k][0]:.{digits}f} ± {ms[k][1]:.{digits}f}" for k in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines

"""Shared helpers for the benchmarks: shipped documents, peak RSS, the JSON last line."""

from __future__ import annotations

import json
import os
import resource

from lacy_labels.cpu import cpu_name  # noqa: F401 - the benchmarks import it from here

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


def label_docs(docs: list[dict], out: str, extra: list[str]) -> dict:
    """Label `docs` ({"id", "text"}) with the real pipeline into `out` (its input written beside
    it as OUT.jsonl, a previous output replaced, no report); returns the run's stats."""
    from pipelines import label as pipeline

    src = out + ".jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    args = ["--input", src, "--output", out, "--overwrite", "--report", "false", *extra]
    return pipeline.run(args)

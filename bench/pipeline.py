"""End-to-end pipeline throughput vs the stage bound and a naive loop, plus 4x scaling.

    python -m bench.pipeline --docs 100

e2e: `python -m pipelines.label` on N shipped leads (a subprocess, default local runner; its
wall time includes worker model loading). stage bound: 1 / (1/g + 1/s) from the grammar stage
and the scoring stage run alone in this process on the same documents. naive: `nlp(text)` then
one forward per document of the plain model (torch's default kernels);
naive_same_kernel repeats it with the pipeline's linear kernel (lacy_labels.kernels), so the gain
of the pipeline's structure can be told apart from the gain of the kernel choice.
scale_4x_time_ratio: pipeline time for 4N docs / time for N. With --workers_docs M (e.g. 300):
M docs in the default single process and with two local worker processes
(--direct_running_mode=multi_processing --direct_num_workers=2; torch threads shared out by the
job): two_workers_speedup.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench.common import emit, wiki_docs
from lacy_labels import cli
from lacy_labels.scoring import forward_losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pipeline(n: int, out: str, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "pipelines.label",
        "--output",
        out,
        "--limit",
        str(n),
        "--overwrite",
        "--report",
        "false",
        *extra,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    run_file = os.path.join(out, "run.json")  # wall time (older versions kept it in stats.json)
    if os.path.exists(run_file):
        with open(run_file) as f:
            stats |= json.load(f)
    return stats


def naive_loop(nlp, ref, docs) -> float:
    """Seconds for `nlp(text)` then one full forward + log-softmax per document."""
    t = time.perf_counter()
    for d in docs:
        nlp(d["text"])
        ids = ref.tokenizer(d["text"], add_special_tokens=False)["input_ids"]
        forward_losses(ref.model, [ref.start_token_id, *ids])
    return time.perf_counter() - t


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--pipeline-args", default="", help="extra flags for pipelines.label")
    ap.add_argument("--workers-docs", type=int, default=0, help="docs for the 1 vs 2 workers run")
    args = ap.parse_args()
    extra = args.pipeline_args.split()

    from lacy_labels.annotate import Annotator
    from lacy_labels.kernels import set_linear_kernel
    from lacy_labels.reference import load_reference
    from lacy_labels.scoring import Scorer

    tmp = tempfile.mkdtemp(prefix="lacy-bench-")
    small = run_pipeline(args.docs, f"{tmp}/n", extra)
    large = run_pipeline(4 * args.docs, f"{tmp}/4n", extra)
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = {}
    if args.workers_docs:
        two = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        one = run_pipeline(args.workers_docs, f"{tmp}/w1", extra)
        both = run_pipeline(args.workers_docs, f"{tmp}/w2", extra + two)
        workers = {
            "workers_docs": args.workers_docs,
            "one_process_s": one["wall_time_s"],
            "two_workers_s": both["wall_time_s"],
            "two_workers_speedup": round(one["wall_time_s"] / both["wall_time_s"], 3),
        }

    docs = wiki_docs(args.docs)
    ref = load_reference()
    ann = Annotator(ref.tokenizer)
    scorer = Scorer(ref)
    ann.annotate(docs[:4])
    t = time.perf_counter()
    records = ann.annotate(docs)
    g_s = time.perf_counter() - t
    tokens = sum(len(r["input_ids"]) for r in records)
    scorer.score([r["input_ids"] for r in records[:4]])
    t = time.perf_counter()
    scorer.score([r["input_ids"] for r in records])
    s_s = time.perf_counter() - t

    kernel = ref.identity["reference_linear_kernel"]
    naive_s = {}
    for k in dict.fromkeys(["torch", kernel]):  # the plain model first
        set_linear_kernel(ref.model, k)
        naive_loop(ann.nlp, ref, docs[:2])  # warm-up
        naive_s[k] = naive_loop(ann.nlp, ref, docs)

    g, s = tokens / g_s, tokens / s_s
    bound = 1 / (1 / g + 1 / s)
    e2e = small["tokens"] / small["wall_time_s"]
    emit(
        {
            "docs": args.docs,
            "tokens": small["tokens"],
            "e2e_tokens_per_s": round(e2e, 1),
            "grammar_stage_tokens_per_s": round(g, 1),
            "scoring_stage_tokens_per_s": round(s, 1),
            "stage_bound_tokens_per_s": round(bound, 1),
            "e2e_vs_stage_bound": round(e2e / bound, 3),
            "linear_kernel": kernel,
            "naive_tokens_per_s": round(tokens / naive_s["torch"], 1),
            "speedup_vs_naive": round(e2e / (tokens / naive_s["torch"]), 3),
            "naive_same_kernel_tokens_per_s": round(tokens / naive_s[kernel], 1),
            "speedup_vs_naive_same_kernel": round(e2e / (tokens / naive_s[kernel]), 3),
            "time_n_s": small["wall_time_s"],
            "time_4n_s": large["wall_time_s"],
            "tokens_4n": large["tokens"],
            "scale_4x_time_ratio": round(large["wall_time_s"] / small["wall_time_s"], 3),
            "peak_rss_mb": round(worker_rss, 1),
            "pipeline_args": extra,
            **workers,
        }
    )


if __name__ == "__main__":
    main()

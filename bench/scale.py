"""The job's shape at growing size: the pipeline at N and F x N documents with a small fast
reference model, so that it measures the job (spaCy, plumbing, shuffles, memory) rather than
SmolLM2.

    python -m bench.scale --docs 500 --factor 5 [--beam_args "--direct_running_mode=..."]

Documents: the shipped leads (repeated with new ids past 10,033). Model: a randomly initialised
two-layer Llama with SmolLM2's tokenizer, saved as a local folder for --reference_model. Shards
hold --shard_chars characters (256 KiB by default), so that at both sizes the data spans many
shards, as it does at scale (with the 8 MiB default, a few thousand leads are one shard that one
worker holds whole while it writes it). Each run
is a `python -m pipelines.label` subprocess; its driver's and its workers' peak RSS are sampled
with psutil (in the default single-process runner the workers are the driver).
time_ratio = time(F x N) / time(N) (target <= 1.05 F); RSS ratios F x N over N (target <= 1.15);
e2e_vs_stage_bound: end to end at F x N against 1 / (1/grammar + 1/scoring), both stages timed
alone in this process on the same N documents.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from bench.common import cpu_name, emit, wiki_docs
from lacy_labels import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fast_model(path: str) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    tok = load_tokenizer(resolve_model_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_docs(n: int, path: str) -> None:
    base = wiki_docs(min(n, 10_033))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            d = base[i % len(base)]
            f.write(json.dumps({"id": f"{d['id']}#{i // len(base)}", "text": d["text"]}) + "\n")


def run(inp: str, out: str, model: str, beam_args: list[str]) -> dict:
    """One job; its wall time, tokens and the peak RSS of the driver and of its workers."""
    import psutil

    cmd = [sys.executable, "-m", "pipelines.label", "--input", inp, "--output", out]
    cmd += ["--overwrite", "--report", "false", "--reference_model", model, *beam_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    main, driver, worker = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            driver = max(driver, main.memory_info().rss)
            for c in main.children(recursive=True):
                worker = max(worker, c.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode:
        raise RuntimeError(f"pipeline failed ({proc.returncode}): {' '.join(cmd)}")
    with open(f"{out}/stats.json") as f, open(f"{out}/run.json") as g:
        stats = json.load(f) | json.load(g)
    return {
        "wall_s": stats["wall_time_s"],
        "tokens": stats["tokens"],
        "driver_rss_mb": round(driver / 2**20, 1),
        "worker_rss_mb": round((worker or driver) / 2**20, 1),
    }


def stage_rates(docs: list[dict], model: str) -> tuple[float, float]:
    """Tokens/s of the grammar stage and of the scoring stage, each alone."""
    from lacy_labels.annotate import Annotator
    from lacy_labels.reference import load_reference
    from lacy_labels.scoring import Scorer

    ref = load_reference(model)
    ann, scorer = Annotator(ref.tokenizer), Scorer(ref)
    ann.annotate(docs[:4])
    t = time.perf_counter()
    records = ann.annotate(docs)
    g = time.perf_counter() - t
    ids = [r["input_ids"] for r in records]
    scorer.score(ids[:4])
    t = time.perf_counter()
    scorer.score(ids)
    s = time.perf_counter() - t
    tokens = sum(map(len, ids))
    return tokens / g, tokens / s


def main() -> None:
    ap = cli.ArgParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--factor", type=int, default=5)
    ap.add_argument("--beam-args", default="", help="extra flags for pipelines.label")
    ap.add_argument("--shard-chars", type=int, default=1 << 18)
    a = ap.parse_args()
    beam_args = ["--shard_chars", str(a.shard_chars), *a.beam_args.split()]
    tmp = tempfile.mkdtemp(prefix="lacy-scale-")
    model = fast_model(f"{tmp}/model")
    sizes = {"n": a.docs, "fn": a.docs * a.factor}
    runs = {}
    for key, n in sizes.items():
        write_docs(n, f"{tmp}/{key}.jsonl")
        runs[key] = run(f"{tmp}/{key}.jsonl", f"{tmp}/out-{key}", model, beam_args)
    g, s = stage_rates(wiki_docs(a.docs), model)
    bound = 1 / (1 / g + 1 / s)
    n, fn = runs["n"], runs["fn"]
    e2e = fn["tokens"] / fn["wall_s"]
    emit(
        {
            "cpu": cpu_name(),
            "machine": platform.machine(),
            "docs": a.docs,
            "factor": a.factor,
            "beam_args": beam_args,
            "time_n_s": n["wall_s"],
            "time_fn_s": fn["wall_s"],
            "time_ratio": round(fn["wall_s"] / n["wall_s"], 3),
            "tokens_per_s_n": round(n["tokens"] / n["wall_s"], 1),
            "tokens_per_s_fn": round(e2e, 1),
            "driver_peak_rss_mb": [n["driver_rss_mb"], fn["driver_rss_mb"]],
            "worker_peak_rss_mb": [n["worker_rss_mb"], fn["worker_rss_mb"]],
            "driver_peak_rss_ratio": round(fn["driver_rss_mb"] / n["driver_rss_mb"], 3),
            "worker_peak_rss_ratio": round(fn["worker_rss_mb"] / n["worker_rss_mb"], 3),
            "grammar_stage_tokens_per_s": round(g, 1),
            "scoring_stage_tokens_per_s": round(s, 1),
            "stage_bound_tokens_per_s": round(bound, 1),
            "e2e_vs_stage_bound": round(e2e / bound, 3),
        }
    )


if __name__ == "__main__":
    main()

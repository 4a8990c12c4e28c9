"""Reference-model scoring throughput: the batched Scorer vs a naive per-document loop, on the
same documents in the same run, with MFU against this machine's measured matmul rate.

    python -m bench.scoring --docs 100 [--device cuda] [--linear_kernel auto|onednn|torch]
        [--long_doc_tokens 50000] [--dtype bfloat16]

MFU counts 2 FLOPs per parameter per token plus causal attention's matmuls, against a matmul
measured here in the run's dtype. The naive loop is the plain model as transformers loads it
(torch's default kernels); naive_same_kernel_tokens_per_s repeats it with the Scorer's kernel,
so the gain from batching alone can be told apart from the gain from the kernel choice.
long_doc_cost_ratio: seconds per token of one long document (the leads' tokens repeated to
--long_doc_tokens, scored with the default window and context) over seconds per token of the
leads. With --dtype other than float32 the same documents are also scored in fp32
(fp32_tokens_per_s, bfloat16_speedup_vs_fp32) and compared: max_abs_loss_diff, mean_abs_loss_diff
and delegate_agreement (the share of tokens whose lacy `delegate` flag, each precision with its
own threshold over these documents, is the same as with fp32).
"""

from __future__ import annotations

import time

from bench.common import cpu_name, emit, peak_rss_mb, wiki_docs
from lacy_labels import cli
from lacy_labels.scoring import forward_losses


def matmul_flops(torch, device: str, dtype: str = "float32", n: int = 2048, reps: int = 10):
    """Measured matmul FLOP/s in `dtype` on this machine: best of a few runs, and on CPU the
    faster of torch's default kernel and oneDNN's."""
    from lacy_labels.kernels import onednn_available

    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    kernels = [lambda: a @ b]
    if device == "cpu" and onednn_available():
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], ""))
    best = float("inf")
    for mm in kernels:
        mm()
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                mm()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best


def attention_flops(config, ids, scorer) -> float:
    """FLOPs of causal attention's two matmuls (scores and weighted values) over the windows the
    scorer runs: 4 x layers x attention width per (query, key) pair a query attends to."""
    from lacy_labels.scoring import plan_windows

    width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads
    )
    pairs = 0
    for i, seq in enumerate(scorer.sequences(ids)):
        for s in plan_windows(i, len(seq), scorer.config.window, scorer.context):
            n = s.b - s.a
            pairs += n * (n + 1) // 2
    return 4.0 * config.num_hidden_layers * width * pairs


def timed_scores(torch, scorer, ids, device: str):
    """(losses, seconds): best of two after a warm-up (these machines are shared and noisy)."""
    scorer.score(ids[:4])
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        got = scorer.score(ids)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return got, best


def agreement(fp32: list, other: list, docs: list[dict], tokenizer) -> dict:
    """Loss differences and lacy-label agreement of `other` against fp32 (facts from spaCy)."""
    import numpy as np

    from lacy_labels.annotate import Annotator
    from lacy_labels.rules import LabelRule
    from lacy_labels.thresholds import LossSketch

    facts = [r["is_fact"] for r in Annotator(tokenizer).annotate(docs)]
    rule = LabelRule("lacy")

    def flags(losses):
        pop = np.concatenate([rule.population(x, f) for x, f in zip(losses, facts)])
        t = rule.dataset_threshold(LossSketch.of(pop))
        return np.concatenate([rule.delegate(x, f, t) for x, f in zip(losses, facts)])

    diff = np.abs(np.concatenate(fp32) - np.concatenate(other))
    return {
        "max_abs_loss_diff": round(float(np.nanmax(diff)), 5),
        "mean_abs_loss_diff": round(float(np.nanmean(diff)), 5),
        "delegate_agreement": round(float((flags(fp32) == flags(other)).mean()), 5),
    }


def naive_losses(model, ids, start):
    """One unbatched forward per document, full logits, log-softmax."""
    return [forward_losses(model, [start, *d.tolist()]).cpu().numpy() for d in ids]


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--linear-kernel", default="auto", help="auto, onednn or torch")
    ap.add_argument("--long-doc-tokens", type=int, default=50_000, help="0: skip")
    ap.add_argument("--dtype", default="float32", help="reference model dtype (e.g. bfloat16)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from lacy_labels.kernels import set_linear_kernel
    from lacy_labels.reference import load_reference
    from lacy_labels.scoring import ScoreConfig, Scorer, default_batch_tokens
    from lacy_labels.tokens import encode_batch

    def load(dtype):
        return load_reference(
            device=args.device, dtype=dtype, threads=args.threads, linear_kernel=args.linear_kernel
        )

    ref = load(args.dtype)
    kernel = ref.identity["reference_linear_kernel"]
    bt = args.batch_tokens or default_batch_tokens(args.device)
    scorer = Scorer(ref, ScoreConfig(batch_tokens=bt))
    ids = [i for i, _ in encode_batch(ref.tokenizer, [d["text"] for d in wiki_docs(args.docs)])]
    tokens = sum(len(i) for i in ids)
    got, batched_s = timed_scores(torch, scorer, ids, args.device)
    scorer_peak_rss = peak_rss_mb()  # before the naive loop's full-vocabulary logits
    long_ratio = None
    if args.long_doc_tokens:
        doc = np.concatenate(ids)
        doc = np.resize(doc, args.long_doc_tokens)  # repeats the leads when they are too few
        t = time.perf_counter()
        scorer.score([doc])
        long_ratio = (time.perf_counter() - t) / len(doc) / (batched_s / tokens)
    naive_s, full = {}, {}
    for k in dict.fromkeys(["torch", kernel]):  # plain first; the Scorer's kernel if it differs
        set_linear_kernel(ref.model, k)
        naive_losses(ref.model, ids[:2], ref.start_token_id)  # warm-up
        t = time.perf_counter()
        full[k] = naive_losses(ref.model, ids, ref.start_token_id)
        naive_s[k] = time.perf_counter() - t
    set_linear_kernel(ref.model, kernel)

    precision = {}
    if args.dtype != "float32":
        scorer32 = Scorer(load("float32"), ScoreConfig(batch_tokens=bt))
        fp32, fp32_s = timed_scores(torch, scorer32, ids, args.device)
        # Interleaved, best of both rounds: a shared machine's load changes within minutes.
        batched_s = min(batched_s, timed_scores(torch, scorer, ids, args.device)[1])
        fp32_s = min(fp32_s, timed_scores(torch, scorer32, ids, args.device)[1])
        precision = {"fp32_tokens_per_s": round(tokens / fp32_s, 1)}
        precision[f"{args.dtype}_speedup_vs_fp32"] = round(fp32_s / batched_s, 3)
        precision |= agreement(fp32, got, wiki_docs(args.docs), ref.tokenizer)
    params = sum(p.numel() for p in ref.model.parameters())
    flops_per_token = 2 * params  # tied embeddings: the lookup is free, the head is a matmul
    flops_per_token += attention_flops(ref.model.config, ids, scorer) / tokens
    peak = matmul_flops(torch, args.device, args.dtype)
    if args.dtype != "float32":
        precision["fp32_matmul_gflop_per_s"] = round(matmul_flops(torch, args.device) / 1e9, 1)
    tps = tokens / batched_s
    emit(
        {
            "device": args.device,
            "cpu": cpu_name(),
            "dtype": args.dtype,
            "docs": len(ids),
            "tokens": tokens,
            "batch_tokens": bt,
            "linear_kernel": kernel,
            "head": scorer.head.kind,
            "tokens_per_s": round(tps, 1),
            "naive_tokens_per_s": round(tokens / naive_s["torch"], 1),
            "speedup_vs_naive": round(naive_s["torch"] / batched_s, 3),
            "naive_same_kernel_tokens_per_s": round(tokens / naive_s[kernel], 1),
            "speedup_vs_naive_same_kernel": round(naive_s[kernel] / batched_s, 3),
            "model_gflop_per_token": round(flops_per_token / 1e9, 4),
            "matmul_gflop_per_s": round(peak / 1e9, 1),
            "mfu": round(tps * flops_per_token / peak, 3),
            "naive_mfu": round(tokens / naive_s["torch"] * flops_per_token / peak, 3),
            "max_abs_loss_diff_vs_full_forward": float(
                max(np.abs(a - b).max() for a, b in zip(got, full["torch"]) if len(a))
            ),
            "mean_loss": round(float(np.concatenate(got).mean()), 4),
            "window": scorer.config.window,
            "min_context": scorer.context,
            "long_doc_tokens": args.long_doc_tokens,
            "long_doc_cost_ratio": None if long_ratio is None else round(long_ratio, 3),
            "peak_rss_mb": scorer_peak_rss,
            "peak_rss_mb_incl_naive": peak_rss_mb(),
            **precision,
        }
    )


if __name__ == "__main__":
    main()

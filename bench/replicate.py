"""Mini replication of LaCy: label shipped Wikipedia leads with the real SmolLM2 (held-out leads
kept apart), train `tiny` SLMs with several objectives under an equal ground-truth-gradient
budget and several seeds, and evaluate each in cascade with SmolLM2 at a 22% call budget.

    python -m bench.replicate [--train_docs 600] [--eval_docs 40] [--budget 120000] [--seeds 3]

Writes DIR/replication.md (table) and DIR/replication.png (mean +/- std per objective) and
prints its figures as one JSON object on the last line.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from bench.common import emit, mean_std_table, summarize, wiki_docs
from lacy_labels import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

METRICS = (
    "cascade_fact_accuracy",
    "slm_fact_accuracy",
    "cascade_accuracy",
    "calls_on_facts",
    "call_rate",
    "fact_share",
    "uncertainty_cascade_fact_accuracy",
    "uncertainty_calls_on_facts",
)


def label(docs: list[dict], out: str, extra: list[str]) -> None:
    from pipelines import label as pipeline

    src = out + ".jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    pipeline.run(["--input", src, "--output", out, "--overwrite", "--report", "false", *extra])


def write_outputs(out_dir: str, summary: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report import png_bytes

    lines = [
        f"Mini LaCy replication: {args.train_docs} training leads, {args.eval_docs} "
        f"held-out leads, budget {args.budget} ground-truth targets, {args.seeds} seeds, "
        f"call budget {args.call_budget:.0%}, tiny SLM, SmolLM2-135M as the large model.",
        "",
        *mean_std_table(summary, METRICS),
    ]
    with open(os.path.join(out_dir, "replication.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(summary)
    for j, (metric, color) in enumerate(
        (("cascade_fact_accuracy", "#e0502a"), ("slm_fact_accuracy", "#2a6fdb"))
    ):
        means = [summary[n][metric][0] for n in names]
        stds = [summary[n][metric][1] for n in names]
        ax.bar(
            [i + 0.4 * j for i in range(len(names))],
            means,
            0.4,
            yerr=stds,
            capsize=3,
            color=color,
            label=metric,
        )
    ax.set_xticks([i + 0.2 for i in range(len(names))], names)
    ax.set_ylabel("accuracy on fact targets")
    ax.legend()
    with open(os.path.join(out_dir, "replication.png"), "wb") as f:
        f.write(png_bytes(fig, dpi=100))


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--train-docs", type=int, default=600)
    ap.add_argument("--eval-docs", type=int, default=40)
    ap.add_argument("--budget", type=int, default=120_000, help="ground-truth-gradient targets")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--objectives", default="lacy,lacy-online,loss-online,rho,standard")
    ap.add_argument("--call-budget", type=float, default=0.22)
    ap.add_argument("--eval-sequences", type=int, default=32)
    ap.add_argument("--out", default=None)
    ap.add_argument("--pipeline-args", default="")
    args = ap.parse_args()

    from lacy_labels.reference import load_reference
    from trainer.cascade import teacher_forced
    from trainer.train import TrainConfig, Trainer

    t0 = time.time()
    out = args.out or tempfile.mkdtemp(prefix="lacy-replicate-")
    os.makedirs(out, exist_ok=True)
    extra = args.pipeline_args.split()
    docs = wiki_docs(args.train_docs + args.eval_docs)
    label(docs[: args.train_docs], f"{out}/train", extra)
    label(docs[args.train_docs :], f"{out}/heldout", extra)
    t_label = time.time() - t0

    large = load_reference().model
    large_cache: dict = {}
    results: dict = {}
    for obj in args.objectives.split(","):
        for seed in range(args.seeds):
            cfg = TrainConfig(
                data=f"{out}/train",
                output=f"{out}/ckpt-{obj}-{seed}",
                objective=obj,
                token_budget=args.budget,
                seed=seed,
                progress=False,
                log_every=10,
            )
            tr = Trainer(cfg)
            tr.fit()
            tr.model.eval()
            r = teacher_forced(
                tr.model,
                tr.tok,
                large,
                f"{out}/heldout",
                args.call_budget,
                cfg.seq_len,
                args.eval_sequences,
                large_cache,
            )
            r |= {"steps": tr.step, "gt_tokens": tr.gt_tokens}
            results.setdefault(obj, []).append(r)
            print(obj, seed, json.dumps(r), flush=True)
    summary = summarize(results, METRICS)
    write_outputs(out, summary, args)
    print(open(os.path.join(out, "replication.md")).read())
    emit(
        {
            "out": out,
            "label_time_s": round(t_label, 1),
            "total_time_s": round(time.time() - t0, 1),
            "train_docs": args.train_docs,
            "eval_docs": args.eval_docs,
            "budget": args.budget,
            "seeds": args.seeds,
            "large_fact_accuracy": results[next(iter(results))][0]["large_fact_accuracy"],
            **{
                f"{obj}_{m}": round(ms[m][0], 4)
                for obj, ms in summary.items()
                for m in ("cascade_fact_accuracy", "slm_fact_accuracy")
            },
            **{
                f"{obj}_cascade_fact_accuracy_std": round(ms["cascade_fact_accuracy"][1], 4)
                for obj, ms in summary.items()
            },
        }
    )


if __name__ == "__main__":
    main()

"""Mini replication of LaCy: label shipped Wikipedia leads with the real SmolLM2 (held-out leads
kept apart), train `tiny` SLMs with several objectives under an equal ground-truth-gradient
budget and several seeds, and evaluate each in cascade with SmolLM2 at a 22% call budget.

    python -m bench.replicate [--budget 120000] [--seeds 3] [--eval-docs 120] [--max-passes 2]

The held-out leads are the corpus's first ones, the same at every budget. The training leads
follow them: by default the fewest that keep the budget within --max-passes ground-truth
targets per training token, so a larger budget reads more text instead of the same leads again
(--train-docs N fixes the count).

An objective written NAME+neg trains with `--call_negatives` (<CALL> pushed down where the
labels do not call), beside the plain NAME in the same run.

--baseline-args labels the same leads a second time with other pipeline settings (the old label
defaults: "--min_loss 0 --fact_exclude_pos"): the objectives that read the labels train on both,
and every SLM is scored on both held-out fact sets, so the two label configs compare on common
positions, seed by seed.

Writes DIR/replication.md (tables) and DIR/replication.png (mean +/- std per objective) and
prints its figures as one JSON object on the last line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable

import numpy as np

from bench.common import cpu_name, emit, label_docs, mean_std_table, summarize, wiki_docs
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
# The figures that depend on the fact set (repeated for the baseline's) and the objectives
# that read the labels (trained once per label config; the others once).
FACT_METRICS = tuple(m for m in METRICS if "fact" in m)
LABEL_OBJECTIVES = ("lacy", "lacy-online", "ignore-facts")


def leads_for_budget(token_counts: Iterable[int], budget: int, max_passes: float) -> int:
    """The fewest leads, in order, with at least budget / max_passes tokens between them."""
    need, total = budget / max_passes, 0
    for n, count in enumerate(token_counts, 1):
        total += count
        if total >= need:
            return n
    raise ValueError(
        f"the shipped leads hold {total} tokens: too few for a budget of {budget} "
        f"at {max_passes} passes; lower --budget or raise --max-passes"
    )


def split_leads(args) -> tuple[list[dict], list[dict]]:
    """(training leads, held-out leads): the held-out ones first, the training ones after."""
    if args.train_docs:
        docs = wiki_docs(args.eval_docs + args.train_docs)
        return docs[args.eval_docs :], docs[: args.eval_docs]
    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    tok = load_tokenizer(resolve_model_dir())
    docs = wiki_docs(None)
    counts = (len(tok(d["text"])["input_ids"]) for d in docs[args.eval_docs :])
    n = leads_for_budget(counts, args.budget, args.max_passes)
    return docs[args.eval_docs : args.eval_docs + n], docs[: args.eval_docs]


def train_tokens(data: str) -> int:
    """Target tokens in one labelled training folder (its stats.json)."""
    with open(os.path.join(data, "stats.json")) as f:
        return int(json.load(f)["tokens"])


def folder(out: str, config: str | None, part: str) -> str:
    """Where one label config's `train` or `heldout` output lives (None: the main labels)."""
    return f"{out}/{config}-{part}" if config else f"{out}/{part}"


def objective_of(arm_name: str) -> tuple[str, bool]:
    """(objective, call_negatives) of an --objectives entry: "lacy+neg" is lacy trained with
    `--call_negatives`."""
    objective, plus, option = arm_name.partition("+")
    if plus and option != "neg":
        raise ValueError(f"{arm_name!r}: the only option after + is 'neg' (--call_negatives)")
    return objective, bool(plus)


def arm(obj: str, baseline: str | None) -> str:
    """Row name of an objective trained on the baseline's labels ("lacy [old-defaults]")."""
    return f"{obj} [{baseline}]" if baseline else obj


def paired(results: dict, baseline: str, metrics) -> dict:
    """Per label-reading objective and metric: main minus baseline labels, seed by seed, as
    (mean, sample std) over the seeds."""
    out = {}
    for obj in results:
        if arm(obj, baseline) not in results:
            continue
        for m in metrics:
            d = [a[m] - b[m] for a, b in zip(results[obj], results[arm(obj, baseline)])]
            out[f"{obj}: {m}"] = (
                float(np.mean(d)),
                float(np.std(d, ddof=1)) if len(d) > 1 else 0.0,
            )
    return out


def fact_set_view(summary: dict, prefix: str) -> dict:
    """The summary's figures on one fact set ("" = the main labels', "NAME/" = the baseline's)."""
    return {
        row: {m: ms[prefix + m] for m in FACT_METRICS if prefix + m in ms}
        for row, ms in summary.items()
    }


def write_outputs(out_dir: str, summary: dict, results: dict, args) -> None:
    lines = [
        f"Mini LaCy replication: {args.train_docs} training leads ({args.train_tokens} "
        f"tokens), {args.eval_docs} held-out leads, budget {args.budget} ground-truth targets "
        f"({args.budget / args.train_tokens:.2f} per training token), {args.seeds} seeds, "
        f"call budget {args.call_budget:.0%}, tiny SLM ({args.vocab} vocabulary), SmolLM2-135M "
        f"as the large model; CPU: {cpu_name()}.",
        "",
    ]
    if not args.baseline_args:
        lines += mean_std_table(summary, (*METRICS, "epochs"))
    else:
        name = args.baseline_name
        lines += [
            f"Main labels: {f'`{args.pipeline_args}`' if args.pipeline_args else 'the defaults'};"
            f" `[{name}]` rows train on labels made with `{args.baseline_args}`. Every SLM is "
            "scored on both held-out fact sets (the same positions).",
            "",
            "All positions:",
            "",
            *mean_std_table(summary, ("cascade_accuracy", "slm_accuracy", "call_rate", "epochs")),
            "",
            "On the main labels' fact set:",
            "",
            *mean_std_table(fact_set_view(summary, ""), FACT_METRICS),
            "",
            f"On the {name} labels' fact set:",
            "",
            *mean_std_table(fact_set_view(summary, f"{name}/"), FACT_METRICS),
            "",
            "Main labels minus baseline labels, paired by seed (mean ± sample std):",
            "",
            "| objective: figure | difference |",
            "|---|---|",
            *(
                f"| {k} | {m:+.4f} ± {sd:.4f} |"
                for k, (m, sd) in paired(results, name, paired_metrics(name)).items()
            ),
        ]
    with open(os.path.join(out_dir, "replication.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_plot(out_dir, summary)


def paired_metrics(baseline: str) -> tuple[str, ...]:
    both = ("cascade_fact_accuracy", "calls_on_facts", "slm_fact_accuracy")
    return ("cascade_accuracy", *both, *(f"{baseline}/{m}" for m in both))


def write_plot(out_dir: str, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report import png_bytes

    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(summary)), 3.5))
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
    ax.set_xticks([i + 0.2 for i in range(len(names))], names, fontsize=8)
    ax.set_ylabel("accuracy on fact targets")
    ax.legend()
    with open(os.path.join(out_dir, "replication.png"), "wb") as f:
        f.write(png_bytes(fig, dpi=100))


def parse_args(argv=None):
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--train-docs", type=int, default=0,
                    help="training leads (0: the fewest within --max-passes)")  # fmt: skip
    ap.add_argument("--max-passes", type=float, default=2.0,
                    help="ground-truth targets per training token, at most")  # fmt: skip
    ap.add_argument("--eval-docs", type=int, default=120)
    ap.add_argument("--budget", type=int, default=120_000, help="ground-truth-gradient targets")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--objectives", default="lacy,lacy-online,loss-online,rho,standard")
    ap.add_argument("--call-budget", type=float, default=0.22)
    ap.add_argument("--eval-sequences", type=int, default=96)
    ap.add_argument("--vocab", default="full", choices=("compact", "full"),
                    help="SLMs train on the leads' token ids or the whole vocabulary")  # fmt: skip
    ap.add_argument("--out", default=None)
    ap.add_argument("--pipeline-args", default="", help="pipeline flags for the main labels")
    ap.add_argument("--baseline-args", default="",
                    help='pipeline flags for a second labelling to compare against, e.g. the old '
                         'defaults "--min_loss 0 --fact_exclude_pos"')  # fmt: skip
    ap.add_argument("--baseline-name", default="baseline")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from lacy_labels.reference import load_reference
    from trainer.cascade import teacher_forced
    from trainer.train import TrainConfig, Trainer

    t0 = time.time()
    out = args.out or tempfile.mkdtemp(prefix="lacy-replicate-")
    os.makedirs(out, exist_ok=True)
    train, heldout = split_leads(args)
    args.train_docs = len(train)  # resolved once: the count every output reports
    configs = {None: args.pipeline_args}
    if args.baseline_args:
        configs[args.baseline_name] = args.baseline_args
    for name, flags in configs.items():
        label_docs(train, folder(out, name, "train"), flags.split())
        label_docs(heldout, folder(out, name, "heldout"), flags.split())
    t_label = time.time() - t0
    args.train_tokens = train_tokens(folder(out, None, "train"))
    facts_from = {n: folder(out, n, "heldout") for n in configs if n}

    large = load_reference().model
    large_cache: dict = {}
    results: dict = {}
    for obj in args.objectives.split(","):
        objective, negatives = objective_of(obj)
        for name in configs if objective in LABEL_OBJECTIVES else (None,):
            for seed in range(args.seeds):
                ckpt = f"{out}/ckpt-{obj}-{name or 'main'}-{seed}"
                shutil.rmtree(ckpt, ignore_errors=True)  # this bench's own, from a rerun
                cfg = TrainConfig(
                    data=folder(out, name, "train"),
                    output=ckpt,
                    objective=objective,
                    call_negatives=negatives,
                    token_budget=args.budget,
                    seed=seed,
                    progress=False,
                    log_every=10,
                    compact_vocab=args.vocab == "compact",
                )
                fit = Trainer(cfg).fit()
                r = teacher_forced(
                    fit.model,
                    fit.tokenizer,
                    large,
                    folder(out, None, "heldout"),
                    args.call_budget,
                    cfg.seq_len,
                    args.eval_sequences,
                    large_cache,
                    facts_from,
                )
                epochs = fit.steps * cfg.step_tokens() / args.train_tokens
                r |= {"steps": fit.steps, "gt_tokens": fit.gt_tokens, "epochs": round(epochs, 2)}
                results.setdefault(arm(obj, name), []).append(r)
                print(arm(obj, name), seed, json.dumps(r), flush=True)
    report(out, results, args, t0, t_label)


def report(out: str, results: dict, args, t0: float, t_label: float) -> None:
    metrics = [*METRICS, "slm_accuracy", "epochs"]
    if args.baseline_args:
        metrics += [f"{args.baseline_name}/{m}" for m in FACT_METRICS]
    summary = summarize(results, metrics)
    write_outputs(out, summary, results, args)
    print(open(os.path.join(out, "replication.md")).read())
    first = results[next(iter(results))][0]
    figures = {
        "out": out,
        "cpu": cpu_name(),
        "label_time_s": round(t_label, 1),
        "total_time_s": round(time.time() - t0, 1),
        "train_docs": args.train_docs,
        "train_tokens": args.train_tokens,
        "epochs": {row: round(ms["epochs"][0], 2) for row, ms in summary.items()},
        "eval_docs": args.eval_docs,
        "budget": args.budget,
        "seeds": args.seeds,
        "positions": first["positions"],
        "large_fact_accuracy": first["large_fact_accuracy"],
        **{
            f"{row}_{m}": [round(v, 4) for v in ms[m]]
            for row, ms in summary.items()
            for m in ("cascade_fact_accuracy", "slm_fact_accuracy")
        },
    }
    if args.baseline_args:
        name = args.baseline_name
        figures[f"{name}_large_fact_accuracy"] = first[f"{name}/large_fact_accuracy"]
        for k, v in paired(results, name, paired_metrics(name)).items():
            figures[f"paired {k}"] = [round(x, 4) for x in v]
    emit(figures)


if __name__ == "__main__":
    main()

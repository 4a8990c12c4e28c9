"""The fact world's run: label, train every objective for every seed, evaluate, report."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from bench.common import cpu_name, emit, summarize
from bench.factworld.evaluation import diagnose, evaluate
from bench.factworld.labels import eval_shards, label, label_profile
from bench.factworld.report import HEADLINE, verdict, write_results
from bench.factworld.world import DEFAULT_WORLD, ROOT, build_corpus, load_world, prompts
from lacy_labels import cli

OBJECTIVES = ("lacy", "loss", "loss-online", "rho", "standard")
DESCRIPTION = "A fact world where the truth is known: do LaCy labels teach an SLM when to delegate?"


def train_and_evaluate(args, data: dict, heldout: str, items, budgets, share: float) -> dict:
    from trainer.train import TrainConfig, Trainer

    results: dict = {}
    for obj in args.objectives.split(","):
        for seed in range(args.seeds):
            shutil.rmtree(f"{args.out}/ckpt-{obj}-{seed}", ignore_errors=True)  # a rerun's
            cfg = TrainConfig(
                data=data["loss"] if obj == "loss" else data["lacy"],
                output=f"{args.out}/ckpt-{obj}-{seed}",
                objective="lacy" if obj == "loss" else obj,
                token_budget=args.budget,
                seed=seed,
                fraction=share if obj == "loss-online" else None,
                reference_model=args.reference_model,
                preset=args.preset,
                init=args.init,
                compact_vocab=args.vocab == "compact" and not args.init,
                **({"lr": args.lr} if args.lr else {}),
                device=args.device,
                progress=False,
                log_every=50,
            )
            fit = Trainer(cfg).fit()
            r = evaluate(fit.model, fit.tokenizer, heldout, items, budgets, cfg.seq_len)
            results.setdefault(obj, []).append(r | {"steps": fit.steps})
            print(obj, seed, json.dumps(r), flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    ap = cli.ArgParser(description=DESCRIPTION)
    ap.add_argument("--world", default=DEFAULT_WORLD)
    ap.add_argument("--budget", type=int, default=150_000, help="ground-truth-gradient targets")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--reference_model", default="smollm2")
    ap.add_argument("--preset", default="tiny", help="SLM size (tiny, small, paper-334m)")
    ap.add_argument(
        "--init", default=None, help="continue pretraining this model instead (e.g. smollm2)"
    )
    ap.add_argument(
        "--vocab", default="compact", choices=("compact", "full"),
        help="SLMs train on the token ids of the world (compact) or the whole vocabulary",
    )  # fmt: skip
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (lacy-train's)")
    ap.add_argument(
        "--tag", default=None, help="results file name under --results (default: the world's)"
    )
    ap.add_argument("--device", default="cpu", help="where the SLMs train (cpu or cuda)")
    ap.add_argument("--eval_people", type=int, default=None, help="held-out people prompted")
    ap.add_argument("--out", default=None, help="work folder (labels, checkpoints)")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--reuse_labels", action="store_true", help="keep the labels already in --out")
    ap.add_argument(
        "--diagnose", type=float, default=None, help="with --out of a finished run: where the "
        "calls of each SLM land at this budget (names told apart)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.diagnose is not None:
        return diagnose(args.out, args.world, args.diagnose)
    t0 = time.time()
    args.out = args.out or tempfile.mkdtemp(prefix="lacy-factworld-")
    os.makedirs(args.out, exist_ok=True)
    world = load_world(args.world)
    corpus = build_corpus(world)
    ref = ["--reference_model", args.reference_model]
    if args.reuse_labels and os.path.exists(f"{args.out}/heldout-labelled/stats.json"):
        with open(f"{args.out}/train-lacy/stats.json") as f:
            lacy = json.load(f)  # the labels of an earlier run of the same world in --out
    else:
        lacy = label(corpus["docs"]["train"], f"{args.out}/train-lacy", ref)
        loss_rule = ["--rule", "loss", "--loss_fraction", str(lacy["delegated_share"])]
        label(corpus["docs"]["train"], f"{args.out}/train-loss", [*ref, *loss_rule])
        label(corpus["docs"]["heldout"], f"{args.out}/heldout-labelled", ref)
    share = lacy["delegated_share"]
    eval_shards(f"{args.out}/heldout-labelled", corpus["spans"], f"{args.out}/heldout")
    profile = label_profile(f"{args.out}/train-lacy", corpus["spans"])
    loss_profile = label_profile(f"{args.out}/train-loss", corpus["spans"])
    held = label_profile(f"{args.out}/heldout-labelled", corpus["spans"])
    value_share = held["value_tokens"] / sum(
        held[f"{k}_tokens"] for k in ("value", "choice", "other")
    )
    losses = {k: profile[f"{k}_mean_ref_loss"] for k in ("value", "choice", "other")}
    print(f"mean reference loss (nats) on training tokens: {losses}", flush=True)
    t_label = time.time() - t0
    items = prompts(corpus, world, args.eval_people)
    budgets = {"values": value_share, "22%": 0.22}
    data = {"lacy": f"{args.out}/train-lacy", "loss": f"{args.out}/train-loss"}
    results = train_and_evaluate(args, data, f"{args.out}/heldout", items, budgets, share)
    summary = summarize(results)
    meta = {
        "world": os.path.relpath(args.world, ROOT) if args.world.startswith(ROOT) else args.world,
        "train_docs": len(corpus["docs"]["train"]),
        "heldout_docs": len(corpus["docs"]["heldout"]),
        "budget": args.budget,
        "seeds": args.seeds,
        "preset": f"{args.init} (continued)" if args.init else args.preset,
        "value_share": value_share,
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "total_time_s": time.time() - t0,
        "labels": {"lacy": profile, "loss": loss_profile},
        "verdict": verdict(results),
    }
    os.makedirs(args.results, exist_ok=True)
    tag = args.tag or os.path.splitext(os.path.basename(args.world))[0]
    write_results(os.path.join(args.results, tag), summary, profile, meta)
    figures = {
        "out": args.out,
        "label_time_s": round(t_label, 1),
        "total_time_s": round(time.time() - t0, 1),
        "value_share": round(value_share, 4),
        "value_mean_ref_loss": profile["value_mean_ref_loss"],
        "choice_mean_ref_loss": profile["choice_mean_ref_loss"],
        "lacy_delegated_share": share,
        "fact_share": lacy["fact_share"],
        "lacy_threshold": lacy["threshold"],
        "lacy_choice_delegated": profile["choice_delegated"],
        "loss_choice_delegated": loss_profile["choice_delegated"],
        "lacy_value_delegated": profile["value_delegated"],
        "loss_value_delegated": loss_profile["value_delegated"],
        **{f"{obj}_{k}": round(ms[k][0], 4) for obj, ms in summary.items() for k in HEADLINE},
        "not_beaten_beyond_noise": meta["verdict"],
    }
    emit(figures)
    return {"summary": summary, "figures": figures, "results": results}

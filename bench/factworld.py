"""A fact world where the truth is known: do LaCy labels teach an SLM when to delegate?

    python -m bench.factworld [--world bench/assets/factworld.json] [--budget 150000] [--seeds 5]

Invented people get attribute values (drawn once per person) and biographies built from
templates; `{a|b|c}` in a template is a harmless choice drawn afresh at every use: wording that
states no fact and that no model can predict either. Facts about held-out people are truly
unpredictable, and the generator knows exactly which characters are values and which are
choices. The real pipeline labels the training biographies (spaCy fact proxy, reference-model
losses, the rules), the real trainer trains SLMs on the shards, the real cascade code scores
them, and the evaluation uses the generator's spans, not spaCy:

- oracle cascade, teacher-forced, at a call budget equal to the value-token share and at 22%: a
  called position counts as right (a database that knows the world answers it), otherwise the
  SLM's top non-<CALL> token must be: value accuracy, and where the calls land (values,
  choices, elsewhere); the same for each SLM's uncertainty baseline;
- generation (FactScore in this world): the held-out biography up to a value is the prompt; a
  call is answered with the true value; a stated value is right if it is the true one and a
  hallucination if it is another value of that attribute.

Writes factworld.md and factworld.png under --results and prints one JSON object last.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time

import numpy as np

from bench.common import cpu_name, emit, mean_std_table, summarize
from lacy_labels import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORLD = os.path.join(ROOT, "bench", "assets", "factworld.json")
SECOND_WORLD = os.path.join(ROOT, "bench", "assets", "factworld_companies.json")  # kept apart
OTHER, VALUE, CHOICE = 0, 1, 2
KINDS = {"value": VALUE, "choice": CHOICE}
FIELD = re.compile(r"\{([^{}]*)\}")
OBJECTIVES = ("lacy", "loss", "loss-online", "rho", "standard")

# -- the world ------------------------------------------------------------------------------


def load_world(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        world = json.load(f)
    need = {"seed", "people", "held_out", "bios_per_person", "first_names", "last_names"}
    need |= {"attributes", "templates", "filler"}
    missing = need - set(world)
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    if set(world["templates"]) != set(world["attributes"]):
        raise ValueError(f"{path}: every attribute needs templates, and only attributes")
    if world["people"] > len(world["first_names"]) * len(world["last_names"]):
        raise ValueError(f"{path}: fewer distinct names than people")
    return world


def attribute_values(spec) -> list[str]:
    """An attribute's possible values: a list, or {"range": [first, last]} of integers."""
    if isinstance(spec, dict):
        lo, hi = spec["range"]
        return [str(v) for v in range(lo, hi + 1)]
    return list(spec)


def render(template: str, name: str, value: str | None, attr: str | None, rng: random.Random):
    """(text, spans) of one template: `{name}`, `{value}` and `{a|b|c}` (a choice drawn now).
    A span is (start, end, kind, attribute) in characters, kind "value" or "choice"."""
    text, spans, at = "", [], 0
    for m in FIELD.finditer(template):
        text += template[at : m.start()]
        field = m[1]
        if field == "name":
            piece, kind = name, "name"
        elif field == "value":
            piece, kind = value, "value"
        else:
            piece, kind = rng.choice(field.split("|")), "choice"
        if kind:
            spans.append(
                (len(text), len(text) + len(piece), kind, attr if kind == "value" else None)
            )
        text += piece
        at = m.end()
    return text + template[at:], spans


def make_people(world: dict) -> list[dict]:
    rng = random.Random(world["seed"])
    names = [f"{f} {last}" for f in world["first_names"] for last in world["last_names"]]
    names = rng.sample(names, world["people"])
    values = {a: attribute_values(s) for a, s in world["attributes"].items()}
    return [{"name": n, "facts": {a: rng.choice(v) for a, v in values.items()}} for n in names]


def biography(person: dict, world: dict, rng: random.Random) -> tuple[str, list]:
    """Every attribute stated once (template and order drawn here) among fillers."""
    parts = [(a, rng.choice(world["templates"][a])) for a in world["attributes"]]
    parts += [(None, rng.choice(world["filler"])) for _ in range(world.get("fillers_per_bio", 3))]
    rng.shuffle(parts)
    text, spans = "", []
    for attr, template in parts:
        value = person["facts"].get(attr) if attr else None
        piece, piece_spans = render(template, person["name"], value, attr, rng)
        start = len(text) + (1 if text else 0)
        text += (" " if text else "") + piece
        spans += [(s + start, e + start, k, a) for s, e, k, a in piece_spans]
    return text, spans


def build_corpus(world: dict) -> dict:
    """Training and held-out documents ({"id", "text"}), the spans of each, the people."""
    people = make_people(world)
    rng = random.Random(world["seed"] + 1)
    split = len(people) - world["held_out"]
    docs, spans = {"train": [], "heldout": []}, {}
    for i, person in enumerate(people):
        part = "train" if i < split else "heldout"
        for j in range(world["bios_per_person"]):
            text, s = biography(person, world, rng)
            doc_id = f"p{i:05d}-b{j}"
            docs[part].append({"id": doc_id, "text": text})
            spans[doc_id] = s
    return {"docs": docs, "spans": spans, "people": people, "split": split}


# -- labels ---------------------------------------------------------------------------------


def label(docs: list[dict], out: str, extra: list[str]) -> dict:
    from pipelines import label as pipeline

    src = out + ".jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    args = ["--input", src, "--output", out, "--overwrite", "--report", "false", *extra]
    return pipeline.run(args)


def token_classes(char_start, char_end, spans) -> np.ndarray:
    """OTHER, VALUE or CHOICE per token: the kind of span its characters overlap (a value wins)."""
    cls = np.zeros(len(char_start), dtype=np.int8)
    start, end = np.asarray(char_start), np.asarray(char_end)
    for kind in ("choice", "value"):  # values last: they win where both overlap
        for s, e, k, _ in spans:
            if k == kind:
                cls[(start < e) & (end > s)] = KINDS[kind]
    return cls


def read_rows(out_dir: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for name in sorted(os.listdir(f"{out_dir}/data")):
        rows += pq.read_table(f"{out_dir}/data/{name}").to_pylist()
    return rows


def label_profile(out_dir: str, spans: dict) -> dict:
    """Mean reference loss and the share delegated, on value, choice and other tokens."""
    loss, dele, cls = [], [], []
    for r in read_rows(out_dir):
        loss.append(np.array(r["ref_loss"], dtype=np.float64))
        dele.append(np.array(r["delegate"], dtype=bool))
        cls.append(token_classes(r["char_start"], r["char_end"], spans[r["id"]]))
    loss, dele, cls = (np.concatenate(a) for a in (loss, dele, cls))
    out = {}
    for name, k in (("value", VALUE), ("choice", CHOICE), ("other", OTHER)):
        m = cls == k
        out[f"{name}_tokens"] = int(m.sum())
        out[f"{name}_mean_ref_loss"] = round(float(np.nanmean(loss[m])), 3)
        out[f"{name}_delegated"] = round(float(dele[m].mean()), 4)
    out["delegated_share"] = round(float(dele.mean()), 4)
    return out


def eval_shards(out_dir: str, spans: dict, dest: str) -> None:
    """The held-out shards with the generator's truth in the columns the trainer's reader
    carries: `is_fact` = value token, `delegate` = choice token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_rows(out_dir)
    classes = [token_classes(r["char_start"], r["char_end"], spans[r["id"]]) for r in rows]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "input_ids": [r["input_ids"] for r in rows],
            "is_fact": [(c == VALUE).tolist() for c in classes],
            "delegate": [(c == CHOICE).tolist() for c in classes],
            "ref_loss": [r["ref_loss"] for r in rows],
        }
    )
    os.makedirs(f"{dest}/data", exist_ok=True)
    pq.write_table(table, f"{dest}/data/train-00000-of-00001.parquet")


# -- evaluation -----------------------------------------------------------------------------


def oracle(score: np.ndarray, slm_ok: np.ndarray, cls: np.ndarray, budget: float) -> dict:
    """Calls on the top `budget` share of positions by `score` are right (an oracle answers);
    elsewhere the SLM must be. Value accuracy and where the calls land."""
    from trainer.cascade import calls_at_budget

    calls = calls_at_budget(score, budget)
    ok = calls | slm_ok
    n = max(int(calls.sum()), 1)
    return {
        "value_accuracy": round(float(ok[cls == VALUE].mean()), 4),
        "calls_on_values": round(float((calls & (cls == VALUE)).sum() / n), 4),
        "calls_on_choices": round(float((calls & (cls == CHOICE)).sum() / n), 4),
        "calls_elsewhere": round(float((calls & (cls == OTHER)).sum() / n), 4),
    }


def threshold_at(score: np.ndarray, budget: float) -> float:
    """The score at or above which `budget` of the positions lie (as `calls_at_budget`)."""
    k = max(1, int(round(budget * len(score))))
    return float(np.sort(score)[::-1][k - 1])


def prompts(corpus: dict, world: dict, people: int | None) -> list[dict]:
    """For held-out people (their first biography): the text up to each value, the truth, and
    the attribute's other values."""
    values = {a: attribute_values(s) for a, s in world["attributes"].items()}
    held = [d for d in corpus["docs"]["heldout"] if d["id"].endswith("-b0")][:people]
    out = []
    for d in held:
        for s, e, kind, attr in corpus["spans"][d["id"]]:
            if kind == "value":
                out.append(
                    {
                        "prompt": d["text"][:s].rstrip(" "),
                        "truth": d["text"][s:e],
                        "values": values[attr],
                    }
                )
    return out


def stated_value(text: str, values: list[str]) -> str | None:
    """The attribute value the generated text starts with (the longest), if any."""
    text = text.strip()
    found = [v for v in values if text.startswith(v) and not text[len(v) : len(v) + 1].isalnum()]
    return max(found, key=len) if found else None


def generation(model, tok, items: list[dict], max_new_tokens: int = 8) -> list[dict]:
    """Per prompt: the SLM's <CALL> probability and uncertainty at the value's first position,
    and the value its greedy continuation (without <CALL>) states."""
    import torch

    from trainer.model import call_id, separator_id

    call, eot = call_id(tok), separator_id(tok)
    out = []
    with torch.inference_mode():
        for it in items:
            ids = torch.tensor([[eot, *tok(it["prompt"], add_special_tokens=False)["input_ids"]]])
            res = model(input_ids=ids, use_cache=True)
            logits, cache = res.logits[0, -1].float(), res.cache
            p_call = float(torch.softmax(logits, -1)[call])
            gen = []
            for step in range(max_new_tokens):
                logits[call] = float("-inf")
                if step == 0:
                    unsure = float(1 - torch.softmax(logits, -1).max())
                nxt = int(logits.argmax())
                if nxt == eot:
                    break
                gen.append(nxt)
                res = model(input_ids=torch.tensor([[nxt]]), cache=cache, use_cache=True)
                logits, cache = res.logits[0, -1].float(), res.cache
            stated = stated_value(tok.decode(gen), it["values"])
            out.append({"p_call": p_call, "unsure": unsure, "stated": stated, "truth": it["truth"]})
    return out


def factscore(gen: list[dict], score_key: str, threshold: float) -> dict:
    """FactScore = right / (right + hallucinated); a call (score >= threshold) is right."""
    right = halluc = calls = 0
    for g in gen:
        if g[score_key] >= threshold:
            calls += 1
            right += 1
        elif g["stated"] == g["truth"]:
            right += 1
        elif g["stated"] is not None:
            halluc += 1
    n = max(len(gen), 1)
    return {
        "factscore": round(right / max(right + halluc, 1), 4),
        "hallucinated": halluc,
        "right": right,
        "call_rate": round(calls / n, 4),
        "no_value_rate": round((n - right - halluc) / n, 4),  # neither called nor stated one
    }


def evaluate(model, tok, heldout: str, items: list[dict], budgets: dict, seq_len: int) -> dict:
    from trainer.cascade import slm_positions

    pos = slm_positions(model, tok, heldout, seq_len)
    cls = np.where(pos["is_fact"], VALUE, np.where(pos["delegate"], CHOICE, OTHER))
    ok = pos["slm_ok"]
    r = {"slm_value_accuracy": round(float(ok[cls == VALUE].mean()), 4)}
    for tag, b in budgets.items():
        r |= {f"{k}@{tag}": v for k, v in oracle(pos["p_call"], ok, cls, b).items()}
        r |= {f"uncertainty_{k}@{tag}": v for k, v in oracle(pos["unsure"], ok, cls, b).items()}
    gen = generation(model, tok, items)
    b = budgets["values"]
    r |= {
        f"gen_{k}": v for k, v in factscore(gen, "p_call", threshold_at(pos["p_call"], b)).items()
    }
    thr_u = threshold_at(pos["unsure"], b)
    r |= {f"gen_uncertainty_{k}": v for k, v in factscore(gen, "unsure", thr_u).items()}
    r["slm_alone_factscore"] = factscore(gen, "p_call", float("inf"))["factscore"]
    return r


# -- why: where the calls of trained SLMs land, names apart ------------------------------------

NAME_FIRST, NAME_AGAIN = 3, 4
WHERE = {VALUE: "values", CHOICE: "choices", NAME_FIRST: "first_name_mentions",
         NAME_AGAIN: "repeated_names", OTHER: "other"}  # fmt: skip


def row_classes(row: dict, spans: list) -> np.ndarray:
    """Per token of one labelled row: value, choice, first or repeated name mention, other (a
    value or choice wins where a name overlaps it)."""
    cls = token_classes(row["char_start"], row["char_end"], spans).astype(np.int8)
    start, end = np.asarray(row["char_start"]), np.asarray(row["char_end"])
    names = [(s, e) for s, e, k, _ in spans if k == "name"]
    for i, (s, e) in enumerate(names):
        hit = (start < e) & (end > s) & (cls == OTHER)
        cls[hit] = NAME_FIRST if i == 0 else NAME_AGAIN
    return cls


def stream_classes(heldout_labelled: str, spans: dict) -> np.ndarray:
    """Per target position of the held-out stream (documents in shard order, a separator after
    each, as trainer.data reads them): `row_classes` of each document."""
    parts = []
    for r in read_rows(heldout_labelled):
        parts += [row_classes(r, spans[r["id"]]), np.array([OTHER], dtype=np.int8)]
    return np.concatenate(parts)[1:]


def diagnose(work: str, world_path: str, budget: float, seq_len: int = 128) -> dict:
    """For each checkpoint in `work`: where its calls land at `budget`, names told apart."""
    from trainer.cascade import calls_at_budget, slm_positions
    from trainer.checkpoint import load_checkpoint

    corpus = build_corpus(load_world(world_path))
    out = {}
    for ck in sorted(p for p in os.listdir(work) if p.startswith("ckpt-")):
        model, tok = load_checkpoint(f"{work}/{ck}")
        pos = slm_positions(model.eval(), tok, f"{work}/heldout", seq_len)
        cls = stream_classes(f"{work}/heldout-labelled", corpus["spans"])[: len(pos["p_call"])]
        assert np.array_equal(cls == VALUE, pos["is_fact"]), "stream out of step"
        calls = calls_at_budget(pos["p_call"], budget)
        out[ck] = {name: round(float((cls[calls] == k).mean()), 4) for k, name in WHERE.items()}
        print(ck, json.dumps(out[ck]), flush=True)
    return out


# -- the run --------------------------------------------------------------------------------

HEADLINE = (
    "value_accuracy@values",
    "uncertainty_value_accuracy@values",
    "calls_on_values@values",
    "calls_on_choices@values",
    "value_accuracy@22%",
    "uncertainty_value_accuracy@22%",
    "calls_on_choices@22%",
    "gen_factscore",
    "gen_call_rate",
    "gen_no_value_rate",
    "gen_uncertainty_factscore",
    "slm_value_accuracy",
)


CLAIMS = ("value_accuracy@values", "value_accuracy@22%", "gen_factscore")


def baseline_of(metric: str) -> str:
    """The uncertainty-baseline figure of a claim's metric."""
    if metric.startswith("gen_"):
        return "gen_uncertainty_" + metric.removeprefix("gen_")
    return f"uncertainty_{metric}"


def verdict(results: dict, winner: str = "lacy") -> dict:
    """Per claim metric, the rivals `winner` does not beat beyond seed noise: its mean minus its
    sample std (ddof 1) must exceed each other arm's and each uncertainty baseline's mean plus
    std. Also whether it puts fewer calls on choices than the loss rules."""

    def band(runs, key):
        v = np.array([r[key] for r in runs], dtype=np.float64)
        sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        return float(v.mean()), sd

    if winner not in results:
        return {}
    out = {}
    for m in CLAIMS:
        mean, sd = band(results[winner], m)
        rivals = {a: band(r, m) for a, r in results.items() if a != winner}
        rivals |= {f"{a} (uncertainty)": band(r, baseline_of(m)) for a, r in results.items()}
        out[m] = sorted(a for a, (mu, s) in rivals.items() if not mean - sd > mu + s)
    key = "calls_on_choices@values"
    loss_arms = [a for a in ("loss", "loss-online") if a in results]
    mine = band(results[winner], key)[0]
    out["fewer_calls_on_choices_than"] = {a: mine < band(results[a], key)[0] for a in loss_arms}
    return out


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


def write_results(path: str, summary: dict, profile: dict, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report import png_bytes

    lines = [
        f"Fact world ({meta['world']}): {meta['train_docs']} training and {meta['heldout_docs']} "
        f"held-out biographies, budget {meta['budget']} ground-truth targets, {meta['seeds']} "
        f"seeds, {meta['preset']} SLMs, oracle cascade. "
        f"Value-token share {meta['value_share']:.3f}; "
        f"reference loss on values {profile['value_mean_ref_loss']} nats, on choices "
        f"{profile['choice_mean_ref_loss']}. {meta['cpu']}, {meta['date']}, "
        f"{meta['total_time_s']:.0f} s in all.",
        "",
        *mean_std_table(summary, HEADLINE, digits=3),
    ]
    lines += ["", "Beyond seed noise (lacy's mean - std > mean + std, sample std over seeds); "
              "rivals lacy does not beat:", ""]  # fmt: skip
    for m, rivals in meta["verdict"].items():
        lines.append(f"- {m}: {json.dumps(rivals) if rivals else 'none'}")
    lines += ["", "Labels (training biographies): " + json.dumps(meta["labels"])]
    with open(f"{path}.md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(summary)
    bars = (("value_accuracy@values", "#e0502a"), ("uncertainty_value_accuracy@values", "#999999"),
            ("gen_factscore", "#2a6fdb"))  # fmt: skip
    for j, (metric, color) in enumerate(bars):
        ax.bar([i + 0.27 * j for i in range(len(names))], [summary[n][metric][0] for n in names],
               0.27, yerr=[summary[n][metric][1] for n in names], capsize=3, color=color,
               label=metric)  # fmt: skip
    ax.set_xticks([i + 0.27 for i in range(len(names))], names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    with open(f"{path}.png", "wb") as f:
        f.write(png_bytes(fig, dpi=100))


def main(argv: list[str] | None = None) -> dict:
    ap = cli.ArgParser(description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    main()

"""Where the labels' <CALL> targets go, under the fact proxy with and without function words and
under loss floors: the evidence for the defaults (no SLM is trained).

    python -m bench.labels --docs 300 [--world bench/assets/factworld.json] [--floors 0,0.5,1,2]

The fact world's training biographies and N shipped leads are labelled twice (fact proxy with
the function-word exclusion, the default, and without it, the baseline), then every floor is
applied to the stored losses (a floor only removes delegated tokens below it, so relabelling is
not needed). Fact world: where the delegated tokens go (first token of a value, the rest of a
value, harmless choices, a person's first name mention, later mentions, other words) and the
share of each kind delegated. Leads: fact share, delegated share, and function words among
fact tokens. One JSON object on the last line.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from bench import factworld as fw
from bench.common import cpu_name, emit, wiki_docs
from bench.factworld import DEFAULT_WORLD, build_corpus, label, load_world, read_rows
from lacy_labels import cli
from lacy_labels.facts import FUNCTION_POS

KINDS = ("value_first", "value_rest", "choice", "name_first", "name_again", "other")


def token_kinds(row: dict, spans: list) -> np.ndarray:
    """Index into KINDS per token of a fact-world row: `factworld.row_classes`, with a value's
    first token apart from its rest."""
    cls = fw.row_classes(row, spans)
    kind = np.select(
        [cls == fw.VALUE, cls == fw.CHOICE, cls == fw.NAME_FIRST, cls == fw.NAME_AGAIN],
        [KINDS.index(k) for k in ("value_rest", "choice", "name_first", "name_again")],
        KINDS.index("other"),
    ).astype(np.int8)
    start, end = np.asarray(row["char_start"]), np.asarray(row["char_end"])
    for s, e, k, _ in spans:
        if k == "value":
            kind[np.nonzero((start < e) & (end > s))[0][:1]] = KINDS.index("value_first")
    return kind


def arrays(out: str):
    rows = read_rows(out)
    cat = lambda key, dt: np.concatenate([np.asarray(r[key], dtype=dt) for r in rows])  # noqa: E731
    return rows, cat("ref_loss", np.float32), cat("is_fact", bool), cat("delegate", bool)


def world_profile(out: str, spans: dict, floors: list[float]) -> dict:
    rows, loss, fact, dele = arrays(out)
    kind = np.concatenate([token_kinds(r, spans[r["id"]]) for r in rows])
    res = {"fact_share": round(float(fact.mean()), 4)}
    for floor in floors:
        d = dele & (loss >= floor)
        res[f"floor_{floor:g}"] = {
            "delegated_share": round(float(d.mean()), 4),
            "calls_go_to": {k: round(float((kind[d] == i).mean()), 4) for i, k in enumerate(KINDS)},
            "kind_delegated": {
                k: round(float(d[kind == i].mean()), 4) for i, k in enumerate(KINDS)
            },
        }
    return res


def leads_profile(out: str, floors: list[float]) -> dict:
    rows, loss, fact, dele = arrays(out)
    pos = np.concatenate([np.asarray(r["pos"], dtype=object) for r in rows])
    res = {
        "fact_share": round(float(fact.mean()), 4),
        "function_words_of_facts": round(float(np.isin(pos[fact], FUNCTION_POS).mean()), 4),
        "function_words_of_delegated": round(float(np.isin(pos[dele], FUNCTION_POS).mean()), 4),
    }
    for floor in floors:
        d = dele & (loss >= floor)
        res[f"floor_{floor:g}"] = {
            "delegated_share": round(float(d.mean()), 4),
            "delegated_of_facts": round(float(d.sum() / max(fact.sum(), 1)), 4),
        }
    return res


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=300, help="shipped leads")
    ap.add_argument("--world", default=DEFAULT_WORLD)
    ap.add_argument("--floors", default="0,0.5,1,1.5,2")
    args = ap.parse_args()
    floors = [float(x) for x in args.floors.split(",")]
    tmp, t0 = tempfile.mkdtemp(prefix="lacy-bench-labels-"), time.time()
    corpus = build_corpus(load_world(args.world))
    leads = wiki_docs(args.docs)
    proxies = {"default": [], "with_function_words": ["--fact_exclude_pos"]}
    figs: dict = {"cpu": cpu_name(), "docs": args.docs, "world": os.path.basename(args.world)}
    for name, extra in proxies.items():
        out = f"{tmp}/world-{name}"
        label(corpus["docs"]["train"], out, extra)
        figs[f"world_{name}"] = world_profile(out, corpus["spans"], floors)
        out = f"{tmp}/leads-{name}"
        label(leads, out, extra)
        figs[f"leads_{name}"] = leads_profile(out, floors)
    figs["total_s"] = round(time.time() - t0, 1)
    emit(figs)


if __name__ == "__main__":
    main()

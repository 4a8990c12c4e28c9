"""The fact world's evaluation: the oracle cascade at a call budget (a called position is right,
a database that knows the world answers it), where the calls land, FactScore of generated values,
and the diagnosis of a finished run. The arithmetic lives in trainer.calls."""

from __future__ import annotations

import json
import os

import numpy as np

from bench.factworld.labels import (
    CHOICE,
    NAME_AGAIN,
    NAME_FIRST,
    OTHER,
    VALUE,
    stream_classes,
)  # fmt: skip
from bench.factworld.world import build_corpus, load_world
from trainer.calls import calls_at_budget, cascade, factscore, landing, threshold_at

WHERE = {VALUE: "values", CHOICE: "choices", NAME_FIRST: "first_name_mentions",
         NAME_AGAIN: "repeated_names", OTHER: "other"}  # fmt: skip


def oracle(score: np.ndarray, slm_ok: np.ndarray, cls: np.ndarray, budget: float) -> dict:
    """Calls on the top `budget` share of positions by `score` are right (an oracle answers);
    elsewhere the SLM must be. Value accuracy and where the calls land."""
    values = cls == VALUE
    got = cascade(score, slm_ok, np.ones_like(values), values, budget)
    where = {"calls_on_values": values, "calls_on_choices": cls == CHOICE,
             "calls_elsewhere": cls == OTHER}  # fmt: skip
    return {"value_accuracy": got["cascade_fact_accuracy"],
            **landing(calls_at_budget(score, budget), where)}  # fmt: skip


def generation(model, tok, items: list[dict], max_new_tokens: int = 8) -> list[dict]:
    """Per prompt: the SLM's <CALL> probability and uncertainty at the value's first position,
    and the value its greedy continuation (without <CALL>) states."""
    from bench.factworld.world import stated_value
    from trainer.cascade import slm_answer

    out = []
    for it in items:
        a = slm_answer(model, tok, it["prompt"], max_new_tokens)
        stated = stated_value(a["text"], it["values"])
        out.append({"p_call": a["p_call"], "unsure": a["unsure"], "stated": stated,
                    "truth": it["truth"]})  # fmt: skip
    return out


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


def diagnose(work: str, world_path: str, budget: float, seq_len: int = 128) -> dict:
    """For each checkpoint in `work`: where its calls land at `budget`, names told apart."""
    from trainer.cascade import slm_positions
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

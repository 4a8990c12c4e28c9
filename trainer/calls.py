"""Budgeted calls and what they buy, computed once for lacy-cascade, bench.replicate and the fact
world: the positions a call budget selects by a score, the score that marks the budget, a
cascade's accuracy when the calls are answered (by a large model or by an oracle that knows the
truth), where the calls land, and FactScore of generated values."""

from __future__ import annotations

import numpy as np


def calls_at_budget(score: np.ndarray, budget: float) -> np.ndarray:
    """Boolean per position: the top `budget` share of positions by `score` (ties by order)."""
    k = max(1, int(round(budget * len(score))))
    calls = np.zeros(len(score), dtype=bool)
    calls[np.argsort(-score, kind="stable")[:k]] = True
    return calls


def threshold_at(score: np.ndarray, budget: float) -> float:
    """The score at or above which the `budget` share of positions lies (`calls_at_budget`'s
    last selected score): a threshold to call with where positions come one at a time."""
    k = max(1, int(round(budget * len(score))))
    return float(np.sort(score)[::-1][k - 1])


def cascade(score, slm_ok, answer_ok, fact, budget: float) -> dict:
    """Call on the top `budget` share of positions by `score`; a called position is right when
    `answer_ok` is (the large model's top-1, or True everywhere for an oracle), any other when
    the SLM's own top-1 is."""
    calls = calls_at_budget(score, budget)
    ok = np.where(calls, answer_ok, slm_ok)
    return {
        "cascade_fact_accuracy": round(float(ok[fact].mean()), 4),
        "cascade_accuracy": round(float(ok.mean()), 4),
        "call_rate": round(float(calls.mean()), 4),
        "calls_on_facts": round(float(fact[calls].mean()), 4),
    }


def landing(calls: np.ndarray, classes: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of the calls that fall on each class mask."""
    n = max(int(calls.sum()), 1)
    return {name: round(float((calls & mask).sum() / n), 4) for name, mask in classes.items()}


def factscore(gen: list[dict], score_key: str, threshold: float) -> dict:
    """FactScore = right / (right + hallucinated) over generated values: a call (`score_key` at
    or above `threshold`) is answered right; otherwise the stated value must be the truth, and
    a stated other value is a hallucination."""
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

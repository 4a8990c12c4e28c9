"""Cascade generation: the SLM writes greedily and hands over to a larger model whenever its
<CALL> probability passes a threshold calibrated (running quantile) to a call budget; the large
model (default: the shipped SmolLM2, same tokenizer) continues until a word boundary.

    python -m trainer.cascade --small CKPT [--large PATH] (--prompt TEXT | --eval DIR)
        [--call-budget 0.22]

--prompt prints the text with delegated spans marked ⟦like this⟧ and a JSON line of spans.
--eval runs a teacher-forced evaluation on held-out shards: at each position the cascade's
prediction is the large model's when the SLM calls (p_call in the top `call_budget` of the
evaluation set's positions), otherwise the SLM's best non-<CALL> token; prints JSON with
slm_fact_accuracy, cascade_fact_accuracy, cascade_accuracy, large_fact_accuracy and call_rate.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys

import numpy as np
import torch

from trainer.evaluate import batches
from trainer.model import call_id, load_checkpoint, separator_id


class RunningQuantile:
    """Threshold = the (1 - budget) quantile of the <CALL> probabilities seen so far."""

    def __init__(self, budget: float, warmup: int = 4):
        self.budget, self.warmup, self.seen = budget, warmup, []

    def should_call(self, p: float) -> bool:
        bisect.insort(self.seen, p)
        if len(self.seen) <= self.warmup:
            return p >= 0.5
        k = min(len(self.seen) - 1, int(np.floor((1 - self.budget) * len(self.seen))))
        return p >= self.seen[k]


def load_large(path: str | None):
    from lacy_labels.reference import load_reference

    ref = load_reference(path or "smollm2")
    return ref.model, ref.tokenizer


def _starts_word(piece: str) -> bool:
    return piece[:1] in ("Ġ", "Ċ", " ", "\n") or not piece[:1].isalnum()


@torch.inference_mode()
def generate(
    small,
    tok,
    large,
    prompt: str,
    max_new_tokens: int = 40,
    budget: float = 0.22,
    threshold: float | None = None,
    call_logit_fn=None,
    max_call_tokens: int = 6,
):
    """Greedy cascade. `threshold` fixes the call threshold (else a running quantile of the
    budget); `call_logit_fn(step, logits)` may edit the SLM's logits (tests force calls).
    Returns (marked text, character spans, token spans) of what the large model wrote; token
    spans count generated tokens."""
    call = call_id(tok)
    eot = separator_id(tok)
    ids = [eot, *tok(prompt, add_special_tokens=False)["input_ids"]]
    n_prompt, spans, rq = len(ids), [], RunningQuantile(budget)
    while len(ids) - n_prompt < max_new_tokens:
        logits = small(input_ids=torch.tensor([ids])).logits[0, -1].float()
        if call_logit_fn is not None:
            logits = call_logit_fn(len(ids) - n_prompt, logits.clone())
        p_call = float(torch.softmax(logits, -1)[call])
        calls = p_call >= threshold if threshold is not None else rq.should_call(p_call)
        if calls:
            start = len(ids)
            for j in range(max_call_tokens):
                nxt = int(large(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == eot or (j > 0 and _starts_word(tok.convert_ids_to_tokens(nxt))):
                    break
                ids.append(nxt)
            spans.append((start, len(ids)))
            if len(ids) == start:
                break
        else:
            logits[call] = float("-inf")
            nxt = int(logits.argmax())
            if nxt == eot:
                break
            ids.append(nxt)
    marked, char_spans = _render(tok, ids[n_prompt:], spans, offset=n_prompt)
    return marked, char_spans, [(a - n_prompt, b - n_prompt) for a, b in spans]


def _render(tok, ids, spans, offset):
    """Generated text with the large model's pieces marked, and their character spans."""
    text, marked, char_spans = "", "", []
    bounds = {s - offset: e - offset for s, e in spans}
    i = 0
    while i < len(ids):
        if i in bounds and bounds[i] > i:
            piece = tok.decode(ids[i : bounds[i]])
            char_spans.append((len(text), len(text) + len(piece)))
            text += piece
            marked += "⟦" + piece + "⟧"
            i = bounds[i]
        else:
            piece = tok.decode(ids[i : i + 1])
            text += piece
            marked += piece
            i += 1
    return marked, char_spans


@torch.inference_mode()
def teacher_forced(
    small,
    tok,
    large,
    data,
    budget: float = 0.22,
    seq_len: int = 128,
    max_sequences: int | None = 16,
    large_cache: dict | None = None,
) -> dict:
    call = call_id(tok)
    eot = separator_id(tok)
    p_calls, slm_ok, large_ok, facts, unsure = [], [], [], [], []
    for bi, (ids, _dele, fact, _loss) in enumerate(batches(data, seq_len, eot, 8, max_sequences)):
        x, y = torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:])
        logits = small(input_ids=x).logits.float()
        p_calls.append(torch.softmax(logits, -1)[..., call].numpy().ravel())
        logits[..., call] = float("-inf")
        slm_ok.append((logits.argmax(-1) == y).numpy().ravel())
        # the uncertainty baseline's score: 1 - the SLM's top probability without <CALL>
        unsure.append((1 - torch.softmax(logits, -1).max(-1).values).numpy().ravel())
        if large_cache is not None and bi in large_cache:
            lp = large_cache[bi]
        else:
            lp = large(input_ids=x).logits.argmax(-1).numpy()
            if large_cache is not None:
                large_cache[bi] = lp
        large_ok.append((lp == y.numpy()).ravel())
        facts.append(fact[:, 1:].ravel())
    if not p_calls:
        raise ValueError(f"{data}: too few tokens for one evaluation sequence of {seq_len}")
    p, s, g, f, u = (np.concatenate(a) for a in (p_calls, slm_ok, large_ok, facts, unsure))
    ours, base = _cascade(p, s, g, f, budget), _cascade(u, s, g, f, budget)
    return {
        "slm_fact_accuracy": round(float(s[f].mean()), 4),
        **ours,
        "slm_accuracy": round(float(s.mean()), 4),
        "large_fact_accuracy": round(float(g[f].mean()), 4),
        "fact_share": round(float(f.mean()), 4),
        "positions": int(len(p)),
        # The same budget spent where the SLM is least sure of its own top-1 token (a baseline
        # that needs no <CALL> training).
        **{f"uncertainty_{k}": v for k, v in base.items()},
    }


def _cascade(score, slm_ok, large_ok, fact, budget: float) -> dict:
    """Call the large model on the top `budget` share of positions by `score`."""
    k = max(1, int(round(budget * len(score))))
    calls = np.zeros(len(score), dtype=bool)
    calls[np.argsort(-score, kind="stable")[:k]] = True
    ok = np.where(calls, large_ok, slm_ok)
    return {
        "cascade_fact_accuracy": round(float(ok[fact].mean()), 4),
        "cascade_accuracy": round(float(ok.mean()), 4),
        "call_rate": round(float(calls.mean()), 4),
        "calls_on_facts": round(float(fact[calls].mean()), 4),
    }


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(
        prog="python -m trainer.cascade",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--small", required=True)
    ap.add_argument("--large", default=None, help="model folder or .gguf (default: SmolLM2)")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--eval")
    ap.add_argument("--call-budget", type=float, default=0.22)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--max-sequences", type=int, default=16)
    args = ap.parse_args(argv)
    small, tok = load_checkpoint(args.small)
    large, _ = load_large(args.large)
    if args.prompt is not None:
        marked, spans, _ = generate(
            small, tok, large, args.prompt, args.max_new_tokens, args.call_budget
        )
        print(args.prompt + marked)
        print(json.dumps({"delegated_spans": spans}))
    else:
        print(
            json.dumps(
                teacher_forced(
                    small, tok, large, args.eval, args.call_budget, max_sequences=args.max_sequences
                )
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cascade generation: the SLM writes greedily and hands over to a larger model whenever its
<CALL> probability passes a threshold calibrated (running quantile) to a call budget; the large
model (default: the shipped SmolLM2, same tokenizer) continues until a word boundary.

    python -m trainer.cascade --small CKPT [--large PATH] (--prompt TEXT | --eval DIR)
        [--call_budget 0.22]

--prompt prints the text with delegated spans marked ⟦like this⟧ and a JSON line of spans.
--eval runs a teacher-forced evaluation on held-out shards: at each position the cascade's
prediction is the large model's when the SLM calls (p_call in the top `call_budget` of the
evaluation set's positions), otherwise the SLM's best non-<CALL> token; prints JSON with
slm_fact_accuracy, cascade_fact_accuracy, cascade_accuracy, large_fact_accuracy and call_rate.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from lacy_labels import cli
from lacy_labels.cli import setting
from trainer.calls import cascade
from trainer.checkpoint import load_checkpoint
from trainer.data import eval_batches
from trainer.model import call_id, separator_id


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
    from lacy_labels.reference import DEFAULT_MODEL, load_reference

    ref = load_reference(path or DEFAULT_MODEL)
    return ref.model, ref.tokenizer


def _starts_word(piece: str) -> bool:
    return piece[:1] in ("Ġ", "Ċ", " ", "\n") or not piece[:1].isalnum()


class _Reader:
    """One model reading a growing list of ids with its KV cache: each call feeds only the ids
    it has not seen yet and returns the logits after the last one. The SLM and the large model
    each keep one, so a cascade step costs one new token per model, not the whole prefix."""

    def __init__(self, model):
        self.model, self.cache, self.fed, self.last = model, None, 0, None

    def next_logits(self, ids: list[int]) -> torch.Tensor:
        """Logits after ids[-1]; with no new ids since the last call, that call's again (the
        large model is asked twice at one position when the SLM calls right after a span)."""
        if len(ids) > self.fed:
            new = torch.tensor([ids[self.fed :]], dtype=torch.long)
            res = self.model(input_ids=new, cache=self.cache, use_cache=True)
            self.cache, self.fed, self.last = res.cache, len(ids), res.logits[0, -1].float()
        return self.last.clone()


def _prompt_ids(tok, prompt: str) -> list[int]:
    return [separator_id(tok), *tok(prompt, add_special_tokens=False)["input_ids"]]


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
    call, eot = call_id(tok), separator_id(tok)
    ids = _prompt_ids(tok, prompt)
    n_prompt, spans, rq = len(ids), [], RunningQuantile(budget)
    slm, big = _Reader(small), _Reader(large)
    while len(ids) - n_prompt < max_new_tokens:
        logits = slm.next_logits(ids)
        if call_logit_fn is not None:
            logits = call_logit_fn(len(ids) - n_prompt, logits.clone())
        p_call = float(torch.softmax(logits, -1)[call])
        calls = p_call >= threshold if threshold is not None else rq.should_call(p_call)
        if calls:
            start = len(ids)
            for j in range(max_call_tokens):
                nxt = int(big.next_logits(ids).argmax())
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


@torch.inference_mode()
def slm_answer(small, tok, prompt: str, max_new_tokens: int = 8) -> dict:
    """What the SLM says after `prompt` when it does not call: its <CALL> probability and its
    uncertainty (1 - top probability without <CALL>) at the first position, and the text of its
    greedy continuation without <CALL> (up to the separator)."""
    call, eot = call_id(tok), separator_id(tok)
    ids, slm = _prompt_ids(tok, prompt), _Reader(small)
    logits = slm.next_logits(ids)
    p_call, start, unsure = float(torch.softmax(logits, -1)[call]), len(ids), None
    for step in range(max_new_tokens):
        logits[call] = float("-inf")
        if step == 0:
            unsure = float(1 - torch.softmax(logits, -1).max())
        nxt = int(logits.argmax())
        if nxt == eot:
            break
        ids.append(nxt)
        logits = slm.next_logits(ids)
    return {"p_call": p_call, "unsure": unsure, "text": tok.decode(ids[start:])}


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


def _slm_scores(small, call: int, b) -> dict[str, np.ndarray]:
    """Per target of one batch: the SLM's <CALL> probability, whether its best non-<CALL> token
    is right, and its uncertainty (1 - its top probability without <CALL>)."""
    x, y = torch.from_numpy(b.input_ids), torch.from_numpy(b.targets)
    logits = small(input_ids=x).logits.float()
    p_call = torch.softmax(logits, -1)[..., call]
    logits[..., call] = float("-inf")
    return {
        "p_call": p_call.numpy().ravel(),
        "slm_ok": (logits.argmax(-1) == y).numpy().ravel(),
        "unsure": (1 - torch.softmax(logits, -1).max(-1).values).numpy().ravel(),
    }


@torch.inference_mode()
def slm_positions(small, tok, data, seq_len: int = 128, max_sequences: int | None = None) -> dict:
    """`_slm_scores` over held-out shards, with the shards' `is_fact` and `delegate` of each
    target: one array per name, aligned position by position."""
    call, eot = call_id(tok), separator_id(tok)
    parts: dict[str, list] = {}
    for b in eval_batches(data, seq_len, eot, 8, max_sequences):
        scores = _slm_scores(small, call, b)
        scores |= {"is_fact": b.is_fact.ravel(), "delegate": b.delegate.ravel()}
        for k, v in scores.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError(f"{data}: too few tokens for one evaluation sequence of {seq_len}")
    return {k: np.concatenate(v) for k, v in parts.items()}


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
    facts_from: dict[str, str] | None = None,
) -> dict:
    """Teacher-forced cascade figures on held-out shards. `facts_from` ({name: folder}) scores
    the same positions against other labellings of the same documents (another fact proxy):
    their fact figures come under `name/` keys, so two label configs compare on one fact set."""
    call = call_id(tok)
    eot = separator_id(tok)
    parts: dict[str, list] = {}
    for bi, b in enumerate(eval_batches(data, seq_len, eot, 8, max_sequences)):
        scores = _slm_scores(small, call, b)
        if large_cache is not None and bi in large_cache:
            lp = large_cache[bi]
        else:
            lp = large(input_ids=torch.from_numpy(b.input_ids)).logits.argmax(-1).numpy()
            if large_cache is not None:
                large_cache[bi] = lp
        scores |= {"large_ok": (lp == b.targets).ravel(), "fact": b.is_fact.ravel()}
        scores |= {"ids": np.concatenate([b.input_ids.ravel(), b.targets.ravel()])}
        for k, v in scores.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError(f"{data}: too few tokens for one evaluation sequence of {seq_len}")
    p, s, g, f, u, ids = (
        np.concatenate(parts[k]) for k in ("p_call", "slm_ok", "large_ok", "fact", "unsure", "ids")
    )
    out = _figures(p, s, g, f, u, budget) | {"positions": int(len(p))}
    for name, folder in (facts_from or {}).items():
        other = _figures(p, s, g, _facts_at(folder, ids, seq_len, eot, max_sequences), u, budget)
        out |= {f"{name}/{k}": v for k, v in other.items() if "fact" in k}  # the rest: same
    return out


def _figures(p_call, slm_ok, large_ok, fact, unsure, budget: float) -> dict:
    """Cascade figures for one fact mask: the SLM's own <CALL>, and the same budget spent where
    the SLM is least sure of its own top-1 token (a baseline that needs no <CALL> training)."""
    ours = cascade(p_call, slm_ok, large_ok, fact, budget)
    base = cascade(unsure, slm_ok, large_ok, fact, budget)
    return {
        "slm_fact_accuracy": round(float(slm_ok[fact].mean()), 4),
        **ours,
        "slm_accuracy": round(float(slm_ok.mean()), 4),
        "large_fact_accuracy": round(float(large_ok[fact].mean()), 4),
        "fact_share": round(float(fact.mean()), 4),
        **{f"uncertainty_{k}": v for k, v in base.items()},
    }


def _facts_at(data, ids: np.ndarray, seq_len: int, eot: int, max_sequences) -> np.ndarray:
    """`is_fact` of another labelling of the same held-out documents, position by position;
    refuses one whose inputs or targets differ (other documents or another tokenizer)."""
    parts = list(eval_batches(data, seq_len, eot, 8, max_sequences))
    other_ids = (
        np.concatenate([np.concatenate([b.input_ids.ravel(), b.targets.ravel()]) for b in parts])
        if parts
        else np.array([])
    )
    if other_ids.shape != ids.shape or not np.array_equal(other_ids, ids):
        raise ValueError(f"{data}: not the same held-out token ids as the evaluated shards")
    return np.concatenate([b.is_fact.ravel() for b in parts])


@dataclass
class CascadeConfig:
    small: str = setting(help="the SLM's checkpoint folder")
    large: str | None = setting(None, "the large model: folder or .gguf (default: SmolLM2)")
    prompt: str | None = setting(None, "generate from this prompt (or --eval)")
    eval: str | None = setting(None, "teacher-forced evaluation on these held-out shards")
    call_budget: float = setting(0.22, "share of positions handed to the large model")
    max_new_tokens: int = setting(40, "tokens to generate after --prompt")
    max_sequences: int = setting(16, "sequences evaluated with --eval")


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args, _ = cli.parse(CascadeConfig, argv, "lacy-cascade", __doc__)
    if (args.prompt is None) == (args.eval is None):
        cli.build_parser(CascadeConfig, "lacy-cascade", __doc__).error(
            "give one of --prompt and --eval"
        )
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

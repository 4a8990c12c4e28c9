"""Evaluate a trained SLM against labelled shards.

    python -m trainer.evaluate --model CKPT --data DIR [--max_sequences N]

Prints one JSON object: call_precision / call_recall (the SLM's <CALL> argmax against the
`delegate` labels), call_rate, nll (non-<CALL> targets, <CALL> excluded from the softmax) and
fact_leakage (with the <CALL> logit at minus infinity, top-1 accuracy on delegated targets).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import torch

from lacy_labels import cli
from lacy_labels.cli import setting
from trainer.checkpoint import load_checkpoint
from trainer.data import eval_batches
from trainer.model import call_id, separator_id
from trainer.objectives import nll_without_call


@torch.inference_mode()
def evaluate(
    model, tok, data, seq_len: int = 128, batch_size: int = 8, max_sequences: int | None = None
) -> dict:
    call = call_id(tok)
    eot = separator_id(tok)
    tp = pred_n = label_n = n = 0
    nll_sum = nll_n = leak_hit = 0.0
    for b in eval_batches(data, seq_len, eot, batch_size, max_sequences):
        x, y, d = (torch.from_numpy(a) for a in (b.input_ids, b.targets, b.delegate))
        logits = model(input_ids=x).logits.float()
        pred_call = logits.argmax(-1) == call
        tp += int((pred_call & d).sum())
        pred_n += int(pred_call.sum())
        label_n += int(d.sum())
        n += y.numel()
        nll = nll_without_call(logits, y, call)
        nll_sum += float(nll[~d].sum())
        nll_n += int((~d).sum())
        logits[..., call] = float("-inf")
        leak_hit += int(((logits.argmax(-1) == y) & d).sum())
    return {
        "call_precision": round(tp / pred_n, 4) if pred_n else 0.0,
        "call_recall": round(tp / label_n, 4) if label_n else 0.0,
        "call_rate": round(pred_n / max(n, 1), 4),
        "nll": round(nll_sum / max(nll_n, 1), 4),
        "fact_leakage": round(leak_hit / label_n, 4) if label_n else 0.0,
        "targets": n,
        "delegated_targets": label_n,
    }


@dataclass
class EvalConfig:
    model: str = setting(help="checkpoint folder (trainer output)")
    data: str = setting(help="held-out labelled output (folder or URL)")
    seq_len: int = setting(128, "tokens per evaluation sequence")
    batch_size: int = setting(8, "sequences per forward")
    max_sequences: int | None = setting(None, "stop after this many sequences")


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args, _ = cli.parse(EvalConfig, argv, "lacy-eval", __doc__)
    model, tok = load_checkpoint(args.model)
    print(
        json.dumps(
            evaluate(model, tok, args.data, args.seq_len, args.batch_size, args.max_sequences)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

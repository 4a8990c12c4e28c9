"""Evaluate a trained SLM against labelled shards.

    python -m trainer.evaluate --model CKPT --data DIR [--max-sequences N]

Prints one JSON object: call_precision / call_recall (the SLM's <CALL> argmax against the
`delegate` labels), call_rate, nll (non-<CALL> targets, <CALL> excluded from the softmax) and
fact_leakage (with the <CALL> logit at minus infinity, top-1 accuracy on delegated targets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from trainer.data import iter_sequences
from trainer.model import call_id, load_checkpoint, separator_id
from trainer.objectives import nll_without_call


def batches(data, seq_len: int, eot: int, batch_size: int, max_sequences: int | None):
    rows = []
    for i, row in enumerate(iter_sequences(data, seq_len, eot, loop=False)):
        if max_sequences is not None and i >= max_sequences:
            break
        rows.append(row)
        if len(rows) == batch_size:
            yield [np.stack(c) for c in zip(*rows)]
            rows = []
    if rows:
        yield [np.stack(c) for c in zip(*rows)]


@torch.inference_mode()
def evaluate(
    model, tok, data, seq_len: int = 128, batch_size: int = 8, max_sequences: int | None = None
) -> dict:
    call = call_id(tok)
    eot = separator_id(tok)
    tp = pred_n = label_n = n = 0
    nll_sum = nll_n = leak_hit = 0.0
    for ids, dele, _fact, _loss in batches(data, seq_len, eot, batch_size, max_sequences):
        x, y = torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:])
        d = torch.from_numpy(dele[:, 1:])
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


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(
        prog="python -m trainer.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-sequences", type=int, default=None)
    args = ap.parse_args(argv)
    model, tok = load_checkpoint(args.model)
    print(
        json.dumps(
            evaluate(model, tok, args.data, args.seq_len, args.batch_size, args.max_sequences)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

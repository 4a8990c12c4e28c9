"""Training on the vocabulary the shards use (`lacy-train --compact_vocab`).

A small corpus (the fact world: a few hundred distinct tokens) trained with the reference
tokenizer's 49,153-token vocabulary spends most of a tiny SLM's compute on an output layer for
tokens it never sees. A compact vocabulary keeps one row per token id present in the training
shards (plus the separator and `<CALL>`, which is the last row) and one row for any other input.
The checkpoint stores that map beside the weights (`compact_vocab.json`);
`trainer.checkpoint.load_checkpoint` wraps such a model in `CompactLM`, which takes and returns the
full vocabulary, so evaluation, `lacy-eval` and `lacy-cascade` work unchanged.

Meant for small corpora: on web-scale text nearly every id appears and the scan is a full pass
over the `input_ids` column."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB_FILE = "compact_vocab.json"
OTHER_ROW = 0  # the row every id outside the compact vocabulary maps to (inputs only)


def shard_token_ids(data) -> np.ndarray:
    """The distinct token ids in the `input_ids` column of a labelled output's shards."""
    import pyarrow.compute as pc

    from trainer.data import open_shard, shard_files

    shards, seen = shard_files(data), set()
    for path in shards.paths:
        with open_shard(shards, path) as pf:
            for batch in pf.iter_batches(batch_size=1024, columns=["input_ids"]):
                flat = pc.list_flatten(batch.column("input_ids"))
                seen.update(pc.unique(flat).to_numpy().tolist())
    return np.array(sorted(seen), dtype=np.int64)


@dataclass(frozen=True)
class CompactVocab:
    """Full token id of each compact row (row 0: every other id; `<CALL>` last) and the size of
    the full vocabulary."""

    ids: tuple[int, ...]
    full_size: int

    @classmethod
    def build(cls, token_ids: Iterable[int], call: int, full_size: int, extra=()) -> CompactVocab:
        keep = sorted({int(t) for t in (*token_ids, *extra)} - {call})
        return cls((-1, *keep, call), full_size)

    @classmethod
    def from_shards(cls, data, call: int, full_size: int, extra=()) -> CompactVocab:
        return cls.build(shard_token_ids(data), call, full_size, extra)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def call_row(self) -> int:
        return len(self.ids) - 1

    @property
    def lut(self) -> np.ndarray:
        """Full id -> compact row (OTHER_ROW for ids outside the vocabulary)."""
        lut = np.full(self.full_size, OTHER_ROW, dtype=np.int64)
        lut[list(self.ids[1:])] = np.arange(1, len(self.ids))
        return lut

    def save(self, folder: str | Path) -> None:
        data = {"full_size": self.full_size, "ids": list(self.ids)}
        (Path(folder) / VOCAB_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, folder: str | Path) -> CompactVocab | None:
        path = Path(folder) / VOCAB_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(tuple(data["ids"]), int(data["full_size"]))


class CompactLM(torch.nn.Module):
    """A model trained on a compact vocabulary, seen through the full one: input ids are mapped
    to rows; logits come back over the full vocabulary, with the other-ids row's probability
    shared evenly by the ids outside the compact vocabulary (a proper distribution: finite NLLs
    everywhere)."""

    def __init__(self, model, vocab: CompactVocab):
        super().__init__()
        self.model, self.vocab = model, vocab
        self.register_buffer("lut", torch.from_numpy(vocab.lut), persistent=False)
        self.register_buffer("rows", torch.tensor(vocab.ids[1:]), persistent=False)
        self.outside = math.log(max(vocab.full_size - (len(vocab) - 1), 1))

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids: torch.Tensor, **kwargs):
        out = self.model(input_ids=self.lut[input_ids], **kwargs)
        small = out.logits
        full = (small[..., OTHER_ROW : OTHER_ROW + 1] - self.outside).expand(
            *small.shape[:-1], self.vocab.full_size
        )
        out.logits = full.index_copy(-1, self.rows, small[..., 1:])
        return out

"""Streaming training data from labelled Parquet shards: documents are concatenated with the
end-of-text token and cut into fixed-length sequences; `delegate`, `is_fact` and `ref_loss`
travel along, aligned with the *targets* (position t describes token t+1 of the window).
Shards are read one record batch at a time (never a whole corpus in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

NEEDED = ("input_ids", "delegate", "is_fact", "ref_loss")


class ShardError(ValueError):
    """A shard that cannot be trained on, with the file and the reason."""


@dataclass
class Batch:
    input_ids: np.ndarray  # int64 [B, T]
    targets: np.ndarray  # int64 [B, T]
    delegate: np.ndarray  # bool [B, T]   (label of the target)
    is_fact: np.ndarray  # bool [B, T]
    ref_loss: np.ndarray  # float32 [B, T] (NaN where undefined)


def shard_files(data: str | Path) -> list[Path]:
    root = Path(data)
    files = sorted(root.glob("data/*.parquet")) or sorted(root.glob("*.parquet"))
    if root.is_file():
        files = [root]
    if not files:
        raise ShardError(f"{data}: no Parquet shards (expected DIR/data/*.parquet)")
    return files


def check_shard(path: Path) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
        raise ShardError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in NEEDED if c not in pf.schema_arrow.names]
    if missing:
        raise ShardError(f"{path}: missing column(s) {missing}")
    return pf


def iter_documents(files: list[Path]) -> Iterator[tuple[np.ndarray, ...]]:
    """(ids, delegate, is_fact, ref_loss) per document, streamed batch by batch."""
    for path in files:
        pf = check_shard(path)
        for batch in pf.iter_batches(batch_size=256, columns=list(NEEDED)):
            cols = {c: batch.column(c) for c in NEEDED}
            for i in range(batch.num_rows):
                ids = np.asarray(cols["input_ids"][i].values, dtype=np.int64)
                dele = np.asarray(cols["delegate"][i].values.to_numpy(zero_copy_only=False))
                fact = np.asarray(cols["is_fact"][i].values.to_numpy(zero_copy_only=False))
                loss = cols["ref_loss"][i].values.to_numpy(zero_copy_only=False)
                loss = np.asarray(loss, dtype=np.float32)
                if not (len(ids) == len(dele) == len(fact) == len(loss)):
                    raise ShardError(f"{path}: row {i}: per-token column lengths disagree")
                yield ids, dele.astype(bool), fact.astype(bool), loss


def iter_sequences(
    data: str | Path, seq_len: int, eot_id: int, loop: bool = True
) -> Iterator[tuple[np.ndarray, ...]]:
    """Windows of seq_len + 1 tokens (inputs + shifted targets) over the concatenated stream
    [doc, EOT, doc, EOT, ...]; the EOT separator has delegate/is_fact False and no loss."""
    files = shard_files(data)
    width = seq_len + 1
    buf = [np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, np.float32)]
    while True:
        produced = False
        for ids, dele, fact, loss in iter_documents(files):
            parts = (
                np.append(ids, eot_id),
                np.append(dele, False),
                np.append(fact, False),
                np.append(loss, np.float32(np.nan)),
            )
            buf = [np.concatenate([b, p]) for b, p in zip(buf, parts)]
            while len(buf[0]) >= width:
                yield tuple(b[:width] for b in buf)
                produced = True
                buf = [b[seq_len:] for b in buf]  # the last target is the next input
        if not loop or not produced:
            if not produced and loop:
                raise ShardError(f"{data}: fewer than {width} tokens in total")
            return


class SequenceLoader:
    """Batches of sequences with a resumable position (sequences consumed so far)."""

    def __init__(self, data, seq_len: int, batch_size: int, eot_id: int, position: int = 0):
        self.stream = iter_sequences(data, seq_len, eot_id)
        self.batch_size = batch_size
        self.position = 0
        for _ in range(position):
            next(self.stream)
            self.position += 1

    def next_batch(self) -> Batch:
        rows = [next(self.stream) for _ in range(self.batch_size)]
        self.position += self.batch_size
        ids, dele, fact, loss = (np.stack(c) for c in zip(*rows))
        return Batch(ids[:, :-1], ids[:, 1:], dele[:, 1:], fact[:, 1:], loss[:, 1:])

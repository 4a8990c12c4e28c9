"""Labelled documents -> fixed-length training windows: the one place where lacy's per-token
labels are aligned with the targets they describe. `lacy-train` streams shards through it
(`trainer.data`); `LacyWindows` and `collate` put it behind any iterable of rows (a
`datasets.Dataset` from `load_dataset("parquet", ...)`, streaming or not, a list of dicts) for
`transformers.Trainer` or a plain PyTorch loop.

Documents are concatenated as [doc, SEP, doc, SEP, ...] and cut into windows of seq_len + 1
tokens; the last token of a window is the first of the next, so every target is trained once.
SEP (the reference model's plain-text start token) has delegate/is_fact False and no loss.
`Batch.from_windows` shifts a window into inputs and targets: the per-token columns describe
the *target*, so position t of `delegate` says whether token t + 1 is a <CALL> target."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

NEEDED = ("input_ids", "delegate", "is_fact", "ref_loss")
Window = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # ids, delegate, is_fact, ref_loss


class ShardError(ValueError):
    """Data that cannot be trained on, with where it came from and why."""


@dataclass
class Batch:
    input_ids: np.ndarray  # int64 [B, T]
    targets: np.ndarray  # int64 [B, T]
    delegate: np.ndarray  # bool [B, T]   (label of the target)
    is_fact: np.ndarray  # bool [B, T]
    ref_loss: np.ndarray  # float32 [B, T] (NaN where undefined)

    @classmethod
    def from_windows(cls, rows: list[Window]) -> Batch:
        """Windows of seq_len + 1 (ids, delegate, is_fact, ref_loss) -> inputs and the targets
        they predict: the per-token columns describe the target, position t is token t + 1."""
        ids, dele, fact, loss = (np.stack(c) for c in zip(*rows))
        return cls(ids[:, :-1], ids[:, 1:], dele[:, 1:], fact[:, 1:], loss[:, 1:])


class Packer:
    """Documents in, windows of seq_len + 1 out, across document boundaries."""

    def __init__(self, seq_len: int, sep_id: int):
        self.seq_len, self.sep_id = seq_len, sep_id
        self.buf = [
            np.zeros(0, np.int64),
            np.zeros(0, bool),
            np.zeros(0, bool),
            np.zeros(0, np.float32),
        ]

    def add(self, ids, delegate, is_fact, ref_loss) -> Iterator[Window]:
        """Append one document (and SEP); yield every window that is now complete."""
        parts = (
            np.append(np.asarray(ids, np.int64), self.sep_id),
            np.append(np.asarray(delegate, bool), False),
            np.append(np.asarray(is_fact, bool), False),
            np.append(np.asarray(ref_loss, np.float32), np.float32(np.nan)),
        )
        self.buf = [np.concatenate([b, p]) for b, p in zip(self.buf, parts)]
        width = self.seq_len + 1
        while len(self.buf[0]) >= width:
            yield tuple(b[:width] for b in self.buf)
            self.buf = [b[self.seq_len :] for b in self.buf]  # the last target is the next input


def missing_columns(names: Iterable[str]) -> list[str]:
    have = set(names)
    return [c for c in NEEDED if c not in have]


def row_document(row: Mapping, where: str = "row") -> tuple[np.ndarray, ...]:
    """(ids, delegate, is_fact, ref_loss) of one labelled row: Python lists (None for a missing
    loss), NumPy arrays or tensors."""
    missing = missing_columns(row.keys())
    if missing:
        raise ShardError(
            f"{where}: missing column(s) {missing}; lacy needs {list(NEEDED)} "
            "(the columns of a lacy-label output)"
        )
    ids = np.asarray(row["input_ids"], dtype=np.int64)
    dele = np.asarray(row["delegate"], dtype=bool)
    fact = np.asarray(row["is_fact"], dtype=bool)
    loss = np.array([np.nan if x is None else x for x in row["ref_loss"]], dtype=np.float32)
    if not (len(ids) == len(dele) == len(fact) == len(loss)):
        raise ShardError(f"{where}: per-token column lengths disagree")
    return ids, dele, fact, loss


def _torch_iterable_base():
    import torch.utils.data

    return torch.utils.data.IterableDataset


class LacyWindows(_torch_iterable_base()):
    """A torch IterableDataset of packed windows over rows of a labelled dataset, in the rows'
    order. Each DataLoader worker packs every k-th row (k workers), so nothing is seen twice."""

    def __init__(self, rows: Iterable[Mapping], seq_len: int, sep_id: int):
        self.rows, self.seq_len, self.sep_id = rows, seq_len, sep_id
        names = getattr(rows, "column_names", None)  # a datasets.Dataset says up front
        if names is not None and missing_columns(names):
            row_document(dict.fromkeys(names), "the dataset")  # raises, naming the columns

    def __iter__(self) -> Iterator[Window]:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        k, i = (info.num_workers, info.id) if info else (1, 0)
        packer = Packer(self.seq_len, self.sep_id)
        for n, row in enumerate(self.rows):
            if n % k == i:
                yield from packer.add(*row_document(row, f"row {n}"))


def collate(windows: list[Window]) -> dict:
    """A data collator: windows -> {"input_ids": [B, T], "labels": {targets, delegate, is_fact,
    ref_loss}} as tensors. `transformers.Trainer` moves the nested labels to the device and
    hands them to `compute_loss_func` (an `objectives.LacyLoss`)."""
    import torch

    b = Batch.from_windows(windows)
    return {
        "input_ids": torch.from_numpy(b.input_ids),
        "labels": {
            "targets": torch.from_numpy(b.targets),
            "delegate": torch.from_numpy(b.delegate),
            "is_fact": torch.from_numpy(b.is_fact),
            "ref_loss": torch.from_numpy(b.ref_loss),
        },
    }

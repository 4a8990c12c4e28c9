"""Streaming training data from labelled Parquet shards: documents are concatenated with the
end-of-text token and cut into fixed-length sequences; `delegate`, `is_fact` and `ref_loss`
travel along, aligned with the *targets* (position t describes token t+1 of the window).

Shards come from a local folder, any fsspec URL (`gs://`, `s3://`, `hf://datasets/ORG/NAME`,
`https://`, `memory://`, ...) or a Hub dataset id (`ORG/NAME`), and are read one record batch
at a time through the filesystem's file objects (range reads: never a whole shard in memory).
A network error is retried with backoff, continuing at the row group where it struck; a shard
larger than `max_bytes` is refused before it is read."""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trainer.packing import NEEDED, Batch, Packer, ShardError, missing_columns

__all__ = ["Batch", "SequenceLoader", "ShardError", "eval_batches", "iter_sequences"]

NO_RANGES = "support range requests"  # in fsspec's error for such a server
log = logging.getLogger("lacy")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_SHARD_BYTES = (
    16 << 30
)  # a labelled shard is ~100 MB; far more is a wrong URL or a hostile server
RETRIES = 5  # tries of one read after a network error, 1, 2, 4, 8 s apart
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@dataclass
class Shards:
    """Shard paths on one fsspec filesystem; `whole_file` once its server turned out to ignore
    range requests (then every shard is streamed whole)."""

    fs: object
    paths: list[str]
    source: str
    whole_file: bool = False
    max_bytes: int = MAX_SHARD_BYTES

    def url(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)


def data_url(data: str | Path) -> str:
    """A local path as is; `ORG/NAME` that is not a local path means the Hub dataset."""
    text = str(data)
    if "://" not in text and not Path(text).exists() and HUB_ID.match(text):
        return f"hf://datasets/{text}"
    return text


def shard_files(data: str | Path, max_bytes: int = MAX_SHARD_BYTES) -> Shards:
    """The Parquet shards of a labelled output (DIR/data/*.parquet, else DIR/*.parquet, or one
    .parquet file), sorted by path, on whatever filesystem `data` names."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(data_url(data))
        if root.endswith(".parquet"):
            files = [root]
        else:
            base = root.rstrip("/")
            files = sorted(fs.glob(f"{base}/data/*.parquet")) or sorted(
                fs.glob(f"{base}/*.parquet")
            )
    except (OSError, ValueError, ImportError) as e:
        raise ShardError(f"{data}: cannot list shards ({type(e).__name__}: {e})") from None
    if not files:
        raise ShardError(f"{data}: no Parquet shards (expected DIR/data/*.parquet)")
    return Shards(fs, files, str(data), max_bytes=max_bytes)


def check_shard(f, name: str) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
        if NO_RANGES in str(e):
            raise _NoRanges from None
        if transient(e):
            raise  # retried by iter_documents
        raise ShardError(f"{name}: not a readable Parquet file ({e})") from None
    missing = missing_columns(pf.schema_arrow.names)
    if missing:
        raise ShardError(f"{name}: missing column(s) {missing}")
    return pf


class _NoRanges(Exception):
    """The server answered a range request with the whole file (fsspec refuses to go on)."""


@contextlib.contextmanager
def open_shard(shards: Shards, path: str) -> Iterator[pq.ParquetFile]:
    """One shard for reading: by range requests (the footer, then one row group at a time), or,
    from a server that ignores them (Python's `http.server`, some proxies), streamed whole into
    a temporary file first, with one warning per data source."""
    name = shards.url(path)
    _check_size(shards, path, name)
    if not shards.whole_file:
        try:
            f = shards.fs.open(path, "rb")
        except OSError as e:
            if transient(e):
                raise  # retried by iter_documents
            raise ShardError(f"{name}: cannot open ({e})") from None
        with f:
            try:
                pf = check_shard(f, name)
            except _NoRanges:
                pf = None
            if pf is not None:
                yield pf
                return
        shards.whole_file = True
        log.warning(
            "%s: the server ignores HTTP range requests; every shard is downloaded whole into a "
            "temporary file before it is read (serve the folder from an object store or a "
            "server with range support to read it row group by row group)",
            shards.source,
        )
    with tempfile.TemporaryFile(prefix="lacy-shard-") as tmp:
        with shards.fs.open(path, "rb", block_size=0) as stream:
            _copy_capped(stream, tmp, shards.max_bytes, name)
        tmp.seek(0)
        yield check_shard(tmp, name)


def _check_size(shards: Shards, path: str, name: str) -> None:
    try:
        size = shards.fs.size(path)
    except PERMANENT as e:
        raise ShardError(f"{name}: cannot open ({e})") from None
    except (OSError, ValueError, TypeError):
        return  # a server that does not say: the download below is capped instead
    if size is not None and size > shards.max_bytes:
        raise ShardError(f"{name}: {size:,} bytes, more than --max_shard_bytes "
                         f"{shards.max_bytes:,}")  # fmt: skip


def _copy_capped(src, dst, cap: int, name: str) -> None:
    copied = 0
    while chunk := src.read(1 << 20):
        copied += len(chunk)
        if copied > cap:
            raise ShardError(f"{name}: more than --max_shard_bytes {cap:,} bytes")
        dst.write(chunk)


def iter_documents(shards: Shards) -> Iterator[tuple[np.ndarray, ...]]:
    """(ids, delegate, is_fact, ref_loss) per document, streamed row group by row group; a
    network error reopens the shard and goes on where it struck, RETRIES times with backoff."""
    for path in shards.paths:
        done = 0  # documents of this shard already yielded
        for attempt in range(RETRIES):
            try:
                for doc in _shard_documents(shards, path, done):
                    done += 1
                    yield doc
                break
            except Exception as e:  # noqa: BLE001 - filesystems raise many types; sort them
                if not transient(e):
                    raise
                if attempt == RETRIES - 1:
                    raise ShardError(f"{shards.url(path)}: {RETRIES} tries failed "
                                     f"({type(e).__name__}: {e})") from None  # fmt: skip
                log.warning("%s: %s: %s; retrying in %d s", shards.url(path),
                            type(e).__name__, e, 2**attempt)  # fmt: skip
                time.sleep(2**attempt)


def transient(e: Exception) -> bool:
    """A network error worth retrying: a dropped or timed-out connection, a 5xx or 429 answer;
    not a missing file, a refusal or broken data."""
    if isinstance(e, (ShardError, *PERMANENT)):
        return False
    status = getattr(e, "status", None) or getattr(e, "code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429
    if any(c.__module__.partition(".")[0] == "aiohttp" for c in type(e).__mro__):
        return True  # fsspec's HTTP client: a dropped connection, a payload cut short
    return isinstance(e, (OSError, TimeoutError, ConnectionError))


def _shard_documents(shards: Shards, path: str, skip: int) -> Iterator[tuple[np.ndarray, ...]]:
    """The shard's documents after the first `skip`, reading only the row groups they are in."""
    name, seen = shards.url(path), 0
    with open_shard(shards, path) as pf:
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if seen + rows <= skip:  # all yielded before the error
                seen += rows
                continue
            for batch in pf.iter_batches(batch_size=256, row_groups=[g], columns=list(NEEDED)):
                for doc in _batch_documents(batch, name):
                    if seen >= skip:
                        yield doc
                    seen += 1


def _batch_documents(batch, name: str) -> Iterator[tuple[np.ndarray, ...]]:
    cols = {c: batch.column(c) for c in NEEDED}
    for i in range(batch.num_rows):
        ids = np.asarray(cols["input_ids"][i].values, dtype=np.int64)
        dele = np.asarray(cols["delegate"][i].values.to_numpy(zero_copy_only=False))
        fact = np.asarray(cols["is_fact"][i].values.to_numpy(zero_copy_only=False))
        loss = cols["ref_loss"][i].values.to_numpy(zero_copy_only=False)
        loss = np.asarray(loss, dtype=np.float32)
        if not (len(ids) == len(dele) == len(fact) == len(loss)):
            raise ShardError(f"{name}: row {i}: per-token column lengths disagree")
        yield ids, dele.astype(bool), fact.astype(bool), loss


def iter_sequences(
    data: str | Path, seq_len: int, eot_id: int, loop: bool = True, max_bytes=MAX_SHARD_BYTES
) -> Iterator[tuple[np.ndarray, ...]]:
    """Windows of seq_len + 1 tokens (inputs + shifted targets) over the concatenated stream
    [doc, EOT, doc, EOT, ...] of the shards (`trainer.packing.Packer`), looping over the data
    unless `loop` is False."""
    shards = shard_files(data, max_bytes)
    packer = Packer(seq_len, eot_id)
    while True:
        produced = False
        for doc in iter_documents(shards):
            for window in packer.add(*doc):
                produced = True
                yield window
        if not loop or not produced:
            if not produced and loop:
                raise ShardError(f"{data}: fewer than {seq_len + 1} tokens in total")
            return


def eval_batches(
    data, seq_len: int, eot: int, batch_size: int, max_sequences: int | None = None
) -> Iterator[Batch]:
    """One pass over held-out shards in batches (the last one may be smaller), no looping."""
    rows = []
    for i, row in enumerate(iter_sequences(data, seq_len, eot, loop=False)):
        if max_sequences is not None and i >= max_sequences:
            break
        rows.append(row)
        if len(rows) == batch_size:
            yield Batch.from_windows(rows)
            rows = []
    if rows:
        yield Batch.from_windows(rows)


class SequenceLoader:
    """Micro-batches of sequences for one rank, with a resumable position.

    The sequence stream is cut into micro-batches of `batch_size`; micro-batch j belongs to rank
    j % world, so ranks see disjoint, deterministic data and, step for step, the same
    micro-batches a single process would see at the same global batch. `position` counts
    sequences of the global stream (every rank's) consumed; a resumed loader skips to it."""

    def __init__(
        self,
        data,
        seq_len: int,
        batch_size: int,
        eot_id: int,
        position: int = 0,
        rank: int = 0,
        world: int = 1,
        max_bytes: int = MAX_SHARD_BYTES,
    ):
        if position % batch_size:
            raise ValueError(f"position {position} is not a whole number of micro-batches")
        self.stream = iter_sequences(data, seq_len, eot_id, max_bytes=max_bytes)
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.position = 0
        self._skip(position)

    def _skip(self, n: int) -> None:
        for _ in range(n):
            next(self.stream)
        self.position += n

    def next_batch(self) -> Batch:
        while (self.position // self.batch_size) % self.world != self.rank:
            self._skip(self.batch_size)
        rows = [next(self.stream) for _ in range(self.batch_size)]
        self.position += self.batch_size
        return Batch.from_windows(rows)

    def align(self, position: int) -> None:
        """Skip ahead to a global position (after a step, every rank agrees on it)."""
        if position < self.position:
            raise ValueError("cannot move a loader backwards")
        self._skip(position - self.position)

"""Streaming readers: one listed input file -> raw records {"source", "index", "id", "text"} or
{"source", "index", "error", "reason"}, one record at a time. Validation happens later
(lacy_labels.validate).

Every record a file holds comes out as exactly one raw record: a record that fails to read or
parse (any exception) is an error record and reading goes on with the next; where reading cannot
go on (a cut-off or corrupt stream) one error record stands for the rest of the file; a file
that cannot be opened is one error record; a file that holds no record is one too. Nothing is
held beyond a cap (`pipelines.bounded`): lines and members over it are measured as they stream
past and rejected as too_long. Paths go through Beam's FileSystems, so gs:// and s3:// work;
local files are opened only when they are regular files."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from lacy_labels.corpus import wiki_json_path
from lacy_labels.validate import MAX_ID_CHARS, has_lone_surrogate
from pipelines.bounded import (
    BOM,
    DEFAULT_ROW_GROUP_BYTES,
    JsonCutOff,
    Overlong,
    json_members,
    read_capped,
    read_lines,
    record_cap,
    text_cap,
    too_complex,
)
from pipelines.listing import SHIPPED, Listed, is_local

PARQUET_BATCH = 1024


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need from the settings."""

    text_field: str = "text"
    id_field: str = "id"
    txt_mode: str = "file"
    max_chars: int = 5_000_000
    max_row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES


class CannotOpen(Exception):
    """The file cannot be opened as a file of its type: one reject stands for it."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def read_file(entry: Listed, opts: ReadOptions = ReadOptions()) -> Iterator[dict]:
    """Raw records of one listed file, streamed. Lone surrogates (which no coder can serialise)
    are turned into errors here, before records travel between stages."""
    if entry.reason is not None:
        yield _file_error(entry, entry.reason, entry.detail)
        return
    n = 0
    for raw in _read_any(entry, opts):
        n += 1
        if any(isinstance(raw.get(k), str) and has_lone_surrogate(raw[k]) for k in ("text", "id")):
            raw = _surrogate_error(raw)
        yield raw
    if n == 0:
        yield _file_error(entry, "empty_file", f"the file holds no record ({entry.size} bytes)")


def _file_error(entry: Listed, reason: str, detail: str) -> dict:
    return {"source": entry.path, "index": -1, "reason": reason, "error": detail}


def _surrogate_error(raw: dict) -> dict:
    rid = raw.get("id")
    return {
        "source": raw["source"],
        "index": raw["index"],
        "reason": "lone_surrogate",
        "error": "text or id holds an unpaired UTF-16 surrogate",
        "id": rid.encode("utf-8", "backslashreplace").decode() if isinstance(rid, str) else rid,
    }


def _read_any(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    if entry.size == 0 and entry.path.endswith(".gz"):
        yield _file_error(entry, "truncated_file", "a .gz of 0 bytes is not a gzip stream "
                          "(a failed download or copy?)")  # fmt: skip
        return
    read = READERS[entry.reader]
    done = 0
    try:
        for raw in read(entry, opts):
            done += 1
            yield raw
    except CannotOpen as e:
        yield _file_error(entry, e.reason, str(e))
    except (EOFError, JsonCutOff) as e:
        yield _file_error(entry, "truncated_file", f"{_stopped(done)} ({type(e).__name__}: {e})")
    except Exception as e:  # noqa: BLE001 - a stream that cannot go on: the rest is one reject
        yield _file_error(entry, "corrupt_file", f"{_stopped(done)} ({type(e).__name__}: {e})")


def _stopped(done: int) -> str:
    return (f"reading stopped after {done} records: the file is cut off or corrupt there, and "
            "this reject stands for the rest of it")  # fmt: skip


# -- opening -----------------------------------------------------------------------------------


def open_raw(path: str):
    """The file's bytes as they are stored. A local path is opened without blocking (a FIFO
    would wait for a writer) and only when it is a regular file."""
    if not is_local(path):
        try:
            return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        except Exception as e:  # noqa: BLE001 - each filesystem raises its own types
            raise CannotOpen("unreadable_file", f"cannot open it ({type(e).__name__}: {e})") from e
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CannotOpen("unreadable_file", f"cannot open it ({e.strerror})") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CannotOpen("not_a_regular_file", "not a regular file (it changed since listing)")
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def open_input(path: str) -> Iterator:
    """A file's bytes, decompressed. A `.gz` goes through Python's gzip, which raises EOFError
    where the stream is cut off (Beam's decompressor ends there silently, so a truncated file
    would look like a complete one with a bad last line)."""
    with open_raw(path) as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                yield f
        else:
            yield raw


# -- JSON records ------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str | None, dict | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        why = "UTF-16 (it starts with a UTF-16 byte order mark); lacy reads UTF-8" if utf16 else e
        return None, {"reason": "invalid_utf8", "error": str(why)}


def _parse(data: bytes) -> tuple[object, dict | None]:
    """(the parsed JSON value, None) or (None, an error)."""
    text, error = _decode(data)
    if error:
        return None, error
    why = too_complex(data)
    if why:
        return None, {"reason": "too_complex", "error": why}
    try:
        return json.loads(text), None
    except RecursionError:
        return None, {"reason": "too_complex", "error": "nested too deeply to parse"}
    except Exception as e:  # noqa: BLE001 - any parse failure is this record's reject
        return None, {"reason": "malformed_record", "error": f"bad JSON: {type(e).__name__}: {e}"}


def json_record(data: bytes, opts: ReadOptions) -> dict:
    """{"id", "text"} of one JSON object's bytes, or {"reason", "error"}."""
    obj, error = _parse(data)
    if error:
        return error
    if not isinstance(obj, dict):
        what = type(obj).__name__
        return {"reason": "malformed_record", "error": f"a JSON {what}, not an object"}
    return {"id": obj.get(opts.id_field), "text": obj.get(opts.text_field)}


def _json_member(data: bytes, opts: ReadOptions) -> dict:
    """{"id": key, "text"} of one `"key": value` member of a top-level object."""
    obj, error = _parse(b"{" + data + b"}")
    if error:
        return error
    if len(obj) != 1:
        return {"reason": "malformed_record", "error": "not one key: value member"}
    key, value = next(iter(obj.items()))
    return {"id": key, "text": value.get(opts.text_field) if isinstance(value, dict) else value}


def _too_long(item: Overlong, cap: int, what: str) -> dict:
    return {"reason": "too_long", "error": item.describe(cap, what)}


def _read_jsonl(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    cap = record_cap(opts.max_chars)
    with open_input(entry.path) as f:
        for i, line in read_lines(f, cap):
            base = {"source": entry.path, "index": i}
            if isinstance(line, Overlong):
                yield base | _too_long(line, cap, "line")
            elif line.strip():
                yield base | json_record(line, opts)


def _read_json(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    """A JSON array of records, or an object {id: text or {text_field: text}}, split member by
    member as it streams (file order)."""
    cap = record_cap(opts.max_chars)
    with open_input(entry.path) as f:
        for i, (member, kind) in enumerate(json_members(f, cap)):
            base = {"source": entry.path, "index": i}
            if isinstance(member, Overlong):
                yield base | _too_long(member, cap, "JSON member")
            elif kind == "array":
                yield base | json_record(member, opts)
            else:
                yield base | _json_member(member, opts)


def _read_shipped(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    """The shipped sample (a known 6.5 MB file inside a package), in sorted id order."""
    with open(wiki_json_path(), "rb") as f:
        data = json.load(f)
    for i, key in enumerate(sorted(data)):
        value = data[key]
        text = value.get("extract") if isinstance(value, dict) else value
        yield {"source": SHIPPED, "index": i, "id": key, "text": text}


# -- plain text --------------------------------------------------------------------------------


def _read_txt(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    """A document per file (id: the path relative to the input root) or per line (id:
    `path:line`)."""
    cap = text_cap(opts.max_chars)
    with open_input(entry.path) as f:
        if opts.txt_mode == "line":
            for i, line in read_lines(f, cap):
                if isinstance(line, Overlong) or line.strip():
                    yield _txt_record(entry, i, f"{entry.rel}:{i}", line, cap, strip_cr=True)
        else:
            data = read_capped(f, cap)
            if isinstance(data, bytes) and data.startswith(BOM):
                data = data[len(BOM) :]
            yield _txt_record(entry, 0, entry.rel, data, cap)


def _txt_record(entry, index, rid, data, cap, strip_cr=False) -> dict:
    base = {"source": entry.path, "index": index, "id": rid}
    if isinstance(data, Overlong):
        return base | _too_long(data, cap, "text" if index == 0 else "line")
    text, error = _decode(data)
    if error:
        return base | error
    return base | {"text": text.rstrip("\r") if strip_cr else text}


# -- Parquet and Arrow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A value that is not read, and why (a reject's reason and detail)."""

    reason: str
    detail: str


def column_values(col, limit: int, what: str) -> list:
    """A column's values as Python objects, except values longer than `limit` characters (or
    bytes, for binary) and values of a type lacy does not read, which become Problems without
    being converted (a null stays None)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    valid = col.is_valid().to_pylist()
    if pa.types.is_integer(t) and what == "id":
        return col.to_pylist()
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    if not (text or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        wrong = Problem(
            "text_not_string" if what == "text" else "bad_id", f"the {what} column is {t}"
        )
        return [wrong if ok else None for ok in valid]
    lengths = (pc.utf8_length if text else pc.binary_length)(col)
    long = pc.fill_null(pc.greater(lengths, limit), False)
    short = pc.if_else(long, pa.scalar(None, t), col).to_pylist()
    reason = "too_long" if what == "text" else "bad_id"
    unit = "characters" if text else "bytes"
    return [
        Problem(reason, f"the {what} is {n:,} {unit}, over {limit:,}")
        if n is not None and n > limit
        else v
        for v, n in zip(short, lengths.to_pylist())
    ]  # fmt: skip


def batch_records(batch, source: str, first: int, opts: ReadOptions) -> Iterator[dict]:
    """Raw records of one record batch; a batch whose columns cannot be converted is converted
    row by row, so that one bad value is one reject."""
    try:
        rows = _batch_columns(batch, opts)
    except Exception:  # noqa: BLE001 - pyarrow raises many types; isolate the row
        rows = None
    for j in range(batch.num_rows):
        base = {"source": source, "index": first + j}
        try:
            rid, text = rows[j] if rows is not None else _batch_columns(batch.slice(j, 1), opts)[0]
        except Exception as e:  # noqa: BLE001
            yield base | {"reason": "malformed_record", "error": f"{type(e).__name__}: {e}"}
            continue
        problem = next((v for v in (text, rid) if isinstance(v, Problem)), None)
        if problem:
            yield base | {"id": None, "reason": problem.reason, "error": problem.detail}
        else:
            yield base | {"id": rid, "text": text}


def _batch_columns(batch, opts: ReadOptions) -> list[tuple]:
    names, n = batch.schema.names, batch.num_rows
    texts = (column_values(batch.column(opts.text_field), opts.max_chars, "text")
             if opts.text_field in names else [None] * n)  # fmt: skip
    ids = (column_values(batch.column(opts.id_field), MAX_ID_CHARS, "id")
           if opts.id_field in names else [None] * n)  # fmt: skip
    return list(zip(ids, texts))


def _columns(schema_names, opts: ReadOptions) -> list[str]:
    return [c for c in (opts.text_field, opts.id_field) if c in schema_names]


def _read_parquet(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    """Row group by row group (pyarrow decodes a row group's column chunk whole): a row group
    over the size budget is not decoded, and one that fails to decode rejects its rows; reading
    goes on with the next."""
    import pyarrow.parquet as pq

    with open_raw(entry.path) as f:
        try:
            pf = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
        except Exception as e:  # noqa: BLE001
            raise CannotOpen("unreadable_file", f"not a readable Parquet file ({e})") from e
        cols, first = _columns(pf.schema_arrow.names, opts), 0
        for g in range(pf.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            yield from _row_group(pf, g, first, rows, cols, entry.path, opts)
            first += rows


def _row_group(pf, g: int, first: int, rows: int, cols, source: str, opts) -> Iterator[dict]:
    size = _row_group_bytes(pf, g, cols)
    over = size > opts.max_row_group_bytes or size > rows * text_cap(opts.max_chars) + (1 << 20)
    if over:
        why = (f"row group {g} ({rows} rows) holds {size:,} bytes uncompressed, more than "
               f"--max_row_group_bytes {opts.max_row_group_bytes:,} or than its rows can hold "
               f"within --max_chars {opts.max_chars:,}; pyarrow decodes a row group whole, so "
               "lacy does not decode it (write smaller row groups)")  # fmt: skip
        yield from _rows_rejected(source, first, rows, "too_long", why)
        return
    done = 0
    try:
        for batch in pf.iter_batches(PARQUET_BATCH, row_groups=[g], columns=cols):
            yield from batch_records(batch, source, first + done, opts)
            done += batch.num_rows
    except Exception as e:  # noqa: BLE001 - a row group that does not decode
        why = f"row group {g} could not be decoded ({type(e).__name__}: {e})"
        yield from _rows_rejected(source, first + done, rows - done, "malformed_record", why)


def _row_group_bytes(pf, g: int, cols) -> int:
    meta, names = pf.metadata.row_group(g), pf.metadata.schema.names
    return sum(meta.column(i).total_uncompressed_size for i, name in enumerate(names)
               if name in cols)  # fmt: skip


def _rows_rejected(source: str, first: int, n: int, reason: str, detail: str) -> Iterator[dict]:
    for j in range(n):
        yield {"source": source, "index": first + j, "reason": reason, "error": detail}


def _read_arrow(entry: Listed, opts: ReadOptions) -> Iterator[dict]:
    """An Arrow IPC stream (what `datasets` saves) or file, memory-mapped: values are measured
    in place and only those within the caps become Python objects. A remote file is first
    streamed to a local temporary file."""
    import pyarrow as pa

    with _local_copy(entry.path) as path:
        try:
            source = pa.memory_map(path)
            try:
                batches = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(source)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except Exception as e:  # noqa: BLE001
            raise CannotOpen("unreadable_file", f"not an Arrow IPC stream or file ({e})") from e
        first = 0
        for batch in batches:
            yield from batch_records(batch, entry.path, first, opts)
            first += batch.num_rows


@contextlib.contextmanager
def _local_copy(path: str) -> Iterator[str]:
    """A local path to map: the file itself (checked to be regular, read through its descriptor
    where the OS can), or a temporary copy of a remote file."""
    if is_local(path):
        with open_raw(path) as f:
            by_fd = f"/proc/self/fd/{f.fileno()}"
            yield by_fd if os.path.exists(by_fd) else path
        return
    with tempfile.NamedTemporaryFile(prefix="lacy-arrow-", suffix=".arrow") as tmp:
        with open_raw(path) as f:
            shutil.copyfileobj(f, tmp, 1 << 20)
        tmp.flush()
        yield tmp.name


READERS = {
    "shipped": _read_shipped,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "parquet": _read_parquet,
    "arrow": _read_arrow,
    "txt": _read_txt,
}

"""Input expansion and streaming readers. Each reader yields raw records
{"source", "index", "id", "text"} or {"source", "index", "error", "reason"}; validation happens
later (lacy_labels.validate). Paths go through Beam's FileSystems, so gs:// and s3:// work."""

from __future__ import annotations

import contextlib
import gzip
import json
import posixpath
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from lacy_labels.corpus import wiki_json_path
from lacy_labels.validate import has_lone_surrogate

SHIPPED = "shipped:wikipedia"
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".arrow", ".txt", ".txt.gz")


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - a filesystem that cannot answer
        return False


def expand_inputs(spec: str | None) -> list[str]:
    """Sorted list of files for a file, folder (a `datasets` save_to_disk folder or any folder of
    supported files) or glob; the shipped sample when spec is None."""
    if spec is None:
        return [SHIPPED]
    spec = spec.rstrip("/")
    state = FileSystems.join(spec, "state.json")
    if _exists(state):
        with FileSystems.open(state) as f:
            files = [d["filename"] for d in json.load(f)["_data_files"]]
        return [FileSystems.join(spec, name) for name in files]
    dict_file = FileSystems.join(spec, "dataset_dict.json")
    if _exists(dict_file):
        with FileSystems.open(dict_file) as f:
            splits = json.load(f)["splits"]
        return [p for s in splits for p in expand_inputs(FileSystems.join(spec, s))]
    pattern = spec
    if not any(c in spec for c in "*?[") and not _is_file(spec):
        pattern = FileSystems.join(spec, "**")
    matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    files = sorted(p for p in matched if p.endswith(SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no input files ({', '.join(SUFFIXES)}) match {spec!r}")
    return files


def _is_file(path: str) -> bool:
    return path.endswith(SUFFIXES) and _exists(path)


def read_file(path: str, text_field="text", id_field="id", txt_mode="file") -> Iterator[dict]:
    """Raw records of one file, streamed. Lone surrogates (which no coder can serialise) are
    turned into errors here, before records travel between stages."""
    for raw in _read_any(path, text_field, id_field, txt_mode):
        if any(isinstance(raw.get(k), str) and has_lone_surrogate(raw[k]) for k in ("text", "id")):
            rid = raw.get("id")
            raw = {
                "source": raw["source"],
                "index": raw["index"],
                "reason": "lone_surrogate",
                "error": "text or id holds an unpaired UTF-16 surrogate",
                "id": rid.encode("utf-8", "backslashreplace").decode()
                if isinstance(rid, str)
                else rid,
            }
        yield raw


def _read_any(path, text_field, id_field, txt_mode):
    if path == SHIPPED:
        yield from _read_json(str(wiki_json_path()), path, "extract", id_field)
        return
    try:
        if path.endswith((".jsonl", ".jsonl.gz")):
            yield from _read_jsonl(path, text_field, id_field)
        elif path.endswith(".parquet"):
            yield from _read_parquet(path, text_field, id_field)
        elif path.endswith(".arrow"):
            yield from _read_arrow(path, text_field, id_field)
        elif path.endswith(".json"):
            yield from _read_json(path, path, text_field, id_field)
        else:
            yield from _read_txt(path, txt_mode)
    except EOFError as e:  # a compressed stream cut off: what came before it was yielded
        yield {
            "source": path,
            "index": -1,
            "error": f"the file is truncated: its compressed stream ends before its end marker "
            f"(a cut-off download or copy?); the records before the cut were read ({e})",
            "reason": "truncated_file",
        }
    except Exception as e:  # noqa: BLE001 - an unreadable file becomes one reject
        yield {
            "source": path,
            "index": -1,
            "error": f"{type(e).__name__}: {e}",
            "reason": "malformed_record",
        }


@contextlib.contextmanager
def open_input(path: str) -> Iterator:
    """A file's bytes, decompressed. A `.gz` goes through Python's gzip, which raises EOFError
    where the stream is cut off (Beam's decompressor ends there silently, so a truncated file
    would look like a complete one with a bad last line)."""
    plain = CompressionTypes.UNCOMPRESSED
    with FileSystems.open(path, compression_type=plain) as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                yield f
        else:
            yield raw


def _read_jsonl(path, text_field, id_field):
    with open_input(path) as f:
        for i, line in enumerate(iter(f.readline, b""), start=1):
            if not line.strip():
                continue
            base = {"source": path, "index": i}
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                yield base | {"error": str(e), "reason": "invalid_utf8"}
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield base | {"error": f"bad JSON: {e}", "reason": "malformed_record"}
                continue
            if not isinstance(obj, dict):
                yield base | {"error": "line is not a JSON object", "reason": "malformed_record"}
                continue
            yield base | {"id": obj.get(id_field), "text": obj.get(text_field)}


def _batches(path, reader, text_field, id_field):
    index = 0
    for batch in reader:
        names = batch.schema.names
        texts = batch.column(text_field).to_pylist() if text_field in names else None
        ids = batch.column(id_field).to_pylist() if id_field in names else None
        for j in range(batch.num_rows):
            yield {
                "source": path,
                "index": index,
                "id": ids[j] if ids else None,
                "text": texts[j] if texts else None,
            }
            index += 1


def _read_parquet(path, text_field, id_field):
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        pf = pq.ParquetFile(f)
        cols = [c for c in (text_field, id_field) if c in pf.schema_arrow.names]
        yield from _batches(
            path, pf.iter_batches(batch_size=1024, columns=cols), text_field, id_field
        )


def _read_arrow(path, text_field, id_field):
    import pyarrow as pa

    with FileSystems.open(path) as f:
        yield from _batches(path, pa.ipc.open_stream(f), text_field, id_field)


def _read_json(path, source, text_field, id_field):
    """A JSON object {id: text or {text_field: text}} (the shipped sample's layout, sorted by id)
    or a list of records. Loaded whole: use JSONL for large inputs."""
    with FileSystems.open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        for i, key in enumerate(sorted(data)):
            value = data[key]
            text = value.get(text_field) if isinstance(value, dict) else value
            yield {"source": source, "index": i, "id": key, "text": text}
    else:
        for i, obj in enumerate(data):
            obj = obj if isinstance(obj, dict) else {}
            yield {
                "source": source,
                "index": i,
                "id": obj.get(id_field),
                "text": obj.get(text_field),
            }


def _read_txt(path, mode):
    with open_input(path) as f:
        raw = f.read()
    stem = posixpath.basename(path).split(".")[0]
    chunks = raw.split(b"\n") if mode == "line" else [raw]
    for i, chunk in enumerate(chunks, start=1):
        if mode == "line" and not chunk.strip():
            continue
        rid = f"{stem}:{i}" if mode == "line" else stem
        base = {"source": path, "index": i if mode == "line" else 0, "id": rid}
        try:
            yield base | {
                "text": chunk.decode("utf-8").rstrip("\r")
                if mode == "line"
                else chunk.decode("utf-8")
            }
        except UnicodeDecodeError as e:
            yield base | {"error": str(e), "reason": "invalid_utf8"}


def input_bytes(files: list[str]) -> int:
    """Total size of the input files (metadata only: nothing is read)."""
    paths = [str(wiki_json_path()) if f == SHIPPED else f for f in files]
    return sum(m.size_in_bytes for r in FileSystems.match(paths) for m in r.metadata_list)

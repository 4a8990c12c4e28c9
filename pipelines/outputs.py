"""Output layout: DIR/data/train-XXXXX-of-YYYYY.parquet (rows sorted by id, bounded row groups),
DIR/rejects/rejects-XXXXX-of-YYYYY.jsonl, DIR/stats.json, DIR/config.json. Written through
Beam's FileSystems (and Beam's text sink for rejects), so gs:// and s3:// work."""

from __future__ import annotations

import io
import json
import uuid

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from lacy_labels.schema import rows_to_table

DATA_DIR = "data"
REJECTS_PREFIX = "rejects/rejects"
TMP_PREFIX = ".tmp-"  # our own temporary files (write_bytes)
BEAM_TMP = "beam-temp-"  # Beam's file sinks' temporary folders


def shard_name(i: int, n: int) -> str:
    return f"{DATA_DIR}/train-{i:05d}-of-{n:05d}.parquet"


def _mkdirs(path: str) -> None:
    try:
        FileSystems.mkdirs(path)
    except OSError:
        pass  # exists, or an object store without directories


def write_bytes(path: str, data: bytes) -> None:
    """Write via a temporary name and rename, so readers never see a partial file. The name is
    unique to this call: two attempts of one write (a task a runner retries while the first
    attempt is still alive) never write the same temporary file."""
    parent, name = path.rsplit("/", 1)
    _mkdirs(parent)
    tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}-{name}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str):
    with FileSystems.open(path) as f:
        return json.load(f)


def write_shard(
    out_dir: str, shard: int, n_shards: int, rows: list[dict], metadata: dict, row_group: int
) -> str:
    """One Parquet shard, rows sorted by id; returns its path."""
    rows = sorted(rows, key=lambda r: r["id"])
    table = rows_to_table(rows, metadata)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group, compression="zstd")
    path = f"{out_dir}/{shard_name(shard, n_shards)}"
    write_bytes(path, buf.getvalue())
    return path


class WriteRejects(beam.PTransform):
    """Reject dicts -> JSONL shards under DIR/rejects/ (written by the workers; nothing gathers
    them in one place)."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def expand(self, rejects):
        return (
            rejects
            | "ToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
            | "WriteJsonl"
            >> beam.io.WriteToText(
                f"{self.out_dir}/{REJECTS_PREFIX}",
                file_name_suffix=".jsonl",
                shard_name_template="-SSSSS-of-NNNNN",
            )
        )


def write_stats(summary: dict, out_dir: str, metadata: dict, row_group: int) -> None:
    """stats.json, written once by the job; an empty shard too when nothing was labelled, so that
    the output always has the schema."""
    if summary["documents_out"] == 0:
        write_shard(out_dir, 0, 1, [], metadata, row_group)
    write_json(f"{out_dir}/stats.json", summary)


def read_rejects(out_dir: str) -> list[dict]:
    """Every reject of an output (for tests and small outputs: this reads them all)."""
    pattern = f"{out_dir.rstrip('/')}/{REJECTS_PREFIX}-*.jsonl"
    rows = []
    for r in FileSystems.match([pattern]):
        for m in r.metadata_list:
            with FileSystems.open(m.path) as f:
                rows += [json.loads(line) for line in f.read().decode("utf-8").splitlines()]
    return rows


def leftovers(out_dir: str) -> list[str]:
    """Temporary files in an output: ours from attempts that died mid-write (.tmp-*), and the
    folders of Beam's file sinks (beam-temp-*) from a job that failed. A finished lacy run
    leaves none (`remove_leftovers`)."""
    found = (
        m.path for r in FileSystems.match([f"{out_dir.rstrip('/')}/**"]) for m in r.metadata_list
    )
    return sorted({_temporary(p) for p in found} - {None})


def _temporary(path: str) -> str | None:
    """The temporary file or Beam temporary folder that `path` is or lies in; else None."""
    if path.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
        return path
    if f"/{BEAM_TMP}" in path:
        head, tail = path.split(f"/{BEAM_TMP}", 1)
        return f"{head}/{BEAM_TMP}{tail.split('/', 1)[0]}"
    return None


def remove_leftovers(out_dir: str) -> list[str]:
    """Delete what `leftovers` finds; call it only once the job has finished (nothing writes any
    more). Returns what it removed."""
    paths = leftovers(out_dir)
    if paths:
        FileSystems.delete(paths)
    return paths


def prepare_output(out_dir: str, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless `overwrite`, which empties it first."""
    pattern = out_dir.rstrip("/") + "/**"
    existing = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if existing and not overwrite:
        raise FileExistsError(
            f"output directory {out_dir!r} is not empty ({len(existing)} files); "
            "pass --overwrite to replace it"
        )
    if existing:
        FileSystems.delete([out_dir])
    _mkdirs(out_dir)

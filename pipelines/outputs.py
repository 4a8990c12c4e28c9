"""Writing the output (its layout: pipelines.layout): Parquet shards (rows sorted by id, bounded
row groups), rejects as JSONL, stats.json, config.json. Written through Beam's FileSystems (and
Beam's text sink for rejects), so gs:// and s3:// work."""

from __future__ import annotations

import io
import json
import uuid

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from lacy_labels.schema import rows_to_table
from pipelines.layout import REJECTS_PREFIX, TMP_PREFIX, shard_name


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
    them in one place); none when nothing was rejected."""

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
                # no rejects, no file: an empty object cannot be written to S3 by Beam's
                # multipart uploader (S3 refuses a multipart upload of no parts)
                skip_if_empty=True,
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

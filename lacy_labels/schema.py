"""The output contract: one Arrow schema, one row per document, metadata with provenance."""

from __future__ import annotations

import json

import pyarrow as pa

METADATA_KEY = b"lacy"
STRING_COLUMNS = ("pos", "tag", "dep", "ent_type", "ent_iob")

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("char_start", pa.list_(pa.int32()), nullable=False),
        pa.field("char_end", pa.list_(pa.int32()), nullable=False),
        pa.field("word", pa.list_(pa.int32()), nullable=False),
        *[pa.field(c, pa.list_(pa.string()), nullable=False) for c in STRING_COLUMNS],
        pa.field("is_fact", pa.list_(pa.bool_()), nullable=False),
        pa.field("ref_loss", pa.list_(pa.float32()), nullable=False),
        pa.field("delegate", pa.list_(pa.bool_()), nullable=False),
    ]
)
COLUMNS = tuple(SCHEMA.names)
TOKEN_COLUMNS = tuple(c for c in COLUMNS if c not in ("id", "text"))

COLUMN_DOCS = {
    "id": "document id (input id, or a stable hash of the text when the input had none)",
    "text": "the text actually labelled (after cleaning)",
    "input_ids": "reference-tokenizer subword ids, no special tokens",
    "char_start": "start character (code point) offset of each subword in `text`",
    "char_end": "end character offset (exclusive) of each subword in `text`",
    "word": "index of the spaCy token the subword belongs to (-1: none, e.g. whitespace)",
    "pos": "coarse POS (UPOS) of the subword's word ('' when none)",
    "tag": "fine-grained tag of the subword's word ('' when none)",
    "dep": "dependency label of the subword's word ('' when none)",
    "ent_type": "entity type of the subword's word ('' when none)",
    "ent_iob": "entity IOB of the subword's word: B, I, O ('' when none)",
    "is_fact": "the fact proxy flags the subword's word",
    "ref_loss": "-log p(token | start token and all preceding tokens) under the reference model, "
    "in nats; null where undefined",
    "delegate": "the token is a <CALL> target under the labelling rule",
}


def schema_with_metadata(metadata: dict) -> pa.Schema:
    """SCHEMA carrying provenance (spaCy model, tokenizer, reference model, rules) as JSON."""
    return SCHEMA.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


def read_metadata(schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def rows_to_table(rows: list[dict], metadata: dict | None = None) -> pa.Table:
    """Build a table in the contract's schema from row dicts whose per-token values are numpy
    arrays or lists; NaN losses become nulls."""
    import numpy as np

    schema = schema_with_metadata(metadata) if metadata is not None else SCHEMA
    cols = {"id": pa.array([r["id"] for r in rows], pa.string())}
    cols["text"] = pa.array([r["text"] for r in rows], pa.string())
    lengths = np.array([len(r["input_ids"]) for r in rows], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    for name in TOKEN_COLUMNS:
        item_type = schema.field(name).type.value_type
        parts = [np.asarray(r[name]) for r in rows]
        if len(parts) == 0:
            flat = pa.array([], item_type)
        elif pa.types.is_string(item_type):
            flat = pa.array(np.concatenate(parts).astype(object).tolist(), item_type)
        else:
            dtype = {"int32": np.int32, "float": np.float32, "bool": np.bool_}[str(item_type)]
            values = np.concatenate(parts).astype(dtype)
            mask = np.isnan(values) if dtype is np.float32 else None
            flat = pa.array(values, item_type, mask=mask)
        cols[name] = pa.ListArray.from_arrays(offsets, flat)
    return pa.Table.from_pydict(cols, schema=schema)


def validate_table(table: pa.Table) -> None:
    """Raise ValueError unless every per-token column has the same length as input_ids."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    import pyarrow.compute as pc

    n = pc.list_value_length(table["input_ids"])
    for c in TOKEN_COLUMNS:
        if not pc.all(pc.equal(pc.list_value_length(table[c]), n)).as_py() and table.num_rows:
            raise ValueError(f"column {c!r} length disagrees with input_ids")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lacy_labels.facts import FactRule
from lacy_labels.grammar import parse_texts
from lacy_labels.records import add_labels, build_record
from lacy_labels.rules import LabelRule
from lacy_labels.schema import SCHEMA, read_metadata, rows_to_table, validate_table
from lacy_labels.tokens import encode_batch

TEXT = "Marie Curie was born in Warsaw in 1867."


@pytest.fixture(scope="module")
def record(nlp, smol_tok):
    (f,) = parse_texts(nlp, [TEXT])
    ((ids, offs),) = encode_batch(smol_tok, [TEXT])
    return build_record("curie", TEXT, f, ids, offs, FactRule())


def test_record_copies_word_features_onto_subwords(record):
    pieces = [TEXT[s:e] for s, e in zip(record["char_start"], record["char_end"])]
    i = pieces.index(" Warsaw")
    assert record["ent_type"][i] == "GPE" and record["pos"][i] == "PROPN" and record["is_fact"][i]
    j = pieces.index(" was")
    assert not record["is_fact"][j] and record["dep"][j] == "auxpass"
    digits = [k for k, p in enumerate(pieces) if p.strip().isdigit()]
    assert digits and all(record["is_fact"][k] and record["pos"][k] == "NUM" for k in digits)
    assert all(len(record[c]) == len(record["input_ids"]) for c in ("pos", "word", "is_fact"))


def test_table_roundtrip_through_parquet(record, tmp_path):
    loss = np.linspace(0.1, 5.0, len(record["input_ids"])).astype(np.float32)
    loss[0] = np.nan
    row = add_labels(dict(record), loss, LabelRule(), threshold=None)
    empty = {
        k: (v[:0] if hasattr(v, "__len__") and not isinstance(v, str) else v)
        for k, v in row.items()
    } | {"id": "empty", "text": ""}
    table = rows_to_table([row, empty], metadata={"spacy_model": "x", "rule": "lacy"})
    assert table.schema.equals(SCHEMA, check_metadata=False)
    validate_table(table)
    pq.write_table(table, tmp_path / "a.parquet")
    back = pq.read_table(tmp_path / "a.parquet")
    assert read_metadata(back.schema) == {"spacy_model": "x", "rule": "lacy"}
    first = back.to_pylist()[0]
    assert first["ref_loss"][0] is None and first["ref_loss"][1] == pytest.approx(loss[1])
    assert first["delegate"] == row["delegate"].tolist()
    assert back.to_pylist()[1]["input_ids"] == []


def test_validate_table_rejects_lengths_that_disagree(record):
    row = add_labels(dict(record), np.zeros(len(record["input_ids"])), LabelRule(), None)
    table = rows_to_table([row])
    bad = table.set_column(
        table.schema.get_field_index("delegate"),
        "delegate",
        pa.array([[True]], pa.list_(pa.bool_())),
    )
    with pytest.raises(ValueError, match="delegate"):
        validate_table(bad)
    with pytest.raises(ValueError, match="missing columns"):
        validate_table(table.drop_columns(["word"]))

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lacy_labels.validate import clean_text, resolve_duplicates, text_id, validate
from pipelines.listing import SHIPPED, expand_inputs
from pipelines.sources import ReadOptions, read_file


def test_shipped_sample_is_the_default_input():
    (entry,) = expand_inputs(None)
    assert entry.path == SHIPPED and entry.size > 6_000_000
    first = next(read_file(entry))
    assert first["text"] and first["id"] and first["index"] == 0


def test_jsonl_gz_txt_parquet_and_datasets_folders(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "a1", "text": "one"}\n\n{"txt": "x"}\n')
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write('{"id": "b1", "text": "two"}\n')
    (tmp_path / "c.txt").write_text("a whole file\nof text\n")
    pq.write_table(pa.table({"id": ["p1"], "text": ["three"]}), tmp_path / "d.parquet")
    files = expand_inputs(str(tmp_path))
    assert [f.rel for f in files] == ["a.jsonl", "b.jsonl.gz", "c.txt", "d.parquet"]
    recs = [r for f in files for r in read_file(f)]
    assert [(r.get("id"), r.get("text")) for r in recs] == [
        ("a1", "one"),
        (None, None),
        ("b1", "two"),
        ("c.txt", "a whole file\nof text\n"),
        ("p1", "three"),
    ]
    (c,) = expand_inputs(str(tmp_path / "c.txt"))
    lines = list(read_file(c, ReadOptions(txt_mode="line")))
    assert [(r["id"], r["text"]) for r in lines] == [("c.txt:1", "a whole file"),
                                                     ("c.txt:2", "of text")]  # fmt: skip
    assert len(expand_inputs(str(tmp_path / "*.jsonl*"))) == 2


def test_datasets_save_to_disk_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"id": ["x", "y"], "body": ["first", "second"]}).save_to_disk(
        str(tmp_path / "ds")
    )
    files = expand_inputs(str(tmp_path / "ds"))
    assert files and all(f.path.endswith(".arrow") and f.reason is None for f in files)
    recs = [r for f in files for r in read_file(f, ReadOptions(text_field="body"))]
    assert [(r["id"], r["text"]) for r in recs] == [("x", "first"), ("y", "second")]


def test_a_datasets_state_file_cannot_pull_in_other_files(tmp_path):
    """state.json names its data files; an absolute name, a ../ name, a folder or a file that is
    not .arrow is a reject, never read (else lacy-publish would upload it as a document)."""
    import datasets

    (tmp_path / "secret.txt").write_text("a private key")
    ds = tmp_path / "ds"
    datasets.Dataset.from_dict({"id": ["x"], "text": ["first"]}).save_to_disk(str(ds))
    state = json.loads((ds / "state.json").read_text())
    arrow = state["_data_files"][0]["filename"]
    (ds / "notes.txt").write_text("inside, but not a data file")
    names = [arrow, str(tmp_path / "secret.txt"), "../secret.txt", "sub/x.arrow", "notes.txt", 7]
    state["_data_files"] = [{"filename": n} for n in names]
    (ds / "state.json").write_text(json.dumps(state))
    entries = expand_inputs(str(ds))
    assert [e.reason for e in entries] == [None] + ["outside_input"] * 5
    recs = [r for e in entries for r in read_file(e)]
    assert [r.get("text") for r in recs] == ["first"] + [None] * 5
    assert all("a private key" not in json.dumps(r) for r in recs)
    assert "lacy reads only .arrow files named plainly" in recs[1]["error"]


def test_bad_lines_become_raw_errors(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"id": 1, "text": "ok"}\n{not json\n"a string"\n{"text": "\xff\xfe"}\n')
    recs = list(read_file(expand_inputs(str(p))[0]))
    assert [r.get("reason") for r in recs] == [
        None,
        "malformed_record",
        "malformed_record",
        "invalid_utf8",
    ]
    assert [r["index"] for r in recs] == [1, 2, 3, 4]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no input files"):
        expand_inputs(str(tmp_path / "nothing-*.jsonl"))


@pytest.mark.parametrize(
    "raw,reason",
    [
        ({"text": None}, "missing_text"),
        ({}, "missing_text"),
        ({"text": 5}, "text_not_string"),
        ({"text": "  \n\t "}, "empty_text"),
        ({"text": ""}, "empty_text"),
        ({"text": "\x00\x00"}, "empty_text"),
        ({"text": "bad \ud800 half"}, "lone_surrogate"),
        ({"text": "ok", "id": ["list"]}, "bad_id"),
        ({"text": "x" * 11}, "too_long"),
        ({"error": "boom", "reason": "invalid_utf8"}, "invalid_utf8"),
    ],
)
def test_validation_reasons(raw, reason):
    out = validate({"source": "s", "index": 3} | raw, max_chars=10)
    assert out.reason == reason and out.source == "s" and out.index == 3


def test_validation_cleans_and_ids():
    doc = validate({"source": "s", "index": 0, "text": "a\x00b\x07c\td"})
    assert doc["text"] == "a b c\td" and doc["id"] == text_id("a\x00b\x07c\td")
    assert validate({"text": "t", "id": 7})["id"] == "7"
    assert clean_text("x\r\ny") == "x\r\ny"


def test_duplicates_first_by_source_and_index_wins():
    docs = [
        {"id": "a", "text": t, "source": s, "index": i}
        for t, s, i in [("late", "f2", 0), ("early", "f1", 5), ("mid", "f1", 9)]
    ]
    keep, dups = resolve_duplicates("a", docs)
    assert keep["text"] == "early"
    assert [(d.source, d.index, d.reason) for d in dups] == [
        ("f1", 9, "duplicate_id"),
        ("f2", 0, "duplicate_id"),
    ]


def test_truncated_gzip_keeps_the_records_before_the_cut_and_says_so(tmp_path):
    from hostile import truncated_gzip

    expected = truncated_gzip(tmp_path)
    kept = [e.id for e in expected if e.outcome == "ok"]
    assert 5 < len(kept) < 40
    raws = list(read_file(expand_inputs(str(tmp_path / "cut.jsonl.gz"))[0]))
    assert [r["id"] for r in raws[:-1]] == kept
    assert raws[-1]["reason"] == "truncated_file" and "cut off" in raws[-1]["error"]
    reject = validate(raws[-1])
    assert reject.reason == "truncated_file" and "stands for the rest" in reject.detail
    txt = gzip.compress(b"one document, cut off" * 400)
    (tmp_path / "cut.txt.gz").write_bytes(txt[: len(txt) // 2])
    cut = expand_inputs(str(tmp_path / "cut.txt.gz"))[0]
    assert [r["reason"] for r in read_file(cut)] == ["truncated_file"]

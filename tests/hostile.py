"""A generator of hostile input: one folder of files, each kind of trouble a web-scale corpus or
a careless user brings, and what lacy must make of every record in it (a row with its id, or a
reject with its reason). Shared by the reader tests, the default runner's and Flink's.

Every kind is a function that writes its files and returns its expectations; `KINDS` lists
them. The caps they exercise assume the settings of `LABEL_ARGS` (small caps, so that the
"too long" cases stay small files)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lacy_labels.validate import text_id
from pipelines.bounded import record_cap, text_cap

MAX_CHARS = 400_000
ROW_GROUP_BYTES = 1_000_000
LABEL_ARGS = ["--max_chars", str(MAX_CHARS), "--max_row_group_bytes", str(ROW_GROUP_BYTES)]
GOOD = "Ada Lovelace was born in London in 1815."


@dataclass(frozen=True)
class Expect:
    """What one record (index -1: the file or entry itself) of one file must become: "ok" (a row
    with `id`) or a reject reason."""

    file: str
    index: int
    outcome: str
    id: str | None = None


def _lines(root: Path, name: str, lines: list[bytes], end: bytes = b"\n") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + end)
    return path


def _rec(rid, text) -> bytes:
    return json.dumps({"id": rid, "text": text}).encode()


def ok(file, index, rid) -> Expect:
    return Expect(file, index, "ok", rid)


# -- JSON lines ----------------------------------------------------------------------------------


def deep_nesting(root):
    """The issue's case: a line nested 5,000 levels deep in the middle of six."""
    lines = [_rec(f"deep{i}", f"Line {i} was written in Oslo.") for i in range(6)]
    lines[2] = b'{"id": "deep", "text": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    _lines(root, "deep.jsonl", lines)
    return [ok("deep.jsonl", i + 1, f"deep{i}") for i in (0, 1, 3, 4, 5)] + [
        Expect("deep.jsonl", 3, "too_complex")
    ]


def record_level(root):
    """Records the validator rejects, between good ones."""
    cases = [
        (_rec("good", GOOD), "ok", "good"),
        (b'{"id": "broken", "text": "no closing', "malformed_record", None),
        (b'{"id": "latin1", "text": "caf\xe9"}', "invalid_utf8", None),
        (json.dumps({"id": "notext"}).encode(), "missing_text", None),
        (_rec("int", 42), "text_not_string", None),
        (_rec("obj", {"nested": "text"}), "text_not_string", None),
        (_rec("empty", ""), "empty_text", None),
        (_rec("spaces", " \n\t "), "empty_text", None),
        (b'{"id": "surrogate", "text": "half \\ud800 pair"}', "lone_surrogate", None),
        (b'["an", "array"]', "malformed_record", None),
        (b'"a string"', "malformed_record", None),
        (b'{"id": "raw-nul", "text": "a\x00b"}', "malformed_record", None),
        (_rec("x" * 10_000, "A very long id."), "bad_id", None),
        (b'{"id": NaN, "text": "A NaN id."}', "bad_id", None),
        (b'{"id": 1.5, "text": "A float id."}', "bad_id", None),
        (
            b'{"id": ' + b"9" * 5000 + b', "text": "An id of 5,000 digits."}',
            "malformed_record",
            None,
        ),  # fmt: skip
        (_rec(7, "An integer id, written in 2024."), "ok", "7"),
        (_rec("ctrl", "NUL\x00 and \x07bell in Oslo"), "ok", "ctrl"),
        (_rec("odd", "\ufeff👩‍👩‍👧 🇫🇷 東京 שלום e\u0301 \U00040000 end"), "ok", "odd"),
        (b'{"id": "crlf", "text": "Windows line end."}\r', "ok", "crlf"),
    ]
    _lines(root, "records.jsonl", [c[0] for c in cases])
    return [Expect("records.jsonl", i + 1, c[1], c[2]) for i, c in enumerate(cases)]


def blank_lines_and_no_id(root):
    text = "No id at all, written in 2024."
    _lines(root, "blanks.jsonl", [b"", b"   ", json.dumps({"text": text}).encode(), b"\t"],
           end=b"")  # fmt: skip
    return [ok("blanks.jsonl", 3, text_id(text))]


def duplicates(root):
    _lines(
        root, "dups.jsonl", [_rec("dup", "First copy in Paris."), _rec("dup", "Second in Rome.")]
    )
    return [ok("dups.jsonl", 1, "dup"), Expect("dups.jsonl", 2, "duplicate_id")]


def utf8_bom(root):
    _lines(root, "bom.jsonl", [b"\xef\xbb\xbf" + _rec("bom", "A file that starts with a BOM.")])
    return [ok("bom.jsonl", 1, "bom")]


def utf16_file(root):
    body = (_rec("u16a", "one") + b"\n").decode().encode("utf-16")
    (root / "utf16.jsonl").write_bytes(body)
    # UTF-16's newline is b"\n\x00": the line after it is the NUL byte left over
    return [Expect("utf16.jsonl", 1, "invalid_utf8"), Expect("utf16.jsonl", 2, "malformed_record")]


def mixed_encodings(root):
    lines = [
        _rec("utf8", "Zürich in UTF-8."),
        '{"id": "cp1252", "text": "Zürich in “cp1252”."}'.encode("cp1252"),
        '{"id": "sjis", "text": "東京"}'.encode("shift_jis"),
        _rec("utf8b", "Kraków in UTF-8."),
    ]
    _lines(root, "mixed.jsonl", lines)
    return [ok("mixed.jsonl", 1, "utf8"), Expect("mixed.jsonl", 2, "invalid_utf8"),
            Expect("mixed.jsonl", 3, "invalid_utf8"), ok("mixed.jsonl", 4, "utf8b")]  # fmt: skip


def billion_laughs(root):
    """Few bytes that parse into many objects: 300,000 empty containers in one line."""
    _lines(root, "laughs.jsonl", [
        b'{"id": "laughs", "text": "t", "x": [' + b"[],{}," * 150_000 + b"0]}",
        _rec("after-laughs", "The record after the bomb."),
    ])  # fmt: skip
    return [Expect("laughs.jsonl", 1, "too_complex"), ok("laughs.jsonl", 2, "after-laughs")]


def overlong_line(root):
    """A line longer than any record may be, between good ones (gzipped: a small file)."""
    big = b'{"id": "big", "text": "' + b"x" * (record_cap(MAX_CHARS) + 10) + b'"}'
    with gzip.open(root / "overlong.jsonl.gz", "wb", compresslevel=1) as f:
        f.write(_rec("before-big", "Before the long line.") + b"\n" + big + b"\n")
        f.write(_rec("after-big", "After the long line.") + b"\n")
    return [ok("overlong.jsonl.gz", 1, "before-big"), Expect("overlong.jsonl.gz", 2, "too_long"),
            ok("overlong.jsonl.gz", 3, "after-big")]  # fmt: skip


def text_over_max_chars(root):
    """Under the byte cap, over --max_chars: rejected by its length in characters."""
    _lines(root, "long.jsonl", [_rec("long", "y" * (MAX_CHARS + 1))])
    return [Expect("long.jsonl", 1, "too_long")]


def truncated_gzip(root):
    texts = [f"Record {i} of the cut file was written in Berlin in {1900 + i}." for i in range(40)]
    body = "".join(json.dumps({"id": f"cut{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    whole = gzip.compress(body.encode())
    data = whole[: len(whole) // 2]
    (root / "cut.jsonl.gz").write_bytes(data)
    seen = zlib.decompressobj(31).decompress(data).decode("utf-8", "ignore").count("\n")
    return [ok("cut.jsonl.gz", i + 1, f"cut{i}") for i in range(seen)] + [
        Expect("cut.jsonl.gz", -1, "truncated_file")
    ]


def bad_checksum_gzip(root):
    """A gzip whose CRC (its last 8 bytes) is wrong: the records decode, the stream does not end
    right."""
    data = bytearray(gzip.compress(_rec("crc", "A record in a gzip with a bad CRC.") + b"\n"))
    data[-8] ^= 0xFF
    (root / "crc.jsonl.gz").write_bytes(bytes(data))
    return [ok("crc.jsonl.gz", 1, "crc"), Expect("crc.jsonl.gz", -1, "corrupt_file")]


def zero_length_gzip(root):
    (root / "zero.jsonl.gz").write_bytes(b"")
    return [Expect("zero.jsonl.gz", -1, "truncated_file")]


def empty_files(root):
    (root / "empty.jsonl").write_bytes(b"")
    (root / "blank.jsonl").write_bytes(b"\n  \n\n")
    (root / "empty.json").write_bytes(b"[ ]")
    return [Expect(n, -1, "empty_file") for n in ("empty.jsonl", "blank.jsonl", "empty.json")]


# -- JSON documents ------------------------------------------------------------------------------


def json_array(root):
    members = [{"id": "ja1", "text": "The first member."}, "a string", {"id": "ja2", "text": 3},
               {"id": "ja3", "text": "The third member."}]  # fmt: skip
    (root / "array.json").write_text(json.dumps(members))
    return [ok("array.json", 0, "ja1"), Expect("array.json", 1, "malformed_record"),
            Expect("array.json", 2, "text_not_string"), ok("array.json", 3, "ja3")]  # fmt: skip


def json_object(root):
    (root / "object.json").write_text(
        json.dumps({"jo1": "A value as text.", "jo2": {"text": "A value as a record."}})
    )
    return [ok("object.json", 0, "jo1"), ok("object.json", 1, "jo2")]


def json_cut_off(root):
    """A JSON array cut off mid-member: the members before it are read."""
    text = json.dumps([{"id": "jc1", "text": "Before the cut."}, {"id": "jc2", "text": "Cut"}])
    (root / "cutoff.json").write_text(text[: text.index("Cut")])
    return [ok("cutoff.json", 0, "jc1"), Expect("cutoff.json", 1, "malformed_record"),
            Expect("cutoff.json", -1, "truncated_file")]  # fmt: skip


# -- plain text ----------------------------------------------------------------------------------


def txt_files(root):
    """Ids are paths relative to the input root: same names in two folders, dotted names."""
    for name in ("a/notes.txt", "b/notes.txt", "report.2023.txt", "report.2024.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"The file {name} was written in Geneva.")
    (root / "bom.txt").write_bytes(b"\xef\xbb\xbfA text file with a byte order mark.")
    (root / "bad.txt").write_bytes(b"\xff\xfe not utf-8")
    (root / "empty.txt").write_bytes(b"")
    names = ("a/notes.txt", "b/notes.txt", "report.2023.txt", "report.2024.txt", "bom.txt")
    return [ok(n, 0, n) for n in names] + [
        Expect("bad.txt", 0, "invalid_utf8"), Expect("empty.txt", 0, "empty_text")
    ]  # fmt: skip


def txt_too_big(root):
    (root / "huge.txt").write_bytes(b"z" * (text_cap(MAX_CHARS) + 1))
    return [Expect("huge.txt", 0, "too_long")]


# -- Parquet -------------------------------------------------------------------------------------


def parquet_files(root):
    pq.write_table(pa.table({"id": ["p1", "p2", "p3"], "text": ["Parquet in Lyon.", None,
                                                               "w" * (MAX_CHARS + 5)]}),
                   root / "values.parquet")  # fmt: skip
    pq.write_table(pa.table({"id": ["w1", "w2"], "text": [1, 2]}), root / "wrongtype.parquet")
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    return [ok("values.parquet", 0, "p1"), Expect("values.parquet", 1, "missing_text"),
            Expect("values.parquet", 2, "too_long"),
            Expect("wrongtype.parquet", 0, "text_not_string"),
            Expect("wrongtype.parquet", 1, "text_not_string"),
            Expect("corrupt.parquet", -1, "unreadable_file")]  # fmt: skip


def parquet_big_row_group(root):
    """A row group over --max_row_group_bytes is not decoded; the next row group is read."""
    texts = [str(i) * 300_000 for i in range(4)] + ["A small row group in Turin."]
    ids = [f"rg{i}" for i in range(5)]
    pq.write_table(pa.table({"id": ids, "text": texts}), root / "groups.parquet",
                   row_group_size=4, compression="zstd")  # fmt: skip
    return [Expect("groups.parquet", i, "too_long") for i in range(4)] + [
        ok("groups.parquet", 4, "rg4")
    ]


# -- what is not a file to read ------------------------------------------------------------------


def unsupported(root):
    for name in ("table.csv", "dump.jsonl.zst", "dolma.json.gz", "README"):
        (root / name).write_bytes(b"id,text\n1,hello\n")
    return [Expect(n, -1, "unsupported_file")
            for n in ("table.csv", "dump.jsonl.zst", "dolma.json.gz", "README")]  # fmt: skip


def special_files(root):
    """A symlink to /dev/zero, a FIFO (which would block a reader forever), a socket, a symlink
    to a folder, a loop, a broken link."""
    os.symlink("/dev/zero", root / "zero.jsonl")
    os.mkfifo(root / "fifo.jsonl")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.jsonl"))
    sock.close()
    (root / "realdir").mkdir()
    os.symlink(root / "realdir", root / "linkdir")
    os.symlink("loop.jsonl", root / "loop.jsonl")
    os.symlink("/nonexistent/file.jsonl", root / "broken.jsonl")
    return [Expect("zero.jsonl", -1, "not_a_regular_file"),
            Expect("fifo.jsonl", -1, "not_a_regular_file"),
            Expect("sock.jsonl", -1, "not_a_regular_file"),
            Expect("linkdir", -1, "not_a_regular_file"),
            Expect("loop.jsonl", -1, "unreadable_file"),
            Expect("broken.jsonl", -1, "unreadable_file")]  # fmt: skip


def bad_file_name(root):
    os.close(os.open(os.path.join(os.fsencode(root), b"name\xff.jsonl"), os.O_CREAT | os.O_WRONLY))
    return [Expect("name\\xff.jsonl", -1, "bad_file_name")]


def symlink_to_file(root):
    """A symlink to a regular file is followed (as `cp -L` would)."""
    target = root.parent / "elsewhere.jsonl"
    target.write_bytes(_rec("linked", "Read through a symlink in Bergen.") + b"\n")
    os.symlink(target, root / "linked.jsonl")
    return [ok("linked.jsonl", 1, "linked")]


KINDS = (
    deep_nesting, record_level, blank_lines_and_no_id, duplicates, utf8_bom, utf16_file,
    mixed_encodings, billion_laughs, overlong_line, text_over_max_chars, truncated_gzip,
    bad_checksum_gzip, zero_length_gzip, empty_files, json_array, json_object, json_cut_off,
    txt_files, txt_too_big, parquet_files, parquet_big_row_group, unsupported, special_files,
    bad_file_name, symlink_to_file,
)  # fmt: skip


def make_hostile(root: Path) -> list[Expect]:
    """Write every kind into root/in; return what must become of each record."""
    folder = root / "in"
    folder.mkdir(parents=True)
    return [e for kind in KINDS for e in kind(folder)]


def rel(source: str, root: Path) -> str:
    """A reject's source as the path relative to the input folder."""
    return source[len(str(root / "in")) + 1 :]


def check_output(root: Path, expected: list[Expect], rows: list[dict], rejects: list[dict],
                 stats: dict) -> None:  # fmt: skip
    """Every record accounted for exactly once, as expected: the rows by id, the rejects by
    (file, index, reason); every reject has a reason and a detail; the counts add up, in total
    and per file."""
    want_rows = sorted(e.id for e in expected if e.outcome == "ok")
    assert sorted(r["id"] for r in rows) == want_rows
    got = sorted((rel(r["source"], root), r["index"], r["reason"]) for r in rejects)
    want = sorted((e.file, e.index, e.outcome) for e in expected if e.outcome != "ok")
    assert got == want
    assert all(r["reason"] and r["detail"] for r in rejects)
    assert stats["documents_in"] == len(expected) == len(rows) + len(rejects)
    assert stats["documents_out"] + stats["documents_rejected"] == stats["documents_in"]
    by_file = {}
    for e in expected:
        by_file[e.file] = by_file.get(e.file, 0) + 1
    files = {e.file for e in expected}
    ids_of = {e.id: e.file for e in expected if e.outcome == "ok"}
    for f in files:
        n = sum(1 for r in rows if ids_of[r["id"]] == f)
        n += sum(1 for r in rejects if rel(r["source"], root) == f)
        assert n == by_file[f], f

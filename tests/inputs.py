"""Inputs and helpers shared by the pipeline tests (the default runner's and Flink's)."""

import gzip
import json
import zlib


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def hostile_records(tmp_path):
    lines = [
        json.dumps({"id": "good", "text": "Ada Lovelace was born in London in 1815."}).encode(),
        b'{"id": "broken", "text": "no closing',
        b'{"id": "latin1", "text": "caf\xe9"}',
        json.dumps({"id": "notext"}).encode(),
        json.dumps({"id": "int", "text": 42}).encode(),
        json.dumps({"id": "empty", "text": ""}).encode(),
        json.dumps({"id": "spaces", "text": " \n\t "}).encode(),
        b'{"id": "surrogate", "text": "half \\ud800 pair"}',
        json.dumps({"id": "dup", "text": "First copy in Paris."}).encode(),
        json.dumps({"id": "dup", "text": "Second copy in Rome."}).encode(),
        json.dumps({"text": "No id at all, written in 2024."}).encode(),
        json.dumps({"id": "ctrl", "text": "NUL\x00 and \x07bell\x1b and \x04 in Oslo"}).encode(),
        json.dumps({"id": "token20k", "text": "x" * 20_000}).encode(),
        json.dumps({"id": "doc300k", "text": "Rome is in Italy. " * 16_667}).encode(),
        json.dumps(
            {"id": "odd", "text": "\ufeff👩‍👩‍👧 🇫🇷 東京 שלום e\u0301 \U00040000 end"}
        ).encode(),
        b'["an", "array"]',
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in/hostile.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "in/bad.txt").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "in/corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    kept = write_truncated_gz(tmp_path / "in/cut.jsonl.gz")
    return len(lines) + 2 + len(kept) + 1


def write_truncated_gz(path) -> list[str]:
    """A .jsonl.gz cut off halfway (a broken download); returns the ids of the whole lines
    before the cut."""
    texts = [f"Record {i} of the cut file was written in Berlin in {1900 + i}." for i in range(40)]
    body = "".join(json.dumps({"id": f"cut{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    data = gzip.compress(body.encode())[: len(gzip.compress(body.encode())) // 2]
    path.write_bytes(data)
    seen = zlib.decompressobj(31).decompress(data).decode("utf-8", "ignore")
    return [f"cut{i}" for i in range(seen.count("\n"))]

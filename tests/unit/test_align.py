import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lacy_labels.align import align_subwords, char_to_word
from lacy_labels.grammar import parse_texts
from lacy_labels.tokens import encode_batch, replace_unencodable, unencodable_chars

HARD = {
    "leading_space": "Paris is  the capital of France.",
    "crlf": "line one\r\nline two\r\n\r\nend",
    "nul_control": "a\x00b \x01\x07 c\x1b[0m d",
    "emoji_zwj_flags": "family 👩‍👩‍👧 flag 🇫🇷🇩🇪 thumbs 👍🏽!",
    "cjk": "東京は日本の首都です。 Tokyo 東京",
    "rtl": "Hebrew שלום עולם and Arabic مرحبا بالعالم.",
    "combining": "e\u0301cole cafe\u0301 n\u0303 Z\u0351\u0352algo",
    "zero_width": "zero\u200bwidth\u200c joiner\u200d here\u2060",
    "bom": "\ufeffBOM at start and \ufeff in the middle",
    "nbsp_tabs": "tab\tseparated\u00a0nbsp\u2003em  space",
}


def word_spans_regex(text):
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return (
        np.array([s for s, _ in spans], dtype=np.int32),
        np.array([e for _, e in spans], dtype=np.int32),
    )


def check_properties(text, offsets, word, starts, ends):
    offsets = np.asarray(offsets).reshape(-1, 2)
    covered = np.zeros(len(text), dtype=bool)
    for s, e in offsets:
        covered[s:e] = True
    for i, ch in enumerate(text):
        if not ch.isspace():
            assert covered[i], f"character {i} {ch!r} not covered"
    assert (np.diff(offsets[:, 0]) >= 0).all(), "spans go backwards"
    w = word[word >= 0]
    assert (np.diff(w) >= 0).all(), "word indices go backwards"
    for (s, e), wi in zip(offsets, word):
        if wi < 0:
            continue
        if e > s:
            assert s < ends[wi] and starts[wi] < e, "subword does not overlap its word"
        else:
            assert starts[wi] <= s < ends[wi]


@pytest.mark.parametrize("name", sorted(HARD))
@pytest.mark.parametrize("tokenizer", ["smol_tok", "gpt2_tok"])
def test_hard_cases_with_spacy_and_real_tokenizers(name, tokenizer, nlp, request):
    tok = request.getfixturevalue(tokenizer)
    text = replace_unencodable(HARD[name], tok)
    (f,) = parse_texts(nlp, [text])
    ((ids, offsets),) = encode_batch(tok, [text])
    word = align_subwords(text, offsets, f.start, f.end)
    assert len(word) == len(ids)
    check_properties(text, offsets, word, f.start, f.end)
    # A subword made only of whitespace has no word.
    for (s, e), wi in zip(offsets, word):
        if e > s and text[s:e].isspace():
            assert wi == -1


def test_leading_space_subword_maps_to_following_word():
    text = "Hello world"
    starts, ends = np.array([0, 6]), np.array([5, 11])
    assert align_subwords(text, np.array([[0, 5], [5, 11]]), starts, ends).tolist() == [0, 1]


def test_byte_pieces_sharing_one_character_share_its_word():
    text = "a 🇫🇷"
    starts, ends = np.array([0, 2]), np.array([1, 4])
    offs = np.array([[0, 1], [1, 3], [2, 3], [2, 3], [3, 4], [3, 4]])
    assert align_subwords(text, offs, starts, ends).tolist() == [0, 1, 1, 1, 1, 1]


def test_subword_over_two_words_takes_majority_then_earlier():
    text = "don't"
    starts, ends = np.array([0, 2]), np.array([2, 5])  # spaCy: "do" + "n't"
    assert align_subwords(text, np.array([[0, 3], [3, 5]]), starts, ends).tolist() == [0, 1]
    assert align_subwords(text, np.array([[1, 5]]), starts, ends).tolist() == [1]
    assert align_subwords(text, np.array([[1, 3]]), starts, ends).tolist() == [0]  # tie


def test_whitespace_and_empty_spans():
    text = "a  b"
    starts, ends = np.array([0, 3]), np.array([1, 4])
    offs = np.array([[1, 3], [3, 3], [2, 2], [0, 0]])
    assert align_subwords(text, offs, starts, ends).tolist() == [-1, 1, -1, 0]


def test_char_to_word_marks_whitespace_inside_words():
    owner = char_to_word("a b\tc", np.array([0]), np.array([5]))
    assert owner.tolist() == [0, -1, 0, -1, 0]


unicode_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=0, max_size=80)
mixed_text = st.lists(
    st.one_of(
        st.sampled_from(list(HARD.values())),
        unicode_text,
        st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\u200b", "\ufeff", "\x00"]),
    ),
    max_size=6,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mixed_text)
def test_properties_on_generated_unicode(text, smol_tok, gpt2_tok):
    for tok in (smol_tok, gpt2_tok):
        text = replace_unencodable(text, tok)
        starts, ends = word_spans_regex(text)
        ((ids, offsets),) = encode_batch(tok, [text])
        word = align_subwords(text, offsets, starts, ends)
        check_properties(text, offsets, word, starts, ends)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mixed_text)
def test_properties_with_spacy_words(text, nlp, smol_tok):
    text = replace_unencodable(text, smol_tok)
    (f,) = parse_texts(nlp, [text])
    ((ids, offsets),) = encode_batch(smol_tok, [text])
    check_properties(text, offsets, align_subwords(text, offsets, f.start, f.end), f.start, f.end)


def test_bytes_missing_from_the_vocabulary_are_found_and_replaced(smol_tok, gpt2_tok):
    # SmolLM2's byte-level vocabulary lacks a few bytes (e.g. 0x04 and the lead byte 0xF1): its
    # tokenizer silently drops them, and its own offsets shift. GPT-2's vocabulary has all 256.
    text = "a\x04b \U00040000:"
    assert unencodable_chars(text, smol_tok).tolist() == [1, 4]
    assert len(unencodable_chars(text, gpt2_tok)) == 0
    ((ids, offsets),) = encode_batch(smol_tok, [text])
    assert offsets.tolist()[-1] == [5, 6]  # ':' keeps its true span despite the dropped bytes
    clean = replace_unencodable(text, smol_tok)
    assert clean == "a\ufffdb \ufffd:"
    ((_, offsets),) = encode_batch(smol_tok, [clean])
    check_properties(
        clean,
        offsets,
        align_subwords(clean, offsets, *word_spans_regex(clean)),
        *word_spans_regex(clean),
    )


def test_special_token_strings_in_text_are_plain_text(smol_tok):
    ((ids, _),) = encode_batch(smol_tok, ["<|endoftext|> and <|im_start|>"])
    assert 0 not in ids.tolist() and 1 not in ids.tolist()

import numpy as np

from lacy_labels.grammar import parse_texts, spacy_identity, split_for_parse

SENT = "Marie Curie was born in Warsaw in 1867. She won two Nobel Prizes."


def test_features_are_plain_arrays_matching_the_text(nlp):
    (f,) = parse_texts(nlp, [SENT])
    words = [SENT[s:e] for s, e in zip(f.start, f.end)]
    assert words[:6] == ["Marie", "Curie", "was", "born", "in", "Warsaw"]
    assert f.start.dtype == np.int32 and f.head.dtype == np.int32
    i = words.index("Warsaw")
    assert f.pos[i] == "PROPN" and f.ent_type[i] == "GPE" and f.ent_iob[i] == "B"
    assert f.ent_iob[words.index("was")] == "O" and f.ent_type[words.index("was")] == ""
    assert f.dep[words.index("born")] == "ROOT"
    assert ((f.head >= 0) & (f.head < len(f))).all()
    assert f.tag[words.index("born")] == "VBN"


def test_unused_components_are_disabled(nlp):
    assert "lemmatizer" not in nlp.pipe_names
    assert {"tagger", "parser", "ner", "attribute_ruler"} <= set(nlp.pipe_names)
    ident = spacy_identity(nlp)
    assert ident["spacy_model_version"].startswith("3.8")


def test_long_text_is_parsed_in_pieces_with_global_offsets(nlp):
    text = " ".join([SENT] * 40)
    (whole,) = parse_texts(nlp, [text])
    (pieced,) = parse_texts(nlp, [text], max_parse_chars=300)
    for f in (whole, pieced):
        assert [text[s:e] for s, e in zip(f.start, f.end)][:3] == ["Marie", "Curie", "was"]
        assert ((f.head >= 0) & (f.head < len(f))).all()
    assert len(pieced) >= len(whole) - 40
    # Every word of the pieced parse lies in the text at its offsets, in order.
    assert (np.diff(pieced.start) > 0).all()
    assert "".join(text[s:e] for s, e in zip(pieced.start, pieced.end)) == text.replace(" ", "")


def test_split_for_parse_covers_text_exactly():
    text = ("word " * 50 + "\n") * 20 + "x" * 500
    pieces = split_for_parse(text, 120)
    assert "".join(p for _, p in pieces) == text
    assert all(len(p) <= 120 for _, p in pieces)
    assert [o for o, _ in pieces] == list(np.cumsum([0] + [len(p) for _, p in pieces[:-1]]))


def test_empty_and_whitespace_texts(nlp):
    empty, space = parse_texts(nlp, ["", "  \n "])
    assert len(empty) == 0
    assert set(space.pos) <= {"SPACE"}

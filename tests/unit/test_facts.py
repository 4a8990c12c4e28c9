import numpy as np
import pytest

from lacy_labels.facts import FactRule
from lacy_labels.grammar import WordFeatures


def words(pos, ent_iob, ent_type, dep=None):
    n = len(pos)
    arr = lambda v: np.array(v, dtype=object)  # noqa: E731
    z = np.zeros(n, dtype=np.int32)
    return WordFeatures(
        z, z, arr(pos), arr(pos), arr(dep or ["dep"] * n), z, arr(ent_type), arr(ent_iob)
    )


W = words(
    pos=["PROPN", "VERB", "NUM", "NOUN", "NOUN", "SPACE", "ADJ"],
    ent_iob=["B", "O", "O", "B", "I", "O", "O"],
    ent_type=["PERSON", "", "", "ORG", "ORG", "", ""],
    dep=["nsubj", "ROOT", "nummod", "dobj", "dobj", "dep", "attr"],
)


def test_default_rule_entities_propn_num():
    assert FactRule().word_is_fact(W).tolist() == [True, False, True, True, True, False, False]


def test_rule_is_data():
    r = FactRule(entity_types=("PERSON",), pos=(), deps=("attr",))
    assert r.word_is_fact(W).tolist() == [True, False, False, False, False, False, True]
    r2 = FactRule.from_dict(r.to_dict())
    assert r2 == r
    assert FactRule(use_entities=False, pos=("NUM",)).word_is_fact(W).tolist() == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown fact-rule keys"):
        FactRule.from_dict({"entity": ["PERSON"]})


def test_space_is_never_a_fact():
    w = words(pos=["SPACE"], ent_iob=["I"], ent_type=["ORG"])
    assert not FactRule().word_is_fact(w).any()


def test_function_words_are_not_facts_even_inside_an_entity():
    """ "the Summer Olympics", "University of Oslo": the determiner and the adposition inside the
    entity span are not facts by default; `exclude_pos=()` counts them as before."""
    w = words(
        pos=["DET", "PROPN", "PROPN", "PROPN", "ADP", "PROPN", "PUNCT", "NUM"],
        ent_iob=["B", "I", "I", "B", "I", "I", "B", "I"],
        ent_type=["EVENT", "EVENT", "EVENT", "ORG", "ORG", "ORG", "DATE", "DATE"],
    )
    assert FactRule().word_is_fact(w).tolist() == [
        False,
        True,
        True,
        True,
        False,
        True,
        False,
        True,
    ]
    assert FactRule(exclude_pos=()).word_is_fact(w).all()
    assert FactRule.from_dict(FactRule().to_dict()) == FactRule()

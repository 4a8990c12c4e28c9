"""The fact world: span bookkeeping, the metrics against hand-computed values, and a tiny world
run end to end through the real pipeline, trainer and cascade code."""

import random

import numpy as np
import pytest

from bench import factworld as fw


def test_render_records_exact_value_and_choice_spans():
    rng = random.Random(0)
    text, spans = fw.render(
        "{name} {grew up|was raised} in {value}.", "Ada Byron", "Lyon", "city", rng
    )
    assert text in ("Ada Byron grew up in Lyon.", "Ada Byron was raised in Lyon.")
    (ns, ne, nk, _), (cs, ce, ck, _), (vs, ve, vk, va) = spans
    assert (nk, text[ns:ne]) == ("name", "Ada Byron")
    assert ck == "choice" and text[cs:ce] in ("grew up", "was raised")
    assert (vk, va, text[vs:ve]) == ("value", "city", "Lyon")


@pytest.mark.parametrize("path", [fw.DEFAULT_WORLD, fw.SECOND_WORLD])
def test_biographies_state_every_attribute_once_among_fillers(path):
    world = fw.load_world(path) | {"people": 30, "held_out": 10}
    corpus = fw.build_corpus(world)
    assert len(corpus["docs"]["train"]) == 20 * world["bios_per_person"]
    person = corpus["people"][0]
    for j in range(world["bios_per_person"]):
        doc = corpus["docs"]["train"][j]
        values = [
            (doc["text"][s:e], a) for s, e, k, a in corpus["spans"][doc["id"]] if k == "value"
        ]
        assert sorted(a for _, a in values) == sorted(world["attributes"])
        assert all(person["facts"][a] == v for v, a in values)
        assert (
            doc["text"].count(person["name"]) == len(world["attributes"]) + world["fillers_per_bio"]
        )
    bios = [d["text"] for d in corpus["docs"]["train"][:2]]
    assert bios[0] != bios[1]  # templates, order and choices drawn per biography


def test_token_classes_follow_character_overlap():
    # "Ada was born in Lyon." tokens: "Ada", " was", " born", " in", " Lyon", "."
    start, end = [0, 3, 7, 12, 15, 20], [3, 7, 12, 15, 20, 21]
    spans = [(16, 20, "value", "city"), (4, 12, "choice", None)]
    assert fw.token_classes(start, end, spans).tolist() == [0, 2, 2, 0, 1, 0]


def test_oracle_metrics_by_hand():
    score = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.0])
    slm_ok = np.array([False, False, True, False, False, True])
    cls = np.array([1, 2, 1, 1, 0, 0])
    r = fw.oracle(score, slm_ok, cls, budget=0.5)  # calls on positions 0, 1, 3
    assert r == {"value_accuracy": 1.0, "calls_on_values": 0.6667, "calls_on_choices": 0.3333,
                 "calls_elsewhere": 0.0}  # fmt: skip
    r = fw.oracle(score, slm_ok, cls, budget=1 / 6)  # calls on position 0 only
    assert r["value_accuracy"] == round(2 / 3, 4) and r["calls_on_values"] == 1.0
    assert fw.threshold_at(score, 0.5) == 0.7


def test_factscore_by_hand():
    gen = [
        {"p_call": 0.9, "stated": "Porto", "truth": "Lyon"},  # called: right
        {"p_call": 0.1, "stated": "Lyon", "truth": "Lyon"},  # right
        {"p_call": 0.2, "stated": "Porto", "truth": "Lyon"},  # hallucinated
        {"p_call": 0.3, "stated": None, "truth": "Lyon"},  # states no value
    ]
    assert fw.factscore(gen, "p_call", 0.5) == {"factscore": round(2 / 3, 4), "hallucinated": 1,
                                                "right": 2, "call_rate": 0.25,
                                                "no_value_rate": 0.25}  # fmt: skip
    assert fw.stated_value(" Lyonnais cuisine", ["Lyon"]) is None
    assert fw.stated_value(" 1934. She", ["193", "1934"]) == "1934"


def test_verdict_asks_for_a_margin_beyond_seed_noise():
    def runs(key_values):
        return [dict.fromkeys(fw.CLAIMS, v) | {"calls_on_choices@values": c} for v, c in key_values]

    def with_baselines(arm, base):
        return [r | {fw.baseline_of(m): base for m in fw.CLAIMS} for r in arm]

    lacy = with_baselines(runs([(0.60, 0.02), (0.62, 0.02), (0.64, 0.02)]), 0.3)  # 0.62 ± 0.02
    close = with_baselines(runs([(0.58, 0.2), (0.59, 0.2), (0.60, 0.2)]), 0.3)  # 0.59 ± 0.01
    far = with_baselines(runs([(0.40, 0.01), (0.50, 0.01), (0.45, 0.01)]), 0.59)  # 0.45 ± 0.05
    v = fw.verdict({"lacy": lacy, "loss": close, "rho": far})
    assert v["value_accuracy@values"] == ["loss"]  # 0.60 > 0.60 fails; 0.60 > 0.50 holds
    assert v["fewer_calls_on_choices_than"] == {"loss": True}
    v = fw.verdict({"lacy": lacy, "rho": [r | {fw.baseline_of(m): 0.61 for m in fw.CLAIMS}
                                           for r in far]})  # fmt: skip
    assert v["gen_factscore"] == ["rho (uncertainty)"]


def test_label_kinds_split_values_and_name_mentions():
    from bench.labels import KINDS, token_kinds

    # "Ada Lee was born in Ghent. Ada Lee grew up there." by hand-made token offsets
    bounds = [(0, 3), (3, 7), (7, 11), (11, 16), (16, 19), (19, 22), (22, 25), (25, 26),
              (26, 30), (30, 34), (34, 40)]  # fmt: skip
    row = {"char_start": [a for a, _ in bounds], "char_end": [b for _, b in bounds]}
    spans = [(0, 7, "name", None), (20, 25, "value", "birth_city"), (27, 34, "name", None),
             (35, 40, "choice", None)]  # fmt: skip
    got = [KINDS[k] for k in token_kinds(row, spans)]
    assert got == ["name_first"] * 2 + ["other"] * 3 + ["value_first", "value_rest", "other"] + [
        "name_again",
        "name_again",
        "choice",
    ]

"""The packed form records take between pipeline stages: exact round trips, smaller than Beam's
default coder, clear errors."""

import numpy as np
import pytest
from apache_beam.coders import registry

from lacy_labels import codec
from lacy_labels.annotate import Annotator
from lacy_labels.records import add_labels
from lacy_labels.rules import LabelRule


@pytest.fixture(scope="module")
def records(smol_tok, wiki_docs):
    recs = Annotator(smol_tok).annotate(wiki_docs[:20])
    rng = np.random.default_rng(0)
    out = []
    for i, r in enumerate(recs):
        loss = rng.gamma(1.0, 2.0, len(r["input_ids"])).astype(np.float32)
        loss[0] = np.nan
        out.append(add_labels(r | {"source": "leads.jsonl", "index": i}, loss, LabelRule(), 3.0))
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            w = b[k]
            assert w.dtype == v.dtype and w.shape == v.shape, k
            if v.dtype.kind == "f":  # bitwise, NaNs included
                assert np.array_equal(v.view(np.uint32), w.view(np.uint32)), k
            else:
                assert np.array_equal(v, w), k
            assert w.flags.writeable
        else:
            assert type(b[k]) is type(v) and b[k] == v, k


def test_round_trip_is_exact(records):
    for r in records:
        assert_same(r, codec.unpack(codec.pack(r)))
    for a, b in zip(records, codec.unpack_many(codec.pack_many(records))):
        assert_same(a, b)
    assert codec.unpack_many(codec.pack_many([])) == []


def test_odd_records_round_trip():
    strings = np.array(["", "é", "PROPN", "x" * 300, "日本", "", "é"], dtype=object)
    many = np.array([str(i) for i in range(300)], dtype=object)  # codes past one byte
    r = {
        "id": 'quote " and \\ and \n',
        "text": "\x00\u2028 \ud7ff",
        "n": None,
        "flag": True,
        "x": 1.5,
        "empty_i": np.zeros(0, np.int32),
        "empty_s": np.zeros(0, object),
        "s": strings,
        "many": many,
        "big_endian": np.arange(5, dtype=">i4"),
        "f64": np.array([np.inf, -0.0, np.nan]),
    }
    back = codec.unpack(codec.pack(r))
    assert back["big_endian"].tolist() == [0, 1, 2, 3, 4]
    r["big_endian"] = r["big_endian"].astype(np.int32)  # values kept, native byte order
    assert_same(r, back)


def test_packed_is_deterministic_and_smaller_than_beams_default(records):
    packed = [codec.pack(r) for r in records]
    assert packed == [codec.pack(r) for r in records]
    default = registry.get_coder(object)
    tokens = sum(len(r["input_ids"]) for r in records)
    beam_bytes = sum(len(default.encode(r)) for r in records)
    ours = sum(map(len, packed))
    assert ours < 0.5 * beam_bytes, (ours / tokens, beam_bytes / tokens)


def test_bad_values_are_clear_errors():
    with pytest.raises(TypeError, match="'m'.*1-d"):
        codec.pack({"m": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="'s'.*set"):
        codec.pack({"s": {1}})
    with pytest.raises(TypeError, match="'o'.*strings"):
        codec.pack({"o": np.array(["a", None], dtype=object)})
    packed = bytearray(codec.pack({"a": 1}))
    packed[0] = 99
    with pytest.raises(ValueError, match="version 99"):
        codec.unpack(bytes(packed))

"""The fact world end to end on a tiny world: labelling, training and evaluation."""

import json

import pytest

from bench import factworld as fw


def test_a_tiny_world_end_to_end(tmp_path, tiny_model_dir):
    world = fw.load_world(fw.DEFAULT_WORLD) | {"people": 24, "held_out": 6, "bios_per_person": 1}
    (tmp_path / "world.json").write_text(json.dumps(world))
    out = fw.main([
        "--world", str(tmp_path / "world.json"), "--budget", "1500", "--seeds", "1",
        "--objectives", "lacy,loss,standard", "--reference_model", str(tiny_model_dir),
        "--out", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
    ])  # fmt: skip
    assert sorted(out["results"]) == ["lacy", "loss", "standard"]
    for runs in out["results"].values():
        r = runs[0]
        # an oracle answers every call: values called are right, so accuracy >= the SLM's own
        assert r["value_accuracy@values"] >= r["slm_value_accuracy"]
        gen = r["gen_right"] / max(r["gen_right"] + r["gen_hallucinated"], 1)
        assert r["gen_factscore"] == round(gen, 4)
        calls = r["calls_on_values@22%"] + r["calls_on_choices@22%"] + r["calls_elsewhere@22%"]
        assert calls == pytest.approx(1, abs=2e-4)
    f = out["figures"]
    assert 0 < f["value_share"] < 0.5
    assert (tmp_path / "results/world.md").read_text().count("\n| ") == 4  # header + 3 rows
    assert (tmp_path / "results/world.png").stat().st_size > 1000
    # the diagnosis realigns the held-out stream with the generator's spans (it asserts that its
    # value positions are the evaluation's) and tells first name mentions from repeated ones
    where = fw.main(["--diagnose", "0.2", "--out", str(tmp_path / "work"),
                     "--world", str(tmp_path / "world.json")])  # fmt: skip
    assert sorted(where) == ["ckpt-lacy-0", "ckpt-loss-0", "ckpt-standard-0"]
    for shares in where.values():
        assert sum(shares.values()) == pytest.approx(1, abs=5e-4)

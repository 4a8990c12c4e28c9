"""Trainer: objective math on hand-made tensors, real training steps on real shards, resume,
cascade calls, bad shards."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from trainer.data import SequenceLoader


def test_sequences_carry_labels_aligned_with_targets(shards):
    loader = SequenceLoader(shards, seq_len=32, batch_size=2, eot_id=0)
    b = loader.next_batch()
    assert b.input_ids.shape == b.targets.shape == b.delegate.shape == (2, 32)
    assert (b.input_ids[:, 1:] == b.targets[:, :-1]).all()
    row = pq.read_table(next((shards / "data").glob("*.parquet"))).to_pylist()[0]
    assert b.input_ids[0, :10].tolist() == row["input_ids"][:10]
    assert b.delegate[0, :9].tolist() == row["delegate"][1:10]
    assert loader.position == 2


def small_cfg(shards, out, **kw):
    from trainer.train import TrainConfig

    kw = {"objective": "lacy", "max_steps": 6} | kw
    return TrainConfig(
        data=str(shards),
        output=str(out),
        seq_len=32,
        batch_size=4,
        warmup_steps=3,
        lr=3e-3,
        log_every=1,
        progress=False,
        **kw,
    )


def test_a_few_steps_lower_the_loss(shards, tmp_path):
    from trainer.train import Trainer

    hist = Trainer(small_cfg(shards, tmp_path / "ck", max_steps=25)).fit().history
    first, last = np.mean([h["loss"] for h in hist[:3]]), np.mean([h["loss"] for h in hist[-3:]])
    assert last < first - 1.0
    lines = (tmp_path / "ck/metrics.jsonl").read_text().splitlines()
    assert len(lines) == 25 and {"step", "loss"} <= set(json.loads(lines[0]))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ck")
    assert model.config.vocab_size == 49153


def test_resume_gives_the_same_next_steps(shards, tmp_path):
    from trainer.train import Trainer

    full = Trainer(small_cfg(shards, tmp_path / "a", objective="lacy-online")).fit().history
    part = Trainer(small_cfg(shards, tmp_path / "b", objective="lacy-online"))
    for _ in range(3):
        part.train_step()
    part.save()
    resumed = Trainer(small_cfg(shards, tmp_path / "b", objective="lacy-online", resume=True))
    assert resumed.step == 3 and resumed.loader.position == 12
    rest = resumed.fit().history
    assert [h["loss"] for h in rest] == [h["loss"] for h in full[3:]]
    a = torch.load(tmp_path / "a/checkpoint-6/training_state.pt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoint-6/training_state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and a["gt_tokens"] == b["gt_tokens"]
    from safetensors.torch import load_file

    wa, wb = (
        load_file(tmp_path / "a/model.safetensors"),
        load_file(tmp_path / "b/model.safetensors"),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cascade_calls_exactly_where_the_call_logit_is_forced(shards, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from trainer.cascade import generate
    from trainer.checkpoint import load_checkpoint
    from trainer.model import call_id
    from trainer.train import Trainer

    Trainer(small_cfg(shards, tmp_path / "ck", max_steps=2)).fit()
    small, tok = load_checkpoint(tmp_path / "ck")
    large = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    call = call_id(tok)

    def force(step, logits):
        logits[call] = 1e4 if step in (2, 5) else -1e4
        return logits

    marked, char_spans, tok_spans = generate(
        small,
        tok,
        large,
        "Paris is",
        max_new_tokens=8,
        threshold=0.5,
        call_logit_fn=force,
        max_call_tokens=1,
    )
    assert tok_spans == [(2, 3), (5, 6)]
    assert marked.count("⟦") == 2 and len(char_spans) == 2


def test_evaluate_and_teacher_forced_cascade_report_sane_figures(
    shards, tmp_path, tiny_model_dir, capsys
):
    from transformers import AutoModelForCausalLM

    from trainer import evaluate
    from trainer.cascade import teacher_forced
    from trainer.checkpoint import load_checkpoint
    from trainer.data import eval_batches
    from trainer.model import call_id, separator_id
    from trainer.train import Trainer

    Trainer(small_cfg(shards, tmp_path / "ck", max_steps=3)).fit()
    assert (
        evaluate.main(
            [
                "--model",
                str(tmp_path / "ck"),
                "--data",
                str(shards),
                "--seq-len",
                "32",
                "--max-sequences",
                "6",
            ]
        )
        == 0
    )
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["targets"] == 6 * 32  # the CLI runs; the figures are checked by hand below
    small, tok = load_checkpoint(tmp_path / "ck")
    large = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    r = teacher_forced(small, tok, large, shards, budget=0.25, seq_len=32, max_sequences=6)
    assert r["call_rate"] == pytest.approx(0.25, abs=0.01) and r["positions"] == 192
    assert r["uncertainty_call_rate"] == r["call_rate"]  # the baseline spends the same budget
    # the same figures by hand: the top quarter of positions by p_call go to the large model
    xs, ys, fs = [], [], []
    for b in eval_batches(shards, 32, separator_id(tok), 8, 6):
        xs.append(torch.from_numpy(b.input_ids)), ys.append(b.targets), fs.append(b.is_fact)
    x, y, fact = torch.cat(xs), np.concatenate(ys).ravel(), np.concatenate(fs).ravel()
    with torch.no_grad():
        logits = small(input_ids=x).logits.float()
        large_ok = large(input_ids=x).logits.argmax(-1).numpy().ravel() == y
    p_call = torch.softmax(logits, -1)[..., call_id(tok)].numpy().ravel()
    logits[..., call_id(tok)] = float("-inf")
    slm_ok = logits.argmax(-1).numpy().ravel() == y
    calls = np.zeros(len(y), bool)
    calls[np.argsort(-p_call, kind="stable")[: round(0.25 * len(y))]] = True
    ok = np.where(calls, large_ok, slm_ok)
    assert r["fact_share"] == round(float(fact.mean()), 4)
    assert r["slm_fact_accuracy"] == round(float(slm_ok[fact].mean()), 4)
    assert r["cascade_fact_accuracy"] == round(float(ok[fact].mean()), 4)
    assert r["large_fact_accuracy"] == round(float(large_ok[fact].mean()), 4)


def test_compact_vocabulary_trains_the_same_objective_and_loads_as_a_full_model(shards, tmp_path):
    """--compact_vocab: rows for the shards' ids only, the same losses as the full-vocabulary
    view of the same network, and a checkpoint that loads over the full vocabulary."""
    from trainer.checkpoint import load_checkpoint
    from trainer.data import SequenceLoader
    from trainer.objectives import compute_loss
    from trainer.train import TrainConfig, Trainer
    from trainer.vocab import CompactLM, CompactVocab, shard_token_ids

    tr = Trainer(small_cfg(shards, tmp_path / "ck", compact_vocab=True))
    seen = shard_token_ids(shards)
    assert (
        len(tr.slm.vocab) == len(set(seen.tolist()) | {tr.slm.separator}) + 2
    )  # + other-ids row, <CALL>
    assert tr.model.config.vocab_size == len(tr.slm.vocab) < 2000
    full = CompactLM(tr.model, tr.slm.vocab)
    b = SequenceLoader(str(shards), 32, 4, tr.slm.separator).next_batch()
    t = torch.from_numpy
    with torch.no_grad():
        want, _ = compute_loss(
            "lacy", full(input_ids=t(b.input_ids)).logits, t(b.targets), t(b.delegate),
            t(b.is_fact), t(b.ref_loss), tr.slm.call,
        )  # fmt: skip
    hist = tr.fit().history
    assert abs(hist[0]["loss"] - float(want)) < 1e-5
    assert CompactVocab.load(tmp_path / "ck") == tr.slm.vocab
    model, tok = load_checkpoint(tmp_path / "ck")
    assert isinstance(model, CompactLM)
    with torch.no_grad():
        logits = model(input_ids=t(b.input_ids[:1])).logits
    assert logits.shape[-1] == len(tok) == 49153
    assert torch.allclose(torch.logsumexp(logits.log_softmax(-1), -1), torch.zeros(1), atol=1e-4)
    outside = np.setdiff1d(np.arange(len(tok)), np.array(tr.slm.vocab.ids[1:]))
    rest = logits[0, 0, outside]
    assert torch.isfinite(logits).all() and bool((rest == rest[0]).all())
    resumed = Trainer(small_cfg(shards, tmp_path / "ck", compact_vocab=True, resume=True))
    assert resumed.slm.vocab == tr.slm.vocab and resumed.step == 6
    with pytest.raises(ValueError, match="compact_vocab"):
        cfg = TrainConfig(data="x", output="y", max_steps=1, init="smollm2", compact_vocab=True)
        cfg.validate()

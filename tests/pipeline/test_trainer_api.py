"""The labels with the tools people train with: transformers.Trainer and a plain PyTorch loop
over `datasets`, and continued pretraining of the shipped SmolLM2. Their first-step losses must
equal lacy-train's on the same batch."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import LacyLoss, LacyWindows, add_call_token, collate
from trainer.data import ShardError
from trainer.model import build_model, call_id, load_slm_tokenizer, separator_id
from trainer.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]


def lacy_train_first_step(shards, tmp_path, objective: str) -> dict:
    cfg = TrainConfig(
        data=str(shards), output=str(tmp_path / f"lacy-train-{objective}"), objective=objective,
        max_steps=1, progress=False,
    )  # fmt: skip
    return Trainer(cfg).fit().history[0]


def parquet_rows(shards, tmp_path, streaming=False):
    from datasets import load_dataset

    files = sorted(str(p) for p in (shards / "data").glob("*.parquet"))
    return load_dataset(
        "parquet", data_files=files, split="train", streaming=streaming,
        cache_dir=str(tmp_path / "hf-cache"),
    )  # fmt: skip


class Recorded(LacyLoss):
    """A LacyLoss that keeps every call's (loss, counts)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        self.calls.append(self.last)
        return out


def test_transformers_trainer_matches_lacy_train(shards, tmp_path):
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    from trainer import GroundTruthBudget

    want = lacy_train_first_step(shards, tmp_path, "lacy")
    tok = load_slm_tokenizer()
    torch.manual_seed(0)
    model = build_model("tiny", len(tok), seed=0)  # lacy-train's weights at seed 0
    loss = Recorded("lacy", call_id(tok))
    args = TrainingArguments(
        str(tmp_path / "hf"), max_steps=3, per_device_train_batch_size=8, learning_rate=3e-3,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    hf = HFTrainer(
        model=model, args=args, data_collator=collate, compute_loss_func=loss,
        train_dataset=LacyWindows(parquet_rows(shards, tmp_path), 128, separator_id(tok)),
        callbacks=[GroundTruthBudget(loss)],
    )  # fmt: skip
    hf.train()
    first_loss, first = loss.calls[0]
    assert abs(first_loss - want["loss"]) < 1e-5
    assert first["gt_targets"] == want["gt_targets"] and first["call_targets"] > 0
    assert hf.state.global_step == 3 and len(loss.calls) == 3
    logged = [h for h in hf.state.log_history if "gt_tokens" in h]
    assert (
        logged[-1]["gt_tokens"]
        == loss.totals["gt_targets"]
        == sum(c["gt_targets"] for _, c in loss.calls)
    )


def test_ground_truth_budget_stops_the_trainer(shards, tmp_path):
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    from trainer import GroundTruthBudget

    tok = load_slm_tokenizer()
    loss = LacyLoss("lacy", call_id(tok))
    args = TrainingArguments(
        str(tmp_path / "hf"), max_steps=50, per_device_train_batch_size=2, save_strategy="no",
        report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    hf = HFTrainer(
        model=build_model("tiny", len(tok)), args=args, data_collator=collate,
        compute_loss_func=loss, callbacks=[GroundTruthBudget(loss, token_budget=300)],
        train_dataset=LacyWindows(parquet_rows(shards, tmp_path), 64, separator_id(tok)),
    )  # fmt: skip
    hf.train()
    assert loss.totals["gt_targets"] >= 300 and hf.state.global_step < 50


def test_plain_loop_with_rho_matches_lacy_train(shards, tmp_path):
    want = lacy_train_first_step(shards, tmp_path, "rho")
    tok = load_slm_tokenizer()
    model = build_model("tiny", len(tok), seed=0)
    rows = parquet_rows(shards, tmp_path, streaming=True)
    batches = torch.utils.data.DataLoader(
        LacyWindows(rows, 128, separator_id(tok)), batch_size=8, collate_fn=collate
    )
    loss_fn = LacyLoss("rho", call_id(tok))
    batch = next(iter(batches))
    loss = loss_fn(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    loss.backward()
    assert abs(loss.item() - want["loss"]) < 1e-5
    assert loss_fn.totals["gt_targets"] == want["gt_targets"]
    with_ref = int((~torch.isnan(batch["labels"]["ref_loss"])).sum())  # the separators have none
    assert loss_fn.totals["trained_targets"] == round(0.6 * with_ref)


def test_windows_equal_lacy_trains_stream(shards):
    """LacyWindows over rows and lacy-train's shard stream are the same windows."""
    import pyarrow.parquet as pq

    from trainer.data import iter_sequences

    tok = load_slm_tokenizer()
    rows = pq.read_table(shards / "data").to_pylist()
    got = list(LacyWindows(rows, 64, separator_id(tok)))
    want = list(iter_sequences(shards, 64, separator_id(tok), loop=False))
    assert len(got) == len(want) > 5
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


def test_a_dataset_without_the_label_columns_is_refused_by_name():
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[1, 2, 3]], "delegate": [[False, True, False]]})
    with pytest.raises(ShardError, match=r"missing column\(s\) \['is_fact', 'ref_loss'\]"):
        LacyWindows(ds, 8, 0)
    streamed = [{"input_ids": [1, 2], "delegate": [False, True], "is_fact": [False, True]}]
    with pytest.raises(ShardError, match=r"row 0: missing column\(s\) \['ref_loss'\]"):
        next(iter(LacyWindows(streamed, 8, 0)))


def test_add_call_token_resizes_and_starts_call_as_the_mean_row(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = model.get_input_embeddings().weight.detach().clone()
    call = add_call_token(tok, model)
    emb = model.get_input_embeddings().weight
    assert call == before.shape[0] == len(tok) - 1 and emb.shape[0] == len(tok)
    torch.testing.assert_close(emb[call], before.mean(0))
    torch.testing.assert_close(emb[:call], before)
    assert tok("a <CALL> b", add_special_tokens=False)["input_ids"].count(call) == 1
    assert (
        add_call_token(tok, model) == call
        and model.get_input_embeddings().weight.shape[0] == call + 1
    )


def test_continued_pretraining_from_smollm2_and_the_cascade_loads_it(shards, tmp_path):
    from trainer import train
    from trainer.cascade import generate, load_large
    from trainer.checkpoint import load_checkpoint
    from trainer.data import eval_batches
    from trainer.evaluate import evaluate
    from trainer.objectives import nll_without_call

    out = tmp_path / "smol"
    assert train.main(["--data", str(shards), "--output", str(out), "--init", "smollm2",
                       "--max_steps", "2", "--seq_len", "32", "--batch_size", "2",
                       "--lr", "3e-4", "--progress", "false"]) == 0  # fmt: skip
    small, tok = load_checkpoint(out)
    assert small.config.vocab_size == len(tok) == 49153 and call_id(tok) == 49152
    assert small.config.num_hidden_layers == 30  # SmolLM2-135M, not a preset
    metrics = evaluate(small, tok, shards, seq_len=32, max_sequences=4)
    (b,) = eval_batches(shards, 32, separator_id(tok), 8, 4)  # the same 4 sequences, by hand
    with torch.no_grad():
        logits = small(input_ids=torch.from_numpy(b.input_ids)).logits.float()
    calls = (logits.argmax(-1) == call_id(tok)).float().mean()
    keep = ~torch.from_numpy(b.delegate)
    nll = nll_without_call(logits, torch.from_numpy(b.targets), call_id(tok))[keep].mean()
    assert metrics["targets"] == 4 * 32 and metrics["call_rate"] == round(float(calls), 4)
    assert metrics["nll"] == pytest.approx(float(nll), abs=1e-4)
    large, _ = load_large(None)
    text, spans, _ = generate(small, tok, large, "Marie Curie was born in", max_new_tokens=4)
    assert text.strip()  # the continuation (SmolLM2 taught 2 steps still writes " Poland, ...")


def test_init_with_another_tokenizer_is_refused(tmp_path, gpt2_tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    from trainer.model import load_pretrained_slm

    folder = tmp_path / "gpt2-tiny"
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(gpt2_tok), n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(folder)
    gpt2_tok.save_pretrained(folder)
    with pytest.raises(ValueError, match="not the labels' reference tokenizer"):
        load_pretrained_slm(str(folder))


def test_training_docs_examples_run(shards, tmp_path, monkeypatch):
    """Every Python example of docs/training.md, on a shipped labelled output, with fewer steps."""
    (tmp_path / "out").mkdir()
    os.symlink(shards, tmp_path / "out" / "wiki")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    text = (ROOT / "docs/training.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    for code in blocks:
        code = re.sub(r"max_steps=\d+", "max_steps=2", code)
        code = code.replace("range(200)", "range(2)").replace("seq_len=128", "seq_len=32")
        exec(compile(code, "docs/training.md", "exec"), {})
    assert (tmp_path / "ckpt/hf-smol-lacy/model.safetensors").is_file()

"""The SLM: presets built from a config (Hugging Face causal LMs) or a pretrained start, with the
reference tokenizer's vocabulary plus one added `<CALL>` token, optionally on a compact
vocabulary. `build_slm` is the one place an SLM is put together for training."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from lacy_labels.reference import DEFAULT_MODEL

CALL_TOKEN = "<CALL>"

PRESETS = {
    # Trains in minutes on 2 CPU cores.
    "tiny": dict(arch="llama", hidden=128, layers=4, heads=4, kv_heads=2, ffn=384, ctx=256),
    "small": dict(arch="llama", hidden=384, layers=8, heads=6, kv_heads=2, ffn=1024, ctx=512),
    # The paper's 334M GPT-2-style SLM (for a GPU).
    "paper-334m": dict(
        arch="gpt2", hidden=1024, layers=24, heads=16, kv_heads=16, ffn=4096, ctx=1024
    ),
}


def add_call_token(tokenizer, model=None) -> int:
    """Add `<CALL>` to a Hugging Face tokenizer (a special token, never split; id = the old
    vocabulary size) and, given a causal LM, make room for it: embeddings resized to the
    tokenizer, and the `<CALL>` row of the input embedding (and of an untied output layer) set to
    the mean of the others, so that the new token starts as an average word with a probability
    near 1/V. Idempotent. Returns `<CALL>`'s id."""
    import torch

    added = CALL_TOKEN not in tokenizer.get_vocab()
    if added:
        tokenizer.add_special_tokens({"additional_special_tokens": [CALL_TOKEN]})
    call = call_id(tokenizer)
    if model is None:
        return call
    rows = model.get_input_embeddings().weight.shape[0]
    if rows <= call:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if added or rows <= call:
        others = torch.arange(model.get_input_embeddings().weight.shape[0]) != call
        with torch.no_grad():
            for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
                if layer is None:
                    continue
                layer.weight[call] = layer.weight[others].mean(0)  # tied: the same tensor twice
                if getattr(layer, "bias", None) is not None:
                    layer.bias[call] = layer.bias[others].mean()
    return call


def load_slm_tokenizer(reference_model: str = DEFAULT_MODEL, cache_dir=None):
    """The reference tokenizer with `<CALL>` added as a special token (id = old vocab size)."""
    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    tok = load_tokenizer(resolve_model_dir(reference_model, cache_dir))
    add_call_token(tok)
    return tok


def load_pretrained_slm(init: str, reference_model: str = DEFAULT_MODEL, cache_dir=None):
    """(model, tokenizer) to continue pretraining from: a causal LM folder (or "smollm2", the
    shipped one, or a .gguf), with `<CALL>` added. Its vocabulary must be the labels' (the
    reference tokenizer's): the labels' token ids are its inputs."""
    from lacy_labels.reference import load_tokenizer, resolve_model_dir
    from trainer.checkpoint import load_causal_lm

    path = resolve_model_dir(init, cache_dir)
    tok = load_tokenizer(path)
    ref = load_tokenizer(resolve_model_dir(reference_model, cache_dir))
    vocab, want = tok.get_vocab(), ref.get_vocab()
    vocab.pop(CALL_TOKEN, None)  # a lacy checkpoint's tokenizer has it already
    if vocab != want:
        raise ValueError(
            f"--init {init}: its tokenizer ({len(vocab)} tokens) is not the labels' reference "
            f"tokenizer ({reference_model}, {len(want)} tokens); the labels' token ids would "
            "mean other tokens to it"
        )
    model = load_causal_lm(path)
    add_call_token(tok, model)
    return model, tok


def build_model(preset: str, vocab_size: int, seed: int = 0):
    """A freshly initialised causal LM for `preset` (seeded)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    p = PRESETS[preset]
    torch.manual_seed(seed)
    if p["arch"] == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=p["hidden"],
            n_layer=p["layers"],
            n_head=p["heads"],
            n_inner=p["ffn"],
            n_positions=p["ctx"],
        )
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p["hidden"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        num_key_value_heads=p["kv_heads"],
        intermediate_size=p["ffn"],
        max_position_embeddings=p["ctx"],
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def call_id(tok) -> int:
    return int(tok.convert_tokens_to_ids(CALL_TOKEN))


def separator_id(tok) -> int:
    """The document separator and generation start: the reference model's plain-text start
    token (what the labels' losses were conditioned on)."""
    from lacy_labels.reference import plain_start_token

    sep = plain_start_token(tok)
    if sep is None:
        raise ValueError("the tokenizer has no plain-text start token to separate documents")
    return int(sep)


@dataclass
class SLM:
    """An SLM ready to train: the model (over the compact vocabulary's rows when `vocab` is set),
    its tokenizer with `<CALL>`, `<CALL>`'s and the document separator's token ids."""

    model: Any
    tokenizer: Any
    call: int
    separator: int
    vocab: Any = None  # trainer.vocab.CompactVocab, or None for the full vocabulary

    @property
    def call_row(self) -> int:
        """`<CALL>`'s row in the model's output (its id, or its compact row)."""
        return self.vocab.call_row if self.vocab is not None else self.call

    @functools.cached_property
    def lut(self):
        """token id -> model row (a numpy array, built once), or None on the full vocabulary."""
        return self.vocab.lut if self.vocab is not None else None

    def full_vocabulary(self):
        """The model over full-vocabulary ids and logits (what `load_checkpoint` returns)."""
        from trainer.vocab import CompactLM

        return CompactLM(self.model, self.vocab) if self.vocab is not None else self.model


def build_slm(
    preset: str = "tiny",
    *,
    init: str | None = None,
    reference_model: str = DEFAULT_MODEL,
    seed: int = 0,
    compact_data: str | None = None,
    vocab=None,
) -> SLM:
    """The SLM to train: a fresh seeded `preset`, or the pretrained `init` (a folder, .gguf or
    "smollm2"), with `<CALL>` added. `compact_data` (a labelled output) shrinks a fresh model's
    vocabulary to the ids present there, or to `vocab` (a resumed checkpoint's map)."""
    from trainer.vocab import CompactVocab

    if init:
        if compact_data or vocab is not None:
            raise ValueError(
                "a compact vocabulary trains a fresh --preset; it cannot shrink --init"
            )
        model, tok = load_pretrained_slm(init, reference_model)
        return SLM(model, tok, call_id(tok), separator_id(tok))
    tok = load_slm_tokenizer(reference_model)
    call, sep = call_id(tok), separator_id(tok)
    if vocab is None and compact_data:
        vocab = CompactVocab.from_shards(compact_data, call, len(tok), [sep])
    model = build_model(preset, len(vocab) if vocab is not None else len(tok), seed)
    return SLM(model, tok, call, sep, vocab)

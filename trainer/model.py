"""SLM presets built from a config (Hugging Face causal LMs), with the reference tokenizer's
vocabulary plus one added `<CALL>` token."""

from __future__ import annotations

from pathlib import Path

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


def load_slm_tokenizer(reference_model: str = DEFAULT_MODEL, cache_dir=None):
    """The reference tokenizer with `<CALL>` added as a special token (id = old vocab size)."""
    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    tok = load_tokenizer(resolve_model_dir(reference_model, cache_dir))
    tok.add_special_tokens({"additional_special_tokens": [CALL_TOKEN]})
    return tok


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


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a save_pretrained folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(path)
    return model.to(device).eval(), tok

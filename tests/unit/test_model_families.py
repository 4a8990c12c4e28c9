"""Reference losses equal each model's own forward, for tiny random models of several families
saved as local folders (the real loading path), and a model whose forward does something lacy
does not know is refused at load time."""

import numpy as np
import pytest
import torch
import transformers

from lacy_labels.reference import load_reference
from lacy_labels.scoring import ScoreConfig, Scorer, forward_losses

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=1)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=32, n_layer=2, n_head=2)),
    "granite": ("GraniteConfig", "GraniteForCausalLM", dict(logits_scaling=8.0)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(final_logit_softcapping=0.5, head_dim=16, num_key_value_heads=1),
    ),
    "cohere": ("CohereConfig", "CohereForCausalLM", dict(logit_scale=0.25, num_key_value_heads=1)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=1)),
}


def save_tiny(path, family, smol_tok):
    cfg_name, cls_name, extra = FAMILIES[family]
    small = {} if family == "gpt2" else SMALL
    cfg = getattr(transformers, cfg_name)(vocab_size=len(smol_tok), **small, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(cfg)
    with torch.no_grad():  # random init is near-uniform: sharpen it so the head's scale matters
        model.get_output_embeddings().weight.mul_(40.0)
    model.save_pretrained(path)
    smol_tok.save_pretrained(path)
    return path


def own_losses(ref, seq):
    return forward_losses(ref.model, seq).numpy()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_losses_equal_the_models_own_forward(family, tmp_path, smol_tok, wiki_docs):
    ref = load_reference(str(save_tiny(tmp_path / family, family, smol_tok)))
    assert ref.model.config.model_type == family
    scorer = Scorer(ref, ScoreConfig(window=512))  # checks its probe at construction
    doc = np.asarray(smol_tok(wiki_docs[0]["text"], add_special_tokens=False)["input_ids"][:300])
    got = scorer.score([doc, doc[:40]])
    want = own_losses(ref, scorer.sequences([doc])[0])
    assert np.abs(got[0] - want).max() <= 1e-3
    assert np.abs(got[1] - want[:40]).max() <= 1e-3  # padded next to a longer row


def test_granites_scaling_matters_so_the_check_is_not_vacuous(tmp_path, smol_tok):
    ref = load_reference(str(save_tiny(tmp_path / "g", "granite", smol_tok)))
    scorer = Scorer(ref)
    scorer.post = lambda logits: logits  # what the scorer did before: the head alone
    with pytest.raises(ValueError, match="'granite' is not supported"):
        scorer.check_against_forward()


class ScaledLlama(transformers.LlamaForCausalLM):
    """A forward that post-processes logits in a way no config attribute announces."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        return out


def test_unknown_logit_postprocessing_is_refused(tmp_path, smol_tok):
    ref = load_reference(str(save_tiny(tmp_path / "l", "llama", smol_tok)))
    odd = ScaledLlama(ref.model.config)
    odd.load_state_dict(ref.model.state_dict())
    with pytest.raises(ValueError, match=r"'llama' is not supported: .* differ"):
        Scorer(type(ref)(odd.eval(), ref.tokenizer, ref.start_token_id, ref.identity))


def test_reduced_precision_scores_with_an_fp32_head(tmp_path, smol_tok, wiki_docs):
    """bf16 weights, fp32 loss: the head runs on an fp32 copy of its weight, so the losses are
    nearer the fp32 model's than the bf16 model's own forward (whose logits are bf16) is."""
    path = str(save_tiny(tmp_path / "l", "llama", smol_tok))
    ref32, ref16 = load_reference(path), load_reference(path, dtype="bfloat16")
    s32, s16 = Scorer(ref32), Scorer(ref16)
    assert s32.head32 is None and s16.head32[0].dtype == torch.float32
    doc = np.asarray(smol_tok(wiki_docs[1]["text"], add_special_tokens=False)["input_ids"][:200])
    want = s32.score([doc])[0]
    ours = np.abs(s16.score([doc])[0] - want).mean()
    own = np.abs(own_losses(ref16, s16.sequences([doc])[0]) - want).mean()
    assert ours < own

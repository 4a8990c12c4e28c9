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
    scorer.head.post = lambda logits: logits  # what the scorer did before: the head alone
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


def test_reduced_precision_keeps_fp32_losses(tmp_path, smol_tok, wiki_docs):
    """bf16 weights, fp32-honest losses: on CPU the head's logits are centred on the target (see
    lacy_labels.head), so the losses are nearer the fp32 model's than the bf16 model's own
    forward (whose logits are rounded to bf16) is."""
    path = str(save_tiny(tmp_path / "l", "llama", smol_tok))
    ref32, ref16 = load_reference(path), load_reference(path, dtype="bfloat16")
    s32, s16 = Scorer(ref32), Scorer(ref16)
    assert (s32.head.kind, s16.head.kind) == ("fp32", "bf16-centred")
    doc = np.asarray(smol_tok(wiki_docs[1]["text"], add_special_tokens=False)["input_ids"][:200])
    want = s32.score([doc])[0]
    ours = np.abs(s16.score([doc])[0] - want).mean()
    own = np.abs(own_losses(ref16, s16.sequences([doc])[0]) - want).mean()
    assert ours < own


@pytest.mark.parametrize("bias", [False, True])
def test_centred_bf16_head_error_stays_relative_to_the_loss(bias):
    """The centred head against float64 logits of the same bf16 inputs: every row's error is
    within 2^-8 of its loss (plus one nat), and on likely targets (loss under 3 nats, most of
    real text) it is a small part of the plain bf16 head's (logits rounded, then log-sum-exp)."""
    from lacy_labels.head import CentredHead, FullHead, logits_postprocess

    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 3000, bias=bias).bfloat16()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3000, 64, generator=g) * 0.6)
    h = torch.randn(256, 64, generator=g).bfloat16()
    logits = h.double() @ layer.weight.double().T + (layer.bias.double() if bias else 0)
    t = logits.topk(4, -1).indices[torch.arange(256), torch.randint(0, 4, (256,), generator=g)]
    t[::4] = torch.randint(0, 3000, (64,), generator=g)  # a quarter of unlikely targets
    exact = torch.logsumexp(logits, -1) - logits.gather(1, t[:, None])[:, 0]
    with torch.inference_mode():
        centred = CentredHead(layer).losses(h, t).double()
        plain = layer(h).float()
        plain = (torch.logsumexp(plain, -1) - plain.gather(1, t[:, None])[:, 0]).double()
        full = FullHead(layer, logits_postprocess(object())).losses(h, t).double()
    err, likely = (centred - exact).abs(), exact < 3
    assert (err <= 2**-8 * (exact + 1)).all()
    assert likely.sum() > 100 and err[likely].mean() < 0.2 * (plain - exact)[likely].abs().mean()
    assert (full - exact).abs().max() < 1e-3  # the fp32 head over the same inputs

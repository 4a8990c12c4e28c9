"""The cascade's KV-cached reader against full forwards, and a cascade that calls at every step
(the large model asked twice at one position: right after a span, the SLM calls again)."""

import torch
import transformers

from trainer.cascade import _Reader, generate
from trainer.model import add_call_token


def tiny_llama(vocab: int, seed: int):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


@torch.inference_mode()
def test_reader_feeds_new_ids_only_and_repeats_its_last_logits():
    model, ids = tiny_llama(60, 0), [3, 14, 15, 9, 26, 5]
    reader = _Reader(model)
    first = reader.next_logits(ids[:2])
    assert torch.allclose(first, model(input_ids=torch.tensor([ids[:2]])).logits[0, -1], atol=1e-5)
    got = reader.next_logits(ids)
    assert torch.allclose(got, model(input_ids=torch.tensor([ids])).logits[0, -1], atol=1e-5)
    assert reader.fed == len(ids) and torch.equal(reader.next_logits(ids), got)


def test_a_cascade_that_always_calls_hands_every_token_to_the_large_model(smol_tok):
    tok = smol_tok.__class__.from_pretrained(smol_tok.name_or_path)
    add_call_token(tok)
    small, large = tiny_llama(len(tok), 1), tiny_llama(len(tok), 2)
    marked, char_spans, spans = generate(small, tok, large, "Ada Lovelace was", 12, threshold=0.0)
    assert spans and spans[0][0] == 0  # the first generated token is already the large model's
    assert all(b > a for a, b in spans[:-1]) and all(s[0] == p[1] for p, s in zip(spans, spans[1:]))
    assert marked.count("⟦") == len(char_spans) == sum(b > a for a, b in spans)

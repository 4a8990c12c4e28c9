"""The CPU linear-kernel choice: resolution rules, a reversible swap, and losses that match the
plain model's within the scoring tolerance."""

import os

import numpy as np
import pytest
import torch

from lacy_labels.kernels import (
    CACHE_CAPACITY_ENV,
    onednn_available,
    resolve_linear_kernel,
    set_linear_kernel,
)
from lacy_labels.scoring import Scorer
from lacy_labels.tokens import encode_batch

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="no oneDNN in this torch build")


def test_resolution_rules():
    assert resolve_linear_kernel("torch", "cpu", "float32") == "torch"
    assert resolve_linear_kernel("auto", "cpu", "bfloat16") == "torch"
    assert resolve_linear_kernel("auto", "cuda:0", "float32") == "torch"
    want = "onednn" if onednn_available() else "torch"
    assert resolve_linear_kernel("auto", "cpu", "float32") == want
    with pytest.raises(ValueError, match="one of"):
        resolve_linear_kernel("mkl", "cpu", "float32")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_linear_kernel("onednn", "cuda", "float32")


@needs_onednn
def test_onednn_cache_bounds_are_set():
    assert onednn_available()
    for name in CACHE_CAPACITY_ENV:
        assert os.environ.get(name)  # set (or kept) before oneDNN's first primitive


class Tied(torch.nn.Module):
    """An embedding, one private linear layer and a head tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 24)
        self.mid = torch.nn.Linear(24, 24)
        self.head = torch.nn.Linear(24, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.nn.functional.gelu(self.mid(self.emb(ids))))


@needs_onednn
def test_swap_packs_private_weights_keeps_tied_ones_and_is_exactly_reversible():
    torch.manual_seed(0)
    model = Tied().eval().requires_grad_(False)
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 50, (3, 9))
    with torch.inference_mode():
        want = model(ids)
        assert set_linear_kernel(model, "onednn") == 2
        assert model.mid.weight.is_mkldnn and not model.head.weight.is_mkldnn
        assert model.head.weight is model.emb.weight
        got = model(ids)
        assert set_linear_kernel(model, "onednn") == 2  # idempotent
        torch.testing.assert_close(model(ids), got, rtol=0, atol=0)
        assert set_linear_kernel(model, "torch") == 2
        assert not any("forward" in m.__dict__ for m in model.modules())
        again = model(ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, want)
    for k, v in model.state_dict().items():
        assert torch.equal(v, plain[k]), k
    with pytest.raises(ValueError):
        set_linear_kernel(model, "auto")


@needs_onednn
@pytest.mark.slow
def test_reference_losses_agree_across_kernels(reference, wiki_docs):
    assert reference.identity["reference_linear_kernel"] == "onednn"
    ids = [i for i, _ in encode_batch(reference.tokenizer, [d["text"] for d in wiki_docs[:3]])]
    scorer = Scorer(reference)
    fast = scorer.score(ids)
    try:
        assert set_linear_kernel(reference.model, "torch") == 211  # 30 layers x 7 + the head
        plain = scorer.score(ids)
    finally:
        set_linear_kernel(reference.model, "onednn")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(fast, plain))
    assert diff <= 1e-3

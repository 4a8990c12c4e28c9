"""Reference-model scoring with the real SmolLM2 (fp32, CPU)."""

import multiprocessing as mp
import random

import numpy as np
import pytest
import torch

from lacy_labels.head import logsumexp_
from lacy_labels.kernels import onednn_available, set_linear_kernel
from lacy_labels.reference import convert_gguf, smollm2_gguf_path
from lacy_labels.scoring import ScoreConfig, Scorer, plan_windows
from lacy_labels.tokens import encode_batch

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="no oneDNN in this torch build")


def direct_losses(ref, seq):
    """-log p(seq[t] | seq[:t]) for t >= 1 from one plain forward."""
    with torch.inference_mode():
        x = torch.tensor(np.asarray(seq, dtype=np.int64))[None]
        logits = ref.model(input_ids=x).logits[0, :-1].float()
        return (torch.logsumexp(logits, -1) - logits.gather(1, x[0, 1:, None])[:, 0]).numpy()


@pytest.fixture(scope="module")
def docs(reference, wiki_docs):
    texts = [d["text"][: 120 + 90 * i] for i, d in enumerate(wiki_docs[:6])]
    return [ids for ids, _ in encode_batch(reference.tokenizer, texts)]


@pytest.mark.parametrize("batch_tokens", [64, 256, 100_000])
def test_losses_equal_a_full_forward_in_any_order(reference, docs, batch_tokens):
    order = list(range(len(docs)))
    random.Random(batch_tokens).shuffle(order)
    scorer = Scorer(reference, ScoreConfig(batch_tokens=batch_tokens))
    got = scorer.score([docs[i] for i in order])
    for i, loss in zip(order, got):
        want = direct_losses(reference, np.concatenate([[0], docs[i]]))
        assert loss.shape == want.shape
        assert np.abs(loss - want).max() <= 1e-3


def test_windowed_scoring_matches_the_window_that_scored_each_token(reference, docs):
    window, context = 32, 12
    doc = docs[-1]
    seq = np.concatenate([[0], doc])
    got = Scorer(reference, ScoreConfig(window=window, min_context=context)).score([doc])[0]
    segs = plan_windows(0, len(seq), window, context)
    assert len(segs) > 3
    scored = np.zeros(len(seq), dtype=int)
    for s in segs:
        assert s.b - s.a <= window
        if s.a > 0:
            assert s.keep - s.a >= context  # every scored token keeps enough left context
        scored[s.keep : s.b] += 1
        want = direct_losses(reference, seq[s.a : s.b])[s.keep - s.a - 1 :]
        assert np.abs(got[s.keep - 1 : s.b - 1] - want).max() <= 1e-3
    assert (scored[1:] == 1).all()


def test_real_model_losses_are_plausible_and_shuffling_hurts(reference, wiki_docs):
    texts = [d["text"] for d in wiki_docs[:6]]
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(t.split(), len(t.split()))) for t in texts]
    scorer = Scorer(reference)
    real = np.concatenate(scorer.score([i for i, _ in encode_batch(reference.tokenizer, texts)]))
    shuf = np.concatenate(scorer.score([i for i, _ in encode_batch(reference.tokenizer, shuffled)]))
    assert 1.5 <= real.mean() <= 4.0
    assert shuf.mean() > real.mean() + 2.0


def test_degenerate_documents(reference):
    tok = reference.tokenizer
    texts = ["", "a", "\x00\x01 \ufeff", "🇫🇷"]
    ids = [i for i, _ in encode_batch(tok, texts)]
    calls = []
    out = Scorer(reference).score(ids, progress=lambda t, d: calls.append((t, d)))
    assert [len(o) for o in out] == [len(i) for i in ids]
    # Progress reports every scored token and every document exactly once.
    assert sum(t for t, _ in calls) == sum(len(i) for i in ids)
    assert sum(d for _, d in calls) == len(texts)
    assert len(out[0]) == 0
    assert all(np.isfinite(o).all() for o in out)


def test_min_context_must_fit_the_window(reference):
    with pytest.raises(ValueError):
        Scorer(reference, ScoreConfig(window=16, min_context=16))


def _convert(cache):
    return str(convert_gguf(smollm2_gguf_path(), cache))


def test_cache_conversion_is_atomic_and_reused(tmp_path):
    cache = tmp_path / "cache"
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_convert, [cache, cache])
    assert a == b
    models = cache / "models"
    names = sorted(p.name for p in models.iterdir())
    assert names == sorted([a.split("/")[-1], "digests.json"])  # no temporary leftovers
    weights = models / a.split("/")[-1] / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert _convert(cache) == a and weights.stat().st_mtime_ns == mtime


def test_in_place_logsumexp_is_torchs_bit_for_bit():
    """The scorer's in-place log-sum-exp (no second logits-sized temporary) repeats torch's own
    operations, so losses keep every bit; rows of -inf and +inf behave as torch's do."""
    g = torch.Generator().manual_seed(0)
    for shape in [(128, 49152), (7, 33), (1, 1)]:
        x = torch.randn(*shape, generator=g) * 30
        assert torch.equal(logsumexp_(x.clone()), torch.logsumexp(x, dim=-1))
    x = torch.tensor([[float("-inf")] * 3, [1.0, float("inf"), 2.0], [0.0, 0.0, 0.0]])
    assert torch.equal(logsumexp_(x.clone()), torch.logsumexp(x, dim=-1))


@needs_onednn
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

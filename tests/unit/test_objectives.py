"""Objectives, evaluation and cascade arithmetic on hand-made tensors and fixtures (no training)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from trainer.data import ShardError, iter_sequences
from trainer.objectives import LacyLoss, compute_loss, nll_without_call, top_fraction

V, CALL = 7, 6


def hand_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, V, generator=g)
    targets = torch.randint(0, CALL, (2, 5), generator=g)
    fact = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.bool)
    dele = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    ref = torch.tensor([[0.5, 1.0, float("nan"), 2.0, 0.1], [3.0, 0.2, 0.3, 0.4, 0.5]])
    return logits, targets, dele, fact, ref


def write_rows(path, rows, schema=None):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


class RuleModel(torch.nn.Module):
    """A fixed model: after an even id it predicts <CALL> (logit 5), after an odd id x it
    predicts x + 1 (logit 5); every other logit is 0."""

    def __init__(self, vocab, call):
        super().__init__()
        self.vocab, self.call = vocab, call

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        odd = input_ids % 2 == 1
        pick = torch.where(odd, input_ids + 1, torch.full_like(input_ids, self.call))
        logits.scatter_(-1, pick[..., None], 5.0)
        return type("Out", (), {"logits": logits})()


def test_renormalised_nll_equals_nll_over_vocab_without_call():
    logits, targets, *_ = hand_batch()
    got = nll_without_call(logits, targets, CALL)
    want = F.cross_entropy(logits[..., :CALL].transpose(1, 2), targets, reduction="none")
    assert torch.allclose(got, want, atol=1e-6)


def test_lacy_delegated_targets_become_call():
    logits, targets, dele, fact, ref = hand_batch()
    loss, st = compute_loss("lacy", logits, targets, dele, fact, ref, CALL)
    full = -torch.log_softmax(logits, -1)[..., CALL]
    per = torch.where(dele, full, nll_without_call(logits, targets, CALL))
    assert torch.allclose(loss, per.mean())
    assert st == {"gt_targets": 7, "call_targets": 3, "trained_targets": 10}


def test_call_negatives_push_call_down_where_the_labels_do_not_call():
    logits, targets, dele, fact, ref = hand_batch()
    logits.requires_grad_(True)
    loss, st = compute_loss("lacy", logits, targets, dele, fact, ref, CALL, call_negatives=True)
    logp = torch.log_softmax(logits, -1)
    per = torch.where(dele, -logp[..., CALL], -logp.gather(-1, targets[..., None])[..., 0])
    assert torch.allclose(loss, per.mean())
    assert st == {"gt_targets": 7, "call_targets": 3, "trained_targets": 10}
    loss.backward()  # descent lowers <CALL> at every target it does not call
    assert (logits.grad[..., CALL][~dele] > 0).all() and (logits.grad[..., CALL][dele] < 0).all()
    plain = logits.detach().requires_grad_(True)
    compute_loss("lacy", plain, targets, dele, fact, ref, CALL)[0].backward()
    assert (plain.grad[..., CALL][~dele] == 0).all()  # the paper's objective leaves it alone
    labels = {"targets": targets, "delegate": dele, "is_fact": fact, "ref_loss": ref}
    with torch.no_grad():  # the loss-function wrapper passes the option through
        wrapped = LacyLoss("lacy", CALL, call_negatives=True)(logits, labels)
    assert torch.allclose(wrapped, per.mean())
    # lacy-online still picks its calls by the target's own loss (softmax without <CALL>): a
    # huge <CALL> logit on the easiest fact tops the full-softmax losses, not the picked ones.
    logits = logits.detach().clone()
    own = nll_without_call(logits, targets, CALL)
    easiest = torch.where(fact, own, torch.tensor(float("inf"))).flatten().argmin()
    logits.view(-1, V)[easiest, CALL] = 30.0
    calls = top_fraction(own, fact, 0.6)
    assert not calls.flatten()[easiest]
    logp = torch.log_softmax(logits, -1)
    per = torch.where(calls, -logp[..., CALL], -logp.gather(-1, targets[..., None])[..., 0])
    loss, _ = compute_loss("lacy-online", logits, targets, dele, fact, ref, CALL, None, True)
    assert torch.allclose(loss, per.mean())


def test_online_selections_pick_the_right_tokens():
    values = torch.tensor([[5.0, 1.0, 3.0, 4.0, 2.0], [0.5, 9.0, 8.0, 0.1, 7.0]])
    fact = torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.bool)
    sel = top_fraction(values, fact, 0.6)  # 6 facts -> top 4: 9, 8, 7, 5
    assert sel.nonzero().tolist() == [[0, 0], [1, 1], [1, 2], [1, 4]]
    every = top_fraction(values, torch.ones_like(fact), 0.2)  # 10 targets -> top 2: 9, 8
    assert every.nonzero().tolist() == [[1, 1], [1, 2]]

    logits, targets, dele, fact, ref = hand_batch(1)
    cur = nll_without_call(logits, targets, CALL)
    _, st = compute_loss("lacy-online", logits, targets, dele, fact, ref, CALL)
    assert st["call_targets"] == round(0.6 * int(fact.sum()))
    _, st = compute_loss("loss-online", logits, targets, dele, fact, ref, CALL)
    assert st["call_targets"] == round(0.15 * 10)
    loss, st = compute_loss("rho", logits, targets, dele, fact, ref, CALL)
    excess = torch.where(torch.isnan(ref), torch.tensor(float("-inf")), cur - ref.nan_to_num())
    keep = excess.flatten().argsort(descending=True)[: round(0.6 * 9)]
    assert torch.allclose(loss, cur.flatten()[keep].mean())
    assert st == {"gt_targets": 5, "call_targets": 0, "trained_targets": 5}


def test_ignore_facts_and_standard():
    logits, targets, dele, fact, ref = hand_batch()
    loss, st = compute_loss("ignore-facts", logits, targets, dele, fact, ref, CALL)
    assert torch.allclose(loss, nll_without_call(logits, targets, CALL)[~fact].mean())
    assert st["gt_targets"] == int((~fact).sum())
    loss, st = compute_loss("standard", logits, targets, dele, fact, ref, CALL)
    assert torch.allclose(loss, F.cross_entropy(logits.transpose(1, 2), targets))
    with pytest.raises(ValueError):
        compute_loss("nope", logits, targets, dele, fact, ref, CALL)


def test_bad_shards_give_clear_errors(tmp_path):
    good = {
        "input_ids": [1, 2, 3],
        "delegate": [False] * 3,
        "is_fact": [True] * 3,
        "ref_loss": [1.0, 2.0, 3.0],
    }
    (tmp_path / "missing").mkdir()
    write_rows(tmp_path / "missing/a.parquet", [{k: v for k, v in good.items() if k != "delegate"}])
    with pytest.raises(ShardError, match="missing column"):
        next(iter_sequences(tmp_path / "missing", 2, 0))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/a.parquet").write_bytes(b"")
    with pytest.raises(ShardError, match="not a readable Parquet"):
        next(iter_sequences(tmp_path / "empty", 2, 0))
    (tmp_path / "lengths").mkdir()
    write_rows(tmp_path / "lengths/a.parquet", [good | {"is_fact": [True]}])
    with pytest.raises(ShardError, match="lengths disagree"):
        next(iter_sequences(tmp_path / "lengths", 2, 0))
    with pytest.raises(ShardError, match="no Parquet shards"):
        next(iter_sequences(tmp_path / "nothing", 2, 0))
    (tmp_path / "tiny").mkdir()
    write_rows(tmp_path / "tiny/a.parquet", [good])
    with pytest.raises(ShardError, match="fewer than"):
        next(iter_sequences(tmp_path / "tiny", 50, 0))


def test_evaluate_figures_match_a_hand_computed_fixture(tmp_path):
    from trainer.evaluate import evaluate
    from trainer.model import call_id, load_slm_tokenizer, separator_id

    tok = load_slm_tokenizer()
    V, call = len(tok), call_id(tok)
    assert separator_id(tok) == 0
    docs = [([3, 4, 7, 8], [0, 1, 1, 0]), ([1, 2, 5, 6, 9], [0, 1, 0, 0, 1])]
    table = pa.table(
        {
            "input_ids": [d[0] for d in docs],
            "delegate": [[bool(x) for x in d[1]] for d in docs],
            "is_fact": [[bool(x) for x in d[1]] for d in docs],
            "ref_loss": [[1.0] * len(d[0]) for d in docs],
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data/part.parquet")
    got = evaluate(RuleModel(V, call), tok, str(tmp_path), seq_len=4, batch_size=8)
    # Stream 3 4 7 8 | 0 | 1 2 5 6 9 | 0 -> windows (inputs -> targets, delegated*):
    #   3 4 7 8 -> 4* 7* 8 0     predictions: 4 CALL 8 CALL
    #   0 1 2 5 -> 1 2* 5 6      predictions: CALL 2 CALL 6
    # Calls: 4, on delegated targets: 1 (7*); delegated targets: 3; targets: 8.
    # Non-delegated NLL (<CALL> left out of the softmax): after an odd id that predicts the
    # target, log(V - 2 + e^5) - 5 (twice); after an even id, log(V - 1) (three times).
    hit, flat = np.log(V - 2 + np.exp(5.0)) - 5.0, np.log(V - 1.0)
    # Leakage (<CALL> at -inf, argmax right on delegated targets): 4* (after 3) and 2* (after 1)
    # are right; 7* (after 4: all logits 0, argmax id 0) is not.
    assert got == {
        "call_precision": 0.25,
        "call_recall": round(1 / 3, 4),
        "call_rate": 0.5,
        "nll": round((2 * hit + 3 * flat) / 5, 4),
        "fact_leakage": round(2 / 3, 4),
        "targets": 8,
        "delegated_targets": 3,
    }


def test_teacher_forced_scores_another_fact_set_on_the_same_positions(tmp_path):
    """facts_from: another labelling of the same documents is scored position by position (as
    if it were evaluated alone), and a labelling of other tokens is refused."""
    from trainer.cascade import teacher_forced
    from trainer.model import call_id, load_slm_tokenizer

    tok = load_slm_tokenizer()
    model = RuleModel(len(tok), call_id(tok))

    def labelled(name, facts, ids=([3, 4, 7, 8], [1, 2, 5, 6, 9])):
        rows = [
            {"input_ids": i, "delegate": [bool(x) for x in f], "is_fact": [bool(x) for x in f]}
            | {"ref_loss": [1.0] * len(i)}
            for i, f in zip(ids, facts)
        ]
        (tmp_path / name / "data").mkdir(parents=True)
        write_rows(tmp_path / name / "data/part.parquet", rows)
        return str(tmp_path / name)

    a = labelled("a", ([0, 1, 1, 0], [0, 1, 0, 0, 1]))
    b = labelled("b", ([1, 1, 0, 0], [1, 0, 1, 1, 0]))
    run = dict(budget=0.5, seq_len=4, max_sequences=None)
    both = teacher_forced(model, tok, model, a, **run, facts_from={"b": b})
    alone = teacher_forced(model, tok, model, b, **run)
    assert {k[2:]: v for k, v in both.items() if k.startswith("b/")} == {
        k: v for k, v in alone.items() if "fact" in k
    }
    assert both["b/fact_share"] != both["fact_share"] and "b/cascade_accuracy" not in both
    other = labelled("c", ([0] * 4, [0] * 5), ids=([3, 4, 7, 8], [1, 2, 11, 6, 9]))
    with pytest.raises(ValueError, match="not the same held-out token ids"):
        teacher_forced(model, tok, model, a, **run, facts_from={"c": other})


def test_cascade_spends_the_budget_on_the_highest_scores():
    from trainer.calls import cascade

    score = np.array([0.9, 0.1, 0.8, 0.2, 0.5])
    slm_ok = np.array([0, 1, 0, 1, 0], dtype=bool)
    large_ok = np.array([1, 1, 0, 0, 1], dtype=bool)
    fact = np.array([1, 0, 1, 0, 1], dtype=bool)
    got = cascade(score, slm_ok, large_ok, fact, budget=0.4)  # 2 calls: positions 0 and 2
    assert got == {
        "cascade_fact_accuracy": round(1 / 3, 4),  # facts 0 (large: right), 2 and 4 wrong
        "cascade_accuracy": 0.6,  # 0 (large), 1 and 3 (slm) right
        "call_rate": 0.4,
        "calls_on_facts": 1.0,
    }

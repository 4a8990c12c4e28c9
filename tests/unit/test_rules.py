import numpy as np
import pytest

from lacy_labels.rules import LabelRule

LOSS = np.array([0.5, 4.0, 2.0, np.nan, 3.0, 1.0, 6.0, 0.1, 5.0, 2.5], dtype=np.float32)
FACT = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)


def test_lacy_delegates_top_60_percent_of_facts_by_loss():
    # Fact losses (NaN excluded): 0.5 4 2 1 5 2.5 -> 40th percentile (inverted CDF) = 2.0
    rule = LabelRule("lacy")
    assert rule.threshold(LOSS, FACT) == pytest.approx(2.0)
    d = rule.delegate(LOSS, FACT)
    assert d.tolist() == [False, True, True, False, False, False, False, False, True, True]
    assert d.sum() / FACT[~np.isnan(LOSS)].sum() == pytest.approx(4 / 6)


def test_dataset_threshold_is_applied_as_given():
    rule = LabelRule("lacy")
    d = rule.delegate(LOSS, FACT, threshold=4.5)
    assert np.nonzero(d)[0].tolist() == [8]  # 6.0 is not a fact


def test_document_scope_ignores_the_dataset_threshold():
    rule = LabelRule("lacy", scope="document")
    assert (rule.delegate(LOSS, FACT, threshold=100.0) == rule.delegate(LOSS, FACT)).all()


def test_loss_rule_top_fraction_of_all_tokens():
    rule = LabelRule("loss", loss_fraction=0.2)
    d = rule.delegate(LOSS, FACT)
    assert np.nonzero(d)[0].tolist() == [6, 8]  # 6.0 and 5.0: facts do not matter


def test_none_and_nan_never_delegated():
    assert not LabelRule("none").delegate(LOSS, FACT).any()
    all_nan = np.full(4, np.nan, dtype=np.float32)
    assert not LabelRule("lacy").delegate(all_nan, np.ones(4, bool)).any()
    assert not LabelRule("loss").delegate(LOSS, FACT, threshold=0.0)[3]


def test_no_facts_no_delegation():
    assert not LabelRule("lacy").delegate(LOSS, np.zeros(10, bool)).any()


def test_bad_settings_are_errors():
    with pytest.raises(ValueError):
        LabelRule("rho")
    with pytest.raises(ValueError):
        LabelRule(fact_quantile=1.5)
    with pytest.raises(ValueError):
        LabelRule(scope="batch")


def test_a_loss_floor_keeps_predictable_facts_learnable():
    """With min_loss, a fact is delegated only at or above both the quantile threshold and the
    floor; the threshold itself is still the quantile over every fact."""
    rule = LabelRule("lacy", min_loss=3.0)
    assert rule.threshold(LOSS, FACT) == pytest.approx(2.0)  # the quantile is unchanged
    d = rule.delegate(LOSS, FACT)
    assert np.nonzero(d)[0].tolist() == [1, 8]  # facts at 4.0 and 5.0; 2.0 and 2.5 fall
    assert np.nonzero(rule.delegate(LOSS, FACT, threshold=4.5))[0].tolist() == [8]
    assert np.nonzero(LabelRule("loss", loss_fraction=0.5, min_loss=4.5).delegate(LOSS, FACT))[
        0
    ].tolist() == [6, 8]
    with pytest.raises(ValueError, match="min_loss"):
        LabelRule(min_loss=-1.0)

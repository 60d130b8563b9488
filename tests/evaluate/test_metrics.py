"""Metrics against hand-computed values, extremes, absent classes and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
)

from pipeline.evaluate.bootstrap import weighted_confusion
from pipeline.evaluate.calibration import expected_calibration_error, reliability_table
from pipeline.evaluate.metrics import compute_metrics, confusion_rates
from pipeline.utils.jsonable import jsonable, write_strict_json

CLASSES = ["CN", "MCI", "AD"]


def probs_for(y_pred: list[int], confidence: float = 0.6) -> np.ndarray:
    """Probabilities putting ``confidence`` on the predicted class, the rest shared equally."""
    p = np.full((len(y_pred), 3), (1 - confidence) / 2)
    p[np.arange(len(y_pred)), y_pred] = confidence
    return p


# True CN: CN CN CN MCI | true MCI: MCI MCI AD | true AD: AD AD CN
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]


def test_metrics_match_hand_computed_values() -> None:
    m = compute_metrics(np.array(Y_TRUE), probs_for(Y_PRED), CLASSES)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert m["n_samples"] == 10
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    cn, mci, ad = (m["per_class"][c] for c in CLASSES)
    assert cn["precision"] == pytest.approx(3 / 4)
    assert cn["recall"] == cn["sensitivity"] == pytest.approx(3 / 4)
    assert cn["specificity"] == pytest.approx(5 / 6)  # TN 5, FP 1
    assert cn["npv"] == pytest.approx(5 / 6)  # TN 5, FN 1
    assert cn["f1"] == pytest.approx(0.75)
    assert cn["support"] == 4
    for row in (mci, ad):
        assert row["precision"] == pytest.approx(2 / 3)
        assert row["recall"] == pytest.approx(2 / 3)
        assert row["specificity"] == pytest.approx(6 / 7)
        assert row["npv"] == pytest.approx(6 / 7)
        assert row["f1"] == pytest.approx(2 / 3)
        assert row["support"] == 3
    # p_o = 0.7, p_e = (16 + 9 + 9) / 100
    assert m["kappa"] == pytest.approx((0.7 - 0.34) / 0.66)
    # quadratic: observed disagreement 1 + 1 + 4 = 6, expected 13.8
    assert m["kappa_quadratic"] == pytest.approx(1 - 6 / 13.8)
    assert m["mcc"] == pytest.approx(36 / 66)
    # Ties at 0.6 / 0.2 scores, counted one half (worked out pair by pair).
    assert cn["auc"] == pytest.approx(19 / 24)
    assert mci["auc"] == pytest.approx(16 / 21)
    assert ad["auc"] == pytest.approx(16 / 21)
    assert m["auc_macro"] == pytest.approx((19 / 24 + 32 / 21) / 3)
    # every confidence is 0.6, accuracy 0.7: one bin, gap 0.1
    assert m["ece"] == pytest.approx(0.1)
    assert m["macro"]["f1"] == pytest.approx((0.75 + 4 / 3) / 3)
    assert m["weighted"]["recall"] == pytest.approx(0.7)  # support-weighted recall = accuracy
    assert m["undefined"] == {}


def test_perfect_classifier_reaches_every_maximum() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    m = compute_metrics(y, np.eye(3)[y], CLASSES)
    for key in ("accuracy", "balanced_accuracy", "kappa", "kappa_quadratic", "mcc", "auc_macro"):
        assert m[key] == pytest.approx(1.0), key
    for row in m["per_class"].values():
        for key in ("precision", "recall", "specificity", "npv", "f1", "auc"):
            assert row[key] == pytest.approx(1.0)
    assert m["ece"] == pytest.approx(0.0)
    assert m["confusion_matrix_normalized"] == np.eye(3).tolist()


def test_constant_classifier_is_at_chance_and_its_undefined_values_say_why() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    m = compute_metrics(y, np.tile([0.5, 0.3, 0.2], (10, 1)), CLASSES)
    assert m["accuracy"] == pytest.approx(0.4)
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert m["kappa"] == pytest.approx(0.0)
    assert m["kappa_quadratic"] == pytest.approx(0.0)
    assert m["mcc"] == 0.0
    assert m["auc_macro"] == pytest.approx(0.5)
    cn, mci = m["per_class"]["CN"], m["per_class"]["MCI"]
    assert cn["recall"] == 1.0 and cn["specificity"] == 0.0
    assert cn["precision"] == pytest.approx(0.4)
    assert np.isnan(cn["npv"]) and np.isnan(mci["precision"])
    assert mci["recall"] == 0.0 and mci["f1"] == 0.0  # a real 0: the model misses every MCI
    assert "predicted CN for everyone" in m["undefined"]["per_class.CN.npv"]
    assert "predicted MCI for no one" in m["undefined"]["per_class.MCI.precision"]


def test_absent_class_gives_undefined_values_not_zeros(tmp_path) -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    # One CN is called AD: AD has a false positive but no true cases.
    m = compute_metrics(y, probs_for([0, 0, 2, 1, 1, 0]), CLASSES)
    ad = m["per_class"]["AD"]
    assert ad["support"] == 0
    for key in ("recall", "sensitivity", "f1", "auc"):
        assert np.isnan(ad[key]), key
        assert "no AD cases" in m["undefined"][f"per_class.AD.{key}"]
    assert ad["precision"] == 0.0  # defined: its one AD call is wrong
    assert ad["specificity"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # over present classes
    assert m["auc_macro"] == pytest.approx(
        np.mean([m["per_class"][c]["auc"] for c in ("CN", "MCI")])
    )
    path = tmp_path / "metrics.json"
    write_strict_json(path, m)

    def no_nan(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    loaded = json.loads(path.read_text(), parse_constant=no_nan)
    assert loaded["per_class"]["AD"]["recall"] is None
    assert loaded["per_class"]["AD"]["auc"] is None
    assert loaded["per_class"]["AD"]["specificity"] == pytest.approx(5 / 6)


def test_a_single_class_cohort_does_not_crash() -> None:
    y = np.zeros(4, dtype=int)
    m = compute_metrics(y, probs_for([0, 0, 1, 0]), CLASSES)
    assert m["accuracy"] == pytest.approx(0.75)
    assert np.isnan(m["auc_macro"]) and "auc_macro" in m["undefined"]
    assert np.isnan(m["per_class"]["CN"]["specificity"])
    assert m["kappa"] == pytest.approx(0.0)  # agreement no better than the marginals predict
    assert jsonable(m)["per_class"]["CN"]["specificity"] is None


def test_vectorized_rates_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 3, 200))
    weights = rng.integers(0, 4, (4, 200)).astype(float)
    rates = confusion_rates(weighted_confusion(weights, y, pred, 3))
    for b, w in enumerate(weights):
        kw = {"sample_weight": w}
        assert rates["accuracy"][b] == pytest.approx(accuracy_score(y, pred, **kw))
        assert rates["balanced_accuracy"][b] == pytest.approx(
            balanced_accuracy_score(y, pred, **kw)
        )
        assert rates["kappa"][b] == pytest.approx(cohen_kappa_score(y, pred, **kw))
        assert rates["kappa_quadratic"][b] == pytest.approx(
            cohen_kappa_score(y, pred, weights="quadratic", **kw)
        )
        assert rates["mcc"][b] == pytest.approx(matthews_corrcoef(y, pred, **kw))
        np.testing.assert_allclose(
            rates["precision"][b], precision_score(y, pred, average=None, **kw)
        )
        np.testing.assert_allclose(rates["recall"][b], recall_score(y, pred, average=None, **kw))
        np.testing.assert_allclose(rates["f1"][b], f1_score(y, pred, average=None, **kw))


def test_reliability_table_bins_and_ece() -> None:
    probs = np.array([[0.95, 0.05, 0.0], [0.9, 0.1, 0.0], [0.45, 0.35, 0.2], [0.1, 0.5, 0.4]])
    y = np.array([0, 1, 0, 1])
    table = reliability_table(probs, y, n_bins=10)
    assert table["count"].sum() == 4
    assert table.loc[9, "count"] == 2 and table.loc[9, "accuracy"] == pytest.approx(0.5)
    assert table.loc[9, "confidence"] == pytest.approx(0.925)
    # bins: [0.9, 1.0] gap |0.5 - 0.925| x 2, [0.4, 0.5) gap |1 - 0.45|, [0.5, 0.6) gap |1 - 0.5|
    expected = (2 * 0.425 + 0.55 + 0.5) / 4
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(expected)


def test_bootstrap_ece_formula_equals_torchmetrics() -> None:
    from pipeline.evaluate.calibration import weighted_ece

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (200, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, 200)
    for bins in (5, 10, 15):
        ours = weighted_ece(probs, y, np.ones((1, 200)), bins)[0]
        assert ours == pytest.approx(expected_calibration_error(probs, y, bins), abs=1e-6)

"""Decision rules (pipeline/decision.py): the temperature-and-prior rule fits what it should,
round-trips through the checkpoint, and its cross-fitted score is honest."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decision import (
    ArgmaxRule,
    TemperaturePriorRule,
    crossfit_scores,
    rule_from_dict,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _cohort(n: int, seed: int, priors=(0.6, 0.25, 0.15)):
    """Calibrated probabilities skewed by ``priors``, and labels drawn from them."""
    rng = np.random.default_rng(seed)
    probs = _softmax(rng.normal(0, 1.2, (n, 3)) + np.log(priors))
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return probs, labels


def _bal_acc(labels, predicted) -> float:
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def test_defaults_are_argmax_and_identity() -> None:
    probs, _ = _cohort(50, 0)
    rule = TemperaturePriorRule()
    np.testing.assert_allclose(rule.calibrate(probs), probs, atol=1e-9)
    assert rule.decide(probs).tolist() == ArgmaxRule().decide(probs).tolist()


def test_temperature_undoes_overconfidence() -> None:
    probs, labels = _cohort(3000, 1)
    overconfident = _softmax(np.log(probs) * 3.0)  # as if sharpened by T = 1/3
    fitted = TemperaturePriorRule().fit(overconfident, labels)
    assert fitted.temperature == pytest.approx(3.0, rel=0.15)
    np.testing.assert_allclose(fitted.calibrate(overconfident), probs, atol=0.05)
    # the ranking, hence AUC, is untouched
    assert (fitted.calibrate(overconfident).argmax(1) == overconfident.argmax(1)).all()


def test_prior_shift_recovers_balanced_accuracy() -> None:
    """Probabilities calibrated for a skewed class mix under-call the rare classes; the fitted
    log-bias undoes the prior, and it carries to new cases from the same source."""
    probs, labels = _cohort(3000, 2)
    fitted = TemperaturePriorRule().fit(probs, labels)
    assert fitted.log_bias[0] == 0.0
    # the fitted bias is -log(class frequency), relative to the first class
    freq = np.bincount(labels, minlength=3) / len(labels)
    expected = -np.log(freq / freq[0])
    np.testing.assert_allclose(fitted.log_bias, expected, atol=0.25)
    new_probs, new_labels = _cohort(3000, 3)
    argmax = _bal_acc(new_labels, new_probs.argmax(1))
    ruled = _bal_acc(new_labels, fitted.apply(new_probs).predicted)
    assert ruled > argmax + 0.03
    assert (
        np.bincount(fitted.apply(new_probs).predicted, minlength=3)[2]
        > np.bincount(new_probs.argmax(1), minlength=3)[2]
    )


def test_round_trip_and_description() -> None:
    probs, labels = _cohort(200, 4)
    fitted = TemperaturePriorRule().fit(probs, labels)
    stored = fitted.to_dict()
    assert stored["kind"] == "temperature_prior"
    assert isinstance(stored["log_bias"], list) and len(stored["log_bias"]) == 3
    loaded = rule_from_dict(stored)
    np.testing.assert_allclose(loaded.apply(probs).probabilities, fitted.apply(probs).probabilities,
                               atol=1e-5)  # fmt: skip
    assert loaded.apply(probs).predicted.tolist() == fitted.apply(probs).predicted.tolist()
    assert loaded.describe().startswith("temperature_prior(temperature=")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemperaturePriorRule(temperature=0.0)


def test_a_class_missing_from_validation_keeps_a_zero_bias() -> None:
    probs, labels = _cohort(300, 5)
    keep = labels != 2
    fitted = TemperaturePriorRule().fit(probs[keep], labels[keep])
    assert fitted.log_bias[2] == 0.0 and np.isfinite(fitted.temperature)


def test_crossfit_scores_are_out_of_sample() -> None:
    """Fitted on its own rows the rule looks better than it is; cross-fitted it does not: on
    probabilities that carry no information, the cross-fitted score sits at chance."""
    rng = np.random.default_rng(6)
    labels = rng.choice(3, size=90, p=(0.5, 0.3, 0.2))
    noise = _softmax(rng.normal(0, 1, (90, 3)))
    groups = np.arange(90) % 3
    scores = crossfit_scores(TemperaturePriorRule(), noise, labels, groups)
    assert set(scores) == {"argmax", "fitted", "crossfit"}
    assert scores["crossfit"] < 0.45 and scores["crossfit"] <= scores["fitted"] + 1e-9
    informative, informative_labels = _cohort(300, 7)
    good = crossfit_scores(TemperaturePriorRule(), informative, informative_labels)
    assert good["crossfit"] > good["argmax"]


def test_crossfit_scores_take_the_callers_fitted_rule() -> None:
    """The rule a caller already fitted on all rows is scored as it is, not fitted again."""
    probs, labels = _cohort(300, 8)
    rule = TemperaturePriorRule()
    fitted = rule.fit(probs, labels)
    again = crossfit_scores(rule, probs, labels)
    assert crossfit_scores(rule, probs, labels, fitted=fitted) == again
    argmax_only = TemperaturePriorRule(temperature=1.0, log_bias=(0.0, 0.0, 0.0))
    scores = crossfit_scores(rule, probs, labels, fitted=argmax_only)
    assert scores["fitted"] == scores["argmax"]

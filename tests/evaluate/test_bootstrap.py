"""Subject-level bootstrap: resampling unit, determinism, agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from pipeline.evaluate.bootstrap import (
    bootstrap_intervals,
    paired_difference_interval,
    subject_resample_weights,
    weighted_ovr_auc,
)
from pipeline.evaluate.metrics import compute_metrics

CLASSES = ["CN", "MCI", "AD"]


def noisy_cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_sessions_of_a_subject_are_drawn_together() -> None:
    subjects = ["a", "a", "b", "c", "c", "c"]
    w = subject_resample_weights(subjects, 50, seed=1)
    assert w.shape == (50, 6)
    np.testing.assert_array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w[:, 3], w[:, 5])
    # each resample draws 3 subjects: the per-subject counts sum to 3
    np.testing.assert_array_equal(w[:, 0] + w[:, 2] + w[:, 3], np.full(50, 3.0))
    np.testing.assert_array_equal(w, subject_resample_weights(subjects, 50, seed=1))
    assert not np.array_equal(w, subject_resample_weights(subjects, 50, seed=2))


def test_repeat_sessions_do_not_narrow_the_interval() -> None:
    """Five identical sessions per subject carry no more evidence than one."""
    y, probs = noisy_cohort(30, seed=0)
    subjects = [f"s{i}" for i in range(30)]
    once = bootstrap_intervals(y, probs, subjects, CLASSES, resamples=300, seed=7)
    five = bootstrap_intervals(
        np.repeat(y, 5),
        np.repeat(probs, 5, axis=0),
        np.repeat(subjects, 5).tolist(),
        CLASSES,
        resamples=300,
        seed=7,
    )
    for key in ("accuracy", "balanced_accuracy", "kappa_quadratic", "auc_macro", "ece"):
        assert five[key] == pytest.approx(once[key]), key
    assert five["per_class"]["AD"]["auc"] == pytest.approx(once["per_class"]["AD"]["auc"])


def test_intervals_bracket_the_point_estimate_and_are_reproducible() -> None:
    y, probs = noisy_cohort(80, seed=4)
    subjects = [f"s{i // 2}" for i in range(80)]
    point = compute_metrics(y, probs, CLASSES)
    ci = bootstrap_intervals(y, probs, subjects, CLASSES, resamples=400, seed=0)
    assert ci == bootstrap_intervals(y, probs, subjects, CLASSES, resamples=400, seed=0)
    for key in ("accuracy", "balanced_accuracy", "mcc", "auc_macro"):
        low, high = ci[key]
        assert low < point[key] < high, key
        assert 0.0 < high - low < 0.5
    low, high = ci["per_class"]["CN"]["sensitivity"]
    assert low <= point["per_class"]["CN"]["recall"] <= high
    assert ci["resamples"] == 400 and ci["level"] == 0.95


def test_weighted_auc_equals_scikit_learn_with_ties() -> None:
    y, probs = noisy_cohort(60, seed=2)
    probs = np.round(probs, 1)  # many ties
    weights = np.random.default_rng(0).integers(0, 3, (5, 60)).astype(float)
    auc = weighted_ovr_auc(weights, y, probs)
    for b in range(5):
        for c in range(3):
            expected = roc_auc_score(y == c, probs[:, c], sample_weight=weights[b])
            assert auc[b, c] == pytest.approx(expected)


def test_no_resamples_means_no_intervals() -> None:
    y, probs = noisy_cohort(10, seed=0)
    ci = bootstrap_intervals(y, probs, [str(i) for i in range(10)], CLASSES, resamples=0)
    assert ci["accuracy"] is None and ci["per_class"]["AD"]["auc"] is None


def test_undefined_in_most_resamples_gets_no_interval() -> None:
    y = np.array([0] * 19 + [2])  # one AD subject: absent from ~37% of resamples
    probs = np.tile([0.6, 0.3, 0.1], (20, 1))
    ci = bootstrap_intervals(y, probs, [str(i) for i in range(20)], CLASSES, resamples=200)
    assert ci["per_class"]["MCI"]["recall"] is None  # no MCI subject at all
    assert ci["per_class"]["AD"]["auc"] is not None  # defined in most resamples


def test_paired_difference_is_the_difference_on_shared_resamples() -> None:
    """Against a plain loop: scikit-learn on each subject resample, both decisions on the same
    draw; two copies of one decision differ by exactly 0 in every resample."""
    y, probs = noisy_cohort(60, seed=3)
    subjects = [f"s{i // 2}" for i in range(60)]  # two sessions per subject
    pred_a = probs.argmax(axis=1)
    pred_b = np.where(np.arange(60) % 3 == 0, (y + 1) % 3, pred_a)  # a third made wrong
    weights = subject_resample_weights(subjects, 300, seed=5)
    differences = [
        balanced_accuracy_score(y, pred_a, sample_weight=w)
        - balanced_accuracy_score(y, pred_b, sample_weight=w)
        for w in weights
    ]
    expected = np.percentile(differences, [2.5, 97.5])
    low, high = paired_difference_interval(subjects, y, pred_a, pred_b, 3, resamples=300, seed=5)
    np.testing.assert_allclose([low, high], expected, atol=1e-12)
    assert low > 0
    assert paired_difference_interval(subjects, y, pred_a, pred_a, 3, resamples=300) == (0.0, 0.0)

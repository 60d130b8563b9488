"""pipeline.preprocess.percentile gives np.percentile's answer, bit for bit and type for type."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.percentile import percentile

QS = [[0.5, 99.5], [0.0, 100.0], [25.0, 50.0, 75.0], [99.0], [33.3, 66.7, 12.5, 87.5]]


def _same(ours, numpy_answer) -> None:
    assert type(ours) is type(numpy_answer)
    assert np.asarray(ours).dtype == np.asarray(numpy_answer).dtype
    np.testing.assert_array_equal(ours, numpy_answer)  # NaN equals NaN here


def _arrays(rng: np.random.Generator):
    yield rng.random((3, 128, 110), dtype=np.float32)
    ties = np.zeros((3, 40, 37), np.float32)
    ties[:, 5:30, 4:30] = rng.integers(0, 6, (3, 25, 26))  # mostly background, many ties
    yield ties
    yield rng.normal(size=(7, 13)) * 1e6  # float64
    yield rng.integers(-2000, 3000, (5, 17)).astype(np.int16)
    yield rng.integers(0, 255, 61).astype(np.uint8)
    yield np.array([4.0], np.float32)  # one value
    yield np.array([2.0, 1.0], np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_matches_numpy_for_lists_and_scalars(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for values in _arrays(rng):
        for q in [*QS, list(rng.uniform(0, 100, 4))]:
            _same(percentile(values, q), np.percentile(values, q))
        for q in (0.5, 99.0, 50, 100, float(rng.uniform(0, 100))):  # weak (scalar) q
            _same(percentile(values, q), np.percentile(values, q))
        _same(percentile(values, np.array(99.0)), np.percentile(values, np.array(99.0)))


def test_nan_makes_every_result_nan_as_numpy() -> None:
    values = np.arange(20, dtype=np.float32)
    values[7] = np.nan
    _same(percentile(values, [1.0, 50.0]), np.percentile(values, [1.0, 50.0]))
    _same(percentile(values, 50.0), np.percentile(values, 50.0))
    assert np.isnan(percentile(values, [1.0, 50.0])).all()


def test_refuses_what_numpy_refuses() -> None:
    with pytest.raises(ValueError, match="range"):
        percentile(np.ones(4), [50.0, 101.0])
    with pytest.raises(ValueError, match="range"):
        percentile(np.ones(4), -1.0)
    with pytest.raises(ValueError, match="empty"):
        percentile(np.array([], np.float32), 50.0)


def test_does_not_change_its_input() -> None:
    values = np.array([3.0, 1.0, 2.0])
    percentile(values, [50.0])
    np.testing.assert_array_equal(values, [3.0, 1.0, 2.0])

"""``np.percentile`` with its default ``linear`` method, found with one sort instead of a partition.

NumPy finds a percentile with ``ndarray.partition`` around the wanted ranks (plus the first and
last element, for NaN). ``np.sort`` is vectorized (x86-simd-sort, Highway) and faster on the
arrays the chain takes percentiles of. Best of five, one thread, 2-core machine:

=============================================  ===================  =================
array                                          ``np.percentile``    :func:`percentile`
=============================================  ===================  =================
the chain's box, 3 x 64 x 56 (0.5 and 99.5)    0.169 ms             0.081 ms
the head mask's, 3 x 56 x 56 (99)              0.217 ms             0.084 ms
3 x 128 x 110 (0.5 and 99.5)                   0.66 ms              0.17 ms
=============================================  ===================  =================

``np.percentile`` of the 3 x 128 x 110 array already sorted still takes 0.37-0.53 ms (the
partition runs anyway), so the interpolation is done here: the same steps as NumPy's (``_quantile``,
``_get_indexes`` and ``_lerp`` in ``numpy/lib/_function_base_impl.py``), in the same dtypes, so
the result is NumPy's bit for bit. ``tests/preprocess/test_percentile.py`` checks that on
random arrays of several dtypes, with ties, NaN, the bounds and scalar ``q``.

Example:
    >>> percentile(np.arange(11, dtype=np.float32), [10, 95])
    array([1. , 9.5])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["percentile"]


def percentile(values: np.ndarray, q: float | Sequence[float]) -> np.ndarray | np.generic:
    """``np.percentile(values, q)`` over all of ``values`` (``axis=None``, ``method="linear"``).

    Args:
        values: a real array of any shape, not empty.
        q: one percentile or a sequence of them, each in [0, 100].

    Returns:
        What NumPy returns: a scalar for a scalar ``q`` (of ``values``' float type, as NumPy's
        weak promotion gives), else a float64 array (for float32 or integer ``values``) of
        ``q``'s shape. Any NaN in ``values`` makes every result NaN.
    """
    ordered = np.sort(np.asanyarray(values), axis=None)  # a flat sorted copy; NaN sort last
    if ordered.size == 0:
        raise ValueError("percentile of an empty array")
    weak_q = type(q) in (int, float)  # as np.percentile: a Python number promotes weakly
    quantiles = np.true_divide(q, 100)
    if not bool(np.all((quantiles >= 0) & (quantiles <= 1))):
        raise ValueError("Percentiles must be in the range [0, 100]")
    virtual = np.asanyarray((ordered.size - 1) * quantiles)
    flat = virtual.reshape(-1)  # 1-d, so that a scalar q is indexed as an array too
    previous, following = _neighbours(flat, ordered.size)
    gamma = np.asanyarray(flat - previous, dtype=flat.dtype)
    result = _lerp(ordered[previous], ordered[following], float(gamma[0]) if weak_q else gamma)
    if ordered.dtype.kind in "fc" and np.isnan(ordered[-1]):
        return ordered[-1] if virtual.ndim == 0 else np.full_like(result, np.nan)
    return result.reshape(virtual.shape)[()]


def _neighbours(virtual: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ranks either side of each virtual (fractional) rank ``(K,)``; the last for the top."""
    previous = np.floor(virtual)
    following = previous + 1
    top = virtual >= size - 1
    previous[top], following[top] = -1, -1
    return previous.astype(np.intp), following.astype(np.intp)


def _lerp(low: np.ndarray, high: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """NumPy's interpolation of ``(K,)`` values: from ``low`` below ``t = 0.5``, from ``high``
    at or above."""
    step = high - low
    result = np.add(low, step * t)
    np.subtract(
        high, step * (1 - t), out=result, where=t >= 0.5, casting="unsafe", dtype=result.dtype
    )
    return result

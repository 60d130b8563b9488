"""Which slices are kept: centre block (odd/even stacks), step, offset, and the brain mode."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.preprocess.slices import block_indices, choose_slices, head_center_index


def center(n: int, **cfg) -> list[int]:
    positions = np.arange(n, dtype=float) * 4.0
    return choose_slices(positions, read=None, slices_cfg={"mode": "center", **cfg})


@pytest.mark.parametrize(
    ("n", "count", "expected"),
    [
        (44, 3, [21, 22, 23]),  # even stack, odd count: tie towards the head
        (45, 3, [21, 22, 23]),  # odd stack: exactly centred on 22
        (44, 1, [22]),  # n // 2
        (45, 1, [22]),
        (44, 2, [21, 22]),  # exactly centred on 21.5
        (44, 4, [20, 21, 22, 23]),
        (3, 3, [0, 1, 2]),
    ],
)
def test_center_block(n, count, expected):
    assert center(n, count=count) == expected


def test_step_and_offset():
    assert center(44, count=3, step=2) == [20, 22, 24]
    assert center(44, count=3, offset=5) == [26, 27, 28]
    assert center(44, count=3, step=3, offset=-2) == [17, 20, 23]


def test_block_outside_the_stack_is_an_error():
    with pytest.raises(ValueError, match="outside the 44-slice stack"):
        center(44, count=3, offset=30)
    with pytest.raises(ValueError, match="need 11 slices; the stack has 10"):
        center(10, count=3, step=5)
    assert block_indices(44, 43.0, 3, clamp=True) == [41, 42, 43]


def head_stack(n: int, first: int, last: int, size: int = 32) -> np.ndarray:
    """A stack whose head (a bright disc, widest in its middle) spans slices first..last."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    stack = np.random.default_rng(0).normal(5.0, 1.0, (n, size, size)).astype(np.float32)
    middle, half = (first + last) / 2, (last - first) / 2 + 0.5
    for k in range(first, last + 1):
        radius = (size / 2 - 1) * np.sqrt(max(1 - ((k - middle) / half) ** 2, 0.05))
        stack[k][yy**2 + xx**2 <= radius**2] += 500.0
    return stack


def test_brain_mode_centres_on_an_off_centre_head():
    stack = head_stack(44, first=4, last=30)  # head centre at slice 17, stack centre at 21.5
    decoded: list[int] = []

    def read(indices):
        decoded.extend(indices)
        return stack[list(indices)]

    positions = np.arange(44) * 4.0
    centre = head_center_index(positions, read, samples=12, area_fraction=0.25)
    assert abs(centre - 17) <= 1.0
    cfg = {"mode": "brain", "count": 3, "brain_samples": 12, "brain_area_fraction": 0.25}
    decoded.clear()
    chosen = choose_slices(positions, read, cfg)
    assert len(decoded) <= 12  # samples, not the whole series
    assert chosen[1] in (16, 17, 18)
    assert chosen == [chosen[0], chosen[0] + 1, chosen[0] + 2]
    center_chosen = choose_slices(positions, read, {**cfg, "mode": "center"})
    assert center_chosen == [21, 22, 23]


def test_brain_mode_with_a_head_at_the_edge_stays_inside_the_stack():
    stack = head_stack(20, first=16, last=19)
    cfg = {"mode": "brain", "count": 3, "brain_samples": 20}
    chosen = choose_slices(np.arange(20) * 5.0, lambda idx: stack[list(idx)], cfg)
    assert chosen in ([16, 17, 18], [17, 18, 19])  # head centre about 17.5
    shifted = choose_slices(np.arange(20) * 5.0, lambda idx: stack[list(idx)], {**cfg, "offset": 4})
    assert shifted == [17, 18, 19]  # moved back inside the stack


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"slices\.mode must be one of"):
        center(44, mode="middle")

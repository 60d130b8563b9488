"""Which slices of a geometrically sorted stack to keep.

``slices.mode: center`` (default) keeps ``slices.count`` slices, ``slices.step`` apart, centred
on the middle of the stack and shifted by ``slices.offset`` slices (positive = towards the head).
When the block cannot sit exactly on the centre (an even stack with an odd count, or the
reverse) the tie goes towards the head. So ``count=1`` gives index ``n // 2``, the usual "middle
slice" of viewers and numpy, and the 3-slice block of a 44-slice stack is ``21, 22, 23``
(centre 22 = ``44 // 2``); a 45-slice stack gives ``21, 22, 23`` around its true centre 22.

``slices.mode: brain`` centres the block on the middle of the head's extent along the stack
axis instead, for acquisitions whose field of view is not centred on the head. It decodes
``slices.brain_samples`` evenly spaced slices (not the whole series), measures the head's area
on each (:func:`pipeline.preprocess.head.head_mask`), and takes the extent as the span
where that area is at least ``slices.brain_area_fraction`` of the largest, with the ends
interpolated between samples. The block is then moved inside the stack if it would run over an
end. It works on resliced volumes too (the samples are slices of the output plane).

``slices.mode: template`` centres the block on the slice through a fixed point of the MNI152
template, ``slices.template_point_mm``, after an affine registration of the template to the
subject (:mod:`pipeline.preprocess.template`): the same anatomy for every subject, whatever
the slab placement, for 2D and 3D inputs alike. It decodes the whole stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.preprocess.head import head_mask

CENTER = "center"
BRAIN = "brain"
TEMPLATE = "template"
MODES = (CENTER, BRAIN, TEMPLATE)


def block_indices(
    n_slices: int, center: float, count: int, step: int = 1, offset: int = 0, clamp: bool = False
) -> list[int]:
    """``count`` indices ``step`` apart whose middle is nearest ``center`` (ties towards the head).

    Raises ``ValueError`` when the block does not fit in ``n_slices`` (unless ``clamp``, which
    shifts it inside the stack).
    """
    if count < 1 or step < 1:
        raise ValueError(f"slices.count ({count}) and slices.step ({step}) must be >= 1")
    span = (count - 1) * step
    if span >= n_slices:
        raise ValueError(
            f"{count} slices {step} apart need {span + 1} slices; the stack has {n_slices}"
        )
    start = math.floor(center - span / 2 + 0.5) + offset
    if clamp:
        start = min(max(start, 0), n_slices - 1 - span)
    elif start < 0 or start + span >= n_slices:
        raise ValueError(
            f"slices.offset={offset} moves the block to indices {start}..{start + span}, outside "
            f"the {n_slices}-slice stack"
        )
    return list(range(start, start + span + 1, step))


def head_center_index(
    positions_mm: np.ndarray,
    read: Callable[[Sequence[int]], np.ndarray],
    samples: int = 12,
    area_fraction: float = 0.25,
) -> float:
    """Fractional stack index of the middle of the head's extent along the stack axis.

    ``read`` decodes slices by index (``SliceStack.read``); ``samples`` evenly spaced slices are
    decoded. Returns the middle of the stack when no slice shows a head.
    """
    n = len(positions_mm)
    indices = np.unique(np.linspace(0, n - 1, min(max(samples, 2), n)).round().astype(int))
    areas = head_mask(read(indices.tolist())).sum(axis=(1, 2)).astype(float)
    if areas.max() <= 0:
        return (n - 1) / 2
    inside = areas >= area_fraction * areas.max()
    first, last = np.flatnonzero(inside)[[0, -1]]
    level = area_fraction * areas.max()
    lo = _crossing(indices, areas, first, first - 1, level)
    hi = _crossing(indices, areas, last, last + 1, level)
    return (lo + hi) / 2


def _crossing(
    indices: np.ndarray, areas: np.ndarray, inside: int, outside: int, level: float
) -> float:
    """Index where the area profile crosses ``level`` between two neighbouring samples."""
    if outside < 0 or outside >= len(indices):
        return float(indices[inside])
    a_in, a_out = areas[inside], areas[outside]
    t = (a_in - level) / (a_in - a_out) if a_in != a_out else 0.0
    return float(indices[inside] + t * (indices[outside] - indices[inside]))


def choose_slices(
    positions_mm: np.ndarray,
    read: Callable[[Sequence[int]], np.ndarray],
    slices_cfg: Mapping[str, Any],
    affine: np.ndarray | None = None,
) -> list[int]:
    """Indices of the slices to keep, following the ``slices`` config (see the module doc).

    ``affine`` (the stack's, RAS) is needed by ``template`` mode only.
    """
    n = len(positions_mm)
    mode = str(slices_cfg.get("mode", CENTER))
    count = int(slices_cfg.get("count", 3))
    step = int(slices_cfg.get("step", 1))
    offset = int(slices_cfg.get("offset", 0))
    if mode == CENTER:
        return block_indices(n, (n - 1) / 2, count, step, offset)
    if mode == BRAIN:
        center = head_center_index(
            positions_mm,
            read,
            samples=int(slices_cfg.get("brain_samples", 12)),
            area_fraction=float(slices_cfg.get("brain_area_fraction", 0.25)),
        )
        return block_indices(n, center, count, step, offset, clamp=True)
    if mode == TEMPLATE:
        from pipeline.preprocess.template import DEFAULT_POINT_MM, template_center_index

        if affine is None:
            raise ValueError("slices.mode=template needs the stack's affine")
        point = slices_cfg.get("template_point_mm") or DEFAULT_POINT_MM
        center = template_center_index(read(range(n)), affine, positions_mm, point)
        return block_indices(n, center, count, step, offset, clamp=True)
    raise ValueError(f"slices.mode must be one of {MODES}, got {mode!r}")

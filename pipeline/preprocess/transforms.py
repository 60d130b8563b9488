"""Normalization of the chosen slices: a MONAI transform chain written in ``conf/``.

The chain lives in ``normalize.transforms`` (conf/recipe/default.yaml) as a list of
``_target_`` entries, built with :func:`hydra.utils.instantiate` and composed with
:class:`monai.transforms.Compose`. It receives the chosen slices of one stack as a channel-first
:class:`monai.data.MetaTensor` ``(S, rows, cols)`` whose affine carries the in-plane pixel spacing,
so spacing-aware MONAI transforms work unchanged. The default chain, and why:

1. ``ResizeToSpacing(pixdim=[1, 1])``: resample to isotropic 1 mm pixels. Scanners export
   different matrices and fields of view, sometimes with non-square pixels; after this step a
   millimetre is the same number of pixels for every subject, so the aspect ratio is right and
   the later steps' pixel sizes (smoothing, margin) mean the same anatomy. For these
   axis-aligned slices it does what ``Spacing`` does, as a resize (torch's ``interpolate``, the
   call inside MONAI's ``Resize``), several times cheaper (see :class:`ResizeToSpacing`).
2. ``CropForeground(select_fn=HeadMask(...))``: crop to the head's bounding box (the union over
   the S slices, so the slices stay aligned). :class:`HeadMask` thresholds a lightly smoothed
   image at a fraction of a high percentile, which ignores the Rician noise of the air and the
   scanner's arbitrary intensity scale, and drops small bright specks away from the head; it
   works on a 2x coarser grid (``shrink``), ample for a box with a 4-pixel margin.
3. ``Resize(size_mode="longest", mode="area")``: scale the head's longer side to
   ``normalize.size`` pixels, keeping the aspect ratio. ``area`` averages the source pixels
   under each output pixel: alias-free shrinking, twenty times cheaper than MONAI's Gaussian
   ``anti_aliasing``; heads span well over 128 mm, so this is a shrink (for a ``size`` above the
   head's extent in pixels, choose ``bilinear``). This also normalizes head size, as an affine
   registration would; relative measures such as ventricle-to-brain ratio are kept. For a fixed
   anatomical scale instead, replace it with ``ResizeWithPadOrCrop`` after ``Spacing`` (then
   ``size * pixdim`` mm must hold the largest head).
4. ``FastScaleIntensityRangePercentiles(0.5, 99.5 -> 0, 1, clip)``: robust intensity scaling
   over the head's box, jointly for the S slices (their relative contrast is kept). MR
   intensities have no absolute unit; percentiles are immune to a few hot pixels. MONAI's
   transform with a faster percentile; it runs after the resize, on a third of the pixels.
5. ``SpatialPad`` to ``size x size`` with 0, which is the background after step 4.

Any other MONAI array transform can be added in the config; the output must be
``(S, size, size)``.

Metadata: only the chain's first step reads the affine (the pixel spacing), so the chain runs
with MONAI's ``set_track_meta(False)``: the first step still reads its input's affine, and the
steps after it work on plain tensors, without MONAI's per-operation metadata bookkeeping
(``MetaTensor.__torch_function__``, ``applied_operations``). Measured on the chosen slices of
the 240 demo subjects (loaded 2-core machine): the default chain 22.0 -> 15.5 ms per subject,
identical output. A chain with a step after the first whose output depends on the affine
(:data:`READS_AFFINE`) keeps the metadata tracked.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.data.utils import affine_to_spacing, to_affine_nd
from monai.transforms import (
    Compose,
    Orientation,
    ResampleToMatch,
    Resize,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacing,
    SpatialResample,
    Transform,
)
from monai.utils import convert_to_numpy, convert_to_tensor

from pipeline.preprocess.head import HeadMask, head_mask
from pipeline.preprocess.percentile import percentile

__all__ = [
    "FastScaleIntensityRangePercentiles",
    "HeadMask",
    "ResizeToSpacing",
    "SliceNormalizer",
    "head_mask",
]


#: The interpolation modes of :func:`torch.nn.functional.interpolate` ("area" is a box filter;
#: "bilinear" is linear along every spatial axis, however many there are).
_INTERPOLATE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
_LINEAR_BY_AXES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class ResizeToSpacing(Transform):
    """Resample ``(C, rows, cols)`` at ``(r, c)`` mm pixels to ``pixdim`` mm pixels:
    ``(C, round(rows * r / pixdim[0]), round(cols * c / pixdim[1]))``, with
    :func:`torch.nn.functional.interpolate` (``mode`` and ``align_corners`` as in MONAI's
    :class:`~monai.transforms.Resize`).

    For an axis-aligned image, such as the chain's slices (their affine is the pixel spacing
    alone), resampling to a spacing is a resize; MONAI's :class:`~monai.transforms.Spacing`
    does it with an affine grid instead. A rotated affine is refused (use ``Spacing`` there).

    Why not MONAI's ``Resize``, which does the same resize: it hands torch the image as one
    item of ``C`` channels, and torch's bilinear kernel is 3x slower on that layout than on
    ``C`` items of one channel, the same values; with MONAI's bookkeeping on top, three
    240 x 240 slices at 0.94 mm took 1.97 ms through ``Resize`` against 0.36 ms here (2-core
    machine, one thread; ``Spacing`` was 3.5x slower than ``Resize`` on an earlier machine).

    Example:
        >>> spacing = torch.diag(torch.tensor([1.0, 2.0, 1.0, 1.0]))  # rows 1 mm, columns 2 mm
        >>> image = MetaTensor(torch.ones(1, 40, 20), affine=spacing)
        >>> tuple(ResizeToSpacing(pixdim=[1.0, 1.0])(image).shape)
        (1, 40, 40)
    """

    def __init__(
        self,
        pixdim: Sequence[float] | float,
        mode: str = "bilinear",
        align_corners: bool | None = None,
    ) -> None:
        self.pixdim = np.atleast_1d(np.asarray(pixdim, dtype=np.float64))
        if mode not in _INTERPOLATE_MODES:
            raise ValueError(f"ResizeToSpacing mode must be one of {_INTERPOLATE_MODES}: {mode!r}")
        self.mode = mode
        self.align_corners = align_corners if mode in ("bilinear", "bicubic") else None

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` a :class:`~monai.data.MetaTensor` whose affine gives the pixel spacing.

        With MONAI's ``track_meta`` on, MONAI's ``Resize`` does the resize and the result is a
        MetaTensor with its affine updated; off (as in the chain), a plain float32 tensor.
        """
        shape = np.asarray(img.shape[1:])
        spacing = self._spacing(img, len(shape))
        pixdim = np.resize(self.pixdim, len(shape))  # one value: every spatial axis
        size = tuple(int(v) for v in np.maximum(np.rint(shape * spacing / pixdim), 1))
        if get_track_meta():
            return Resize(spatial_size=size, mode=self.mode, align_corners=self.align_corners)(img)
        items = img.as_tensor() if isinstance(img, MetaTensor) else img
        items = items.to(torch.float32).unsqueeze(1)  # (C, 1, *spatial): each channel an item
        if tuple(items.shape[2:]) == size:
            return items.squeeze(1).clone()
        mode = _LINEAR_BY_AXES[len(size)] if self.mode == "bilinear" else self.mode
        out = torch.nn.functional.interpolate(
            items, size=size, mode=mode, align_corners=self.align_corners
        )
        return out.squeeze(1)

    @staticmethod
    def _spacing(img: torch.Tensor, spatial: int) -> np.ndarray:
        """The pixel spacing of ``img``'s (pending) affine; ``ValueError`` when it is rotated."""
        affine = img.peek_pending_affine() if isinstance(img, MetaTensor) else None
        if affine is None:
            raise ValueError("ResizeToSpacing needs a MetaTensor whose affine holds the spacing")
        affine = to_affine_nd(spatial, convert_to_numpy(affine))
        linear = affine[:spatial, :spatial]
        if not np.allclose(linear, np.diag(np.diag(linear)), atol=1e-6):
            raise ValueError("ResizeToSpacing takes axis-aligned images only; use Spacing")
        return affine_to_spacing(affine, spatial)


#: MONAI array transforms whose output depends on their input's affine (see the module
#: docstring: after the first step of a chain, one of these needs the metadata tracked).
READS_AFFINE = (ResizeToSpacing, Spacing, Orientation, SpatialResample, ResampleToMatch)


class FastScaleIntensityRangePercentiles(ScaleIntensityRangePercentiles):
    """MONAI's :class:`~monai.transforms.ScaleIntensityRangePercentiles`, same arguments and
    result, with both percentiles found in one sort.

    MONAI computes each percentile of a CPU tensor with ``torch.quantile`` (a full sort each).
    Measured on the chosen slices of 40 demo subjects, the whole default chain took 8.9 ms per
    subject with ``np.percentile`` here and 16.9 ms with MONAI's own (13.5 against 20.0 ms in a
    second run, a loaded 2-core machine), with identical output. :func:`.percentile.percentile`
    gives ``np.percentile``'s numbers from one vectorized sort: 0.08 against 0.17 ms on the
    default chain's 3 x 64 x 56 box. Percentiles are taken over all channels together unless
    ``channel_wise``.
    """

    def _normalize(self, img: torch.Tensor) -> torch.Tensor:
        values = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        a_min, a_max = (float(v) for v in percentile(values, [self.lower, self.upper]))
        b_min, b_max = self.b_min, self.b_max
        if self.relative:
            if b_min is None or b_max is None:
                raise ValueError("If it is relative, b_min and b_max should not be None.")
            b_min, b_max = (
                (self.b_max - self.b_min) * (self.lower / 100.0) + self.b_min,
                (self.b_max - self.b_min) * (self.upper / 100.0) + self.b_min,
            )
        scale = ScaleIntensityRange(a_min, a_max, b_min, b_max, clip=self.clip, dtype=self.dtype)
        return convert_to_tensor(scale(img), track_meta=False)


@functools.lru_cache(maxsize=8)
def _compose(transforms_json: str) -> Compose:
    return Compose(instantiate(json.loads(transforms_json), _convert_="all"))


def build_chain(transforms: Sequence[Mapping[str, Any]]) -> Compose:
    """Instantiate a list of ``_target_`` configs into a MONAI :class:`Compose` (memoized)."""
    return _compose(json.dumps(list(transforms), sort_keys=True))


class SliceNormalizer:
    """Apply the ``normalize`` config to the chosen slices of one stack.

    Args:
        normalize_cfg: the resolved ``normalize`` section: ``size`` and ``transforms``.
    """

    def __init__(self, normalize_cfg: Mapping[str, Any]) -> None:
        self.size = int(normalize_cfg["size"])
        chain = build_chain(normalize_cfg.get("transforms") or [])
        self.chain: Callable[[Any], Any] = chain
        self.track_meta = any(isinstance(t, READS_AFFINE) for t in chain.transforms[1:])

    def __call__(self, slices: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> np.ndarray:
        """``(S, rows, cols)`` physical pixels -> ``(S, size, size)`` float32."""
        low, high = float(np.min(slices)), float(np.max(slices))  # NaN and inf propagate
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("the chosen slices hold NaN or infinite pixel values")
        if high == low:
            raise ValueError("the chosen slices are blank (one constant value): no head to crop")
        row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
        affine = torch.diag(torch.tensor([row_mm, col_mm, 1.0, 1.0], dtype=torch.float64))
        image = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(slices, np.float32)), affine=affine
        )
        try:
            with _tracking_meta(self.track_meta):
                out = self.chain(image)
        except RuntimeError as exc:  # MONAI wraps the failing step's error; keep both
            cause = exc.__cause__ or exc
            raise ValueError(f"normalization failed: {exc} ({cause})") from exc
        arr = (out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)).numpy()
        expected = (slices.shape[0], self.size, self.size)
        if arr.shape != expected:
            raise ValueError(
                f"normalize.transforms produced shape {arr.shape}, expected {expected}: the chain "
                f"must end at normalize.size={self.size} pixels (e.g. with SpatialPad)"
            )
        if not np.isfinite(arr).all():
            raise ValueError("normalization produced NaN or infinite values")
        return arr.astype(np.float32, copy=False)


@contextlib.contextmanager
def _tracking_meta(track: bool) -> Iterator[None]:
    """MONAI's global ``track_meta`` set to ``track`` inside, restored afterwards."""
    before = get_track_meta()
    set_track_meta(track)
    try:
        yield
    finally:
        set_track_meta(before)

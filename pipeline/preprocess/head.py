"""Where the head is in a slice: the mask that both slice choice and cropping use.

:func:`head_mask` is NumPy/SciPy only, so :mod:`.slices` (``slices.mode: brain``) can use it
without the MONAI chain; :class:`HeadMask` is the ``select_fn`` of the chain's
``CropForeground`` step (conf/recipe/default.yaml names it as
``pipeline.preprocess.transforms.HeadMask``, which re-exports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.preprocess.percentile import percentile as sorted_percentile


def head_mask(
    image: np.ndarray, fraction: float = 0.1, percentile: float = 99.0, smooth_px: float = 1.0
) -> np.ndarray:
    """Boolean mask of the head in ``image`` ``(S, rows, cols)``, slice by slice.

    A pixel is head when its lightly smoothed value exceeds ``fraction`` times the
    ``percentile``-th percentile of the smoothed image (one threshold for all S slices, so a
    slice near the top of the head is not judged on its own dim scale).
    """
    from scipy import ndimage  # here, not at the top: slice-choice options load without SciPy

    arr = np.asarray(image, dtype=np.float32)
    if smooth_px > 0:
        arr = ndimage.gaussian_filter(arr, sigma=(0, smooth_px, smooth_px), mode="nearest")
    low = float(np.min(arr))
    # Every other pixel of the smoothed image gives the same percentile at a quarter the cost;
    # np.percentile's number, from a sort (0.08 against 0.22 ms on 3 x 56 x 56 pixels).
    high = float(sorted_percentile(arr[..., ::2, ::2], percentile))
    # Measure from the minimum: data with an intercept (signed, offset) has air well below 0.
    return arr > low + fraction * (high - low)


def block_mean(stack: np.ndarray, factor: int) -> np.ndarray:
    """``(S, rows, cols)`` -> ``(S, rows // factor, cols // factor)``: the mean of each block.

    Rows and columns that do not fill a whole block (at the far edges) are left out.
    """
    if factor == 1:
        return stack
    s, rows, cols = stack.shape
    r, c = max(rows // factor, 1), max(cols // factor, 1)
    f_r, f_c = min(factor, rows), min(factor, cols)
    # A sum of strided views: 10x faster than reshape(...).mean(axis=(2, 4)) on 240 x 240.
    total = np.zeros((s, r, c), np.float32)
    for i in range(f_r):
        for j in range(f_c):
            total += stack[:, i : r * f_r : f_r, j : c * f_c : f_c]
    return total / np.float32(f_r * f_c)


def repeat_to(mask: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Undo :func:`block_mean` for a mask: each pixel repeated ``factor`` times along rows and
    columns, the left-out edge copied from its neighbour, giving exactly ``shape``.

    One gather per axis, of the coarse pixel each full-size row and column lies in: 33 against
    72 us (``ndarray.repeat`` twice, then ``np.pad`` for the edge) for one 225 x 225 mask.
    """
    if factor == 1:
        return mask
    rows = np.minimum(np.arange(shape[1]) // factor, mask.shape[1] - 1)
    cols = np.minimum(np.arange(shape[2]) // factor, mask.shape[2] - 1)
    return mask[:, rows][:, :, cols]


class HeadMask:
    """``select_fn`` for :class:`monai.transforms.CropForeground`: the head, without stray specks.

    Args:
        fraction: threshold as a fraction of the ``percentile``-th percentile (above the minimum).
        percentile: the robust "bright tissue" level.
        smooth_px: Gaussian sigma in pixels applied before thresholding; averages out noise.
        min_component: connected regions of the union over the slices smaller than this
            fraction of the largest one are dropped, so a bright artefact in the air does not
            widen the crop.
        shrink: find the mask on a grid this many times coarser (each ``shrink x shrink`` block
            averaged; ``smooth_px`` is in full-resolution pixels either way), then repeat it back
            to full size. The mask only places a bounding box with a margin of several pixels,
            so a 2-pixel grid is fine enough; it cuts the mask's cost by 3.5x (2.5 -> 0.7 ms for
            three 240 x 240 slices, 2-core reference machine).

    Example:
        >>> image = np.zeros((3, 64, 64), np.float32); image[:, 16:48, 20:44] = 100.0
        >>> mask = HeadMask()(image)  # one channel: the union over the 3 slices
        >>> mask.shape, bool(mask[0, 32, 32]), bool(mask[0, 2, 2])
        ((1, 64, 64), True, False)
    """

    def __init__(
        self,
        fraction: float = 0.1,
        percentile: float = 99.0,
        smooth_px: float = 1.0,
        min_component: float = 0.05,
        shrink: int = 1,
    ) -> None:
        if int(shrink) < 1:
            raise ValueError(f"HeadMask shrink must be a whole number >= 1, not {shrink!r}")
        self.fraction = fraction
        self.percentile = percentile
        self.smooth_px = smooth_px
        self.min_component = min_component
        self.shrink = int(shrink)

    def __call__(self, img: Any) -> np.ndarray:
        """``img`` (S, rows, cols), an array or a tensor -> boolean ``(1, rows, cols)``: the head
        in any of the S slices.

        One channel, the union: ``CropForeground`` reduces its ``select_fn``'s mask over the
        channels anyway (``select_fn(img).any(0)``), so specks are dropped once, on the union,
        and only one mask is repeated back to full size (the first 100 demo subjects, three
        240 x 240 slices each: 2.75 -> 2.03 ms, best of five, the same boxes).
        """
        arr = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
        stack = arr.reshape(-1, *arr.shape[-2:])
        coarse = block_mean(stack, self.shrink)
        mask = head_mask(coarse, self.fraction, self.percentile, self.smooth_px / self.shrink)
        union = mask.any(axis=0)
        if self.min_component > 0:
            union = self._drop_specks(union)
        return repeat_to(union[None], self.shrink, (1, *stack.shape[1:]))

    def _drop_specks(self, mask: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        labels, n = ndimage.label(mask)
        if n <= 1:
            return mask
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0  # the background
        keep = sizes >= self.min_component * sizes.max()
        keep[0] = False
        return keep[labels]

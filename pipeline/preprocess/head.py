"""Where the head is in a slice: the mask that both slice choice and cropping use.

:func:`head_mask` is NumPy/SciPy only, so :mod:`.slices` (``slices.mode: brain``) can use it
without the MONAI chain; :class:`HeadMask` is the ``select_fn`` of the chain's
``CropForeground`` step (conf/recipe/default.yaml names it as
``pipeline.preprocess.transforms.HeadMask``, which re-exports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np


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
    # Every other pixel of the smoothed image gives the same percentile at a quarter the cost.
    high = float(np.percentile(arr[..., ::2, ::2], percentile))
    # Measure from the minimum: data with an intercept (signed, offset) has air well below 0.
    return arr > low + fraction * (high - low)


class HeadMask:
    """``select_fn`` for :class:`monai.transforms.CropForeground`: the head, without stray specks.

    Args:
        fraction: threshold as a fraction of the ``percentile``-th percentile (above the minimum).
        percentile: the robust "bright tissue" level.
        smooth_px: Gaussian sigma in pixels applied before thresholding; averages out noise.
        min_component: connected regions smaller than this fraction of the largest one (per slice)
            are dropped, so a bright artefact in the air does not widen the crop.
    """

    def __init__(
        self,
        fraction: float = 0.1,
        percentile: float = 99.0,
        smooth_px: float = 1.0,
        min_component: float = 0.05,
    ) -> None:
        self.fraction = fraction
        self.percentile = percentile
        self.smooth_px = smooth_px
        self.min_component = min_component

    def __call__(self, img: Any) -> np.ndarray:
        """``img`` (S, rows, cols), an array or a tensor -> boolean mask of the same shape."""
        arr = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
        mask = head_mask(arr, self.fraction, self.percentile, self.smooth_px)
        if self.min_component > 0:
            mask = np.stack([self._drop_specks(m) for m in mask.reshape(-1, *mask.shape[-2:])])
        return mask.reshape(arr.shape)

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

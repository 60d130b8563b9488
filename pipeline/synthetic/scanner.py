"""What the scanner adds to the tissue images: bias field, intensity scale, Rician noise, and
the integer pixel values written to DICOM (with RescaleSlope/Intercept)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.synthetic.geometry import SliceGeometry
from pipeline.synthetic.render import COARSE_STEP


@dataclass(frozen=True)
class Acquisition:
    """One series' image-quality settings (drawn per subject from the site's ranges)."""

    wm_value: float  # physical intensity of white matter
    noise_sd: float  # Rician noise sd as a fraction of white matter
    bias_vectors: np.ndarray  # (k, 3) rad/mm, plane waves of the log bias field (patient space)
    bias_phases: np.ndarray  # (k,)
    bias_amplitudes: np.ndarray  # (k,), sum of |a| = half the peak-to-peak log amplitude
    rescale_slope: float
    rescale_intercept: float
    bits_stored: int

    def bias(self, lps: np.ndarray) -> np.ndarray:
        """Multiplicative bias at patient points ``(..., 3)``."""
        return np.exp(np.sin(lps @ self.bias_vectors.T + self.bias_phases) @ self.bias_amplitudes)


def bias_field(acq: Acquisition, geometry: SliceGeometry) -> np.ndarray:
    """The bias field at every pixel, ``(n, rows, cols)``: smooth, so computed coarse, upsampled."""
    pts, _ = geometry.pixel_points(COARSE_STEP)
    coarse = torch.from_numpy(acq.bias(pts).astype(np.float32))[:, None]
    fine = F.interpolate(
        coarse, size=(geometry.rows, geometry.cols), mode="bilinear", align_corners=True
    )
    return fine[:, 0].numpy()


def acquire(
    images: np.ndarray, acq: Acquisition, geometry: SliceGeometry, rng: np.random.Generator
) -> np.ndarray:
    """Tissue images (WM ~ 1) -> physical magnitude images with bias and Rician noise."""
    signal = torch.from_numpy(images * bias_field(acq, geometry))
    signal *= acq.wm_value
    sd = acq.noise_sd * acq.wm_value
    # torch draws normals twice as fast as numpy; its generator is seeded from the subject's.
    noise = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    real = torch.randn(signal.shape, generator=noise).mul_(sd).add_(signal)
    imag = torch.randn(signal.shape, generator=noise).mul_(sd)
    # magnitude of the complex signal: Rician in tissue, Rayleigh in the background
    return torch.sqrt(real * real + imag * imag).numpy()


def to_stored(values: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Physical values -> unsigned stored pixel values (``value = stored * slope + intercept``)."""
    stored = np.rint((values - acq.rescale_intercept) / acq.rescale_slope)
    return np.clip(stored, 0, 2**acq.bits_stored - 1).astype(np.uint16)

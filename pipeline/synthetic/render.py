"""Draw a subject's anatomy on the planes of a series: noise-free tissue images, WM = 1.

Only the pixels we write are ever computed. For each series:

1. the pixel grid, 6x coarser in-plane, goes from patient coordinates to the template through
   the head pose, a smooth random deformation (a sum of random plane waves) and the subject's
   ventricle enlargement;
2. those template coordinates and the smooth per-pixel quantities (distance to the brain outline,
   local cortical thinning) are upsampled bilinearly to every pixel (exact for the affine part,
   and the rest is smooth);
3. the T1 template and the external-CSF depth are sampled at every pixel inside the head
   outline; tissue closer to sulcal CSF than the local thinning becomes CSF (thinner cortex,
   wider sulci), and a contrast curve maps template intensities to the subject's;
4. outside the outline, CSF, skull (with its marrow) and scalp are drawn as layers of the
   distance to the outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.synthetic.atlas import VENTRICLE_REACH_MM, Atlas
from pipeline.synthetic.geometry import HeadPose, SliceGeometry

#: In-plane subsampling of the smooth quantities (pixels).
COARSE_STEP = 6

#: An enlarged ventricle is filled from this deep (mm) inside the template's wall: pure CSF,
#: clear of the wall's partial volume.
VENTRICLE_INSIDE_MM = 1.5

#: Regions where Alzheimer's atrophy is strongest: (RAS centre mm, sigma mm). Medial temporal
#: lobes (hippocampus, entorhinal cortex), lateral temporal and parietal association cortex.
ATROPHY_HOTSPOTS: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((-26.0, -20.0, -14.0), 14.0),
    ((26.0, -20.0, -14.0), 14.0),
    ((-52.0, -30.0, -6.0), 20.0),
    ((52.0, -30.0, -6.0), 20.0),
    ((-38.0, -62.0, 38.0), 22.0),
    ((38.0, -62.0, 38.0), 22.0),
    ((0.0, -58.0, 32.0), 16.0),  # precuneus / posterior cingulate
)

#: Layers outside the brain outline, as (distance mm, intensity relative to WM); ``None`` stands
#: for the subject's CSF intensity. Skull tables are dark, its marrow and the scalp fat bright.
SHELL_PROFILE: tuple[tuple[float, float | None], ...] = (
    (0.0, None),
    (1.5, None),
    (2.5, 0.08),
    (3.8, 0.08),
    (5.0, 0.45),
    (6.2, 0.08),
    (7.5, 0.08),
    (8.8, 0.9),
    (12.5, 0.8),
    (13.5, 0.45),
    (14.5, 0.0),
)


@dataclass(frozen=True)
class Anatomy:
    """Everything that shapes one subject's head (drawn in :mod:`pipeline.synthetic.subject`)."""

    pose: HeadPose
    wave_vectors: np.ndarray  # (k, 3) rad/mm, smooth random deformation in template space
    wave_phases: np.ndarray  # (k,)
    wave_amplitudes: np.ndarray  # (k, 3) mm
    ventricle_expansion_mm: float  # how far (mm) the ventricle wall moves out (>= 0)
    cortical_thinning_mm: float  # everywhere
    regional_thinning_mm: float  # extra, scaled by the hotspot weight (disease pattern)
    skull_scale: float  # thickness of the layers outside the brain
    contrast_csf: float  # CSF intensity relative to WM
    contrast_gm: float  # GM intensity relative to WM

    def deformation(self, ras: np.ndarray) -> np.ndarray:
        """Smooth random displacement (mm) at template points ``(..., 3)``."""
        phase = ras @ self.wave_vectors.T + self.wave_phases  # (..., k)
        return np.sin(phase) @ self.wave_amplitudes


def ventricle_shift(distance: np.ndarray, expansion_mm: float) -> np.ndarray:
    """Pull-back distance (mm, towards the ventricles) that moves their wall out by
    ``expansion_mm``.

    ``distance`` is the signed distance to the template's ventricle wall. Output points closer
    than ``expansion_mm`` sample the template just inside the wall (pure CSF, never deeper, so a
    large expansion cannot pull the opposite wall or the septum through); beyond, the tissue is
    compressed, the shift fading to zero ``VENTRICLE_REACH_MM`` further out. The map stays
    monotonic, so nothing folds.
    """
    e = max(float(expansion_mm), 0.0)
    near = distance + VENTRICLE_INSIDE_MM
    far = (e + VENTRICLE_INSIDE_MM) * (1.0 - (distance - e) / VENTRICLE_REACH_MM)
    return np.clip(np.minimum(near, far), 0.0, None)


def hotspot_weight(ras: np.ndarray) -> np.ndarray:
    """Atrophy emphasis in ``[0, 1]`` at template points ``(..., 3)``: 1 at a hotspot centre."""
    weight = np.zeros(ras.shape[:-1], np.float32)
    for centre, sigma in ATROPHY_HOTSPOTS:
        d2 = np.sum((ras - np.asarray(centre, np.float32)) ** 2, axis=-1)
        weight = np.maximum(weight, np.exp(-0.5 * d2 / sigma**2))
    return weight


def grid_coordinates(volume: torch.Tensor, ras_to_index: np.ndarray, ras: np.ndarray) -> np.ndarray:
    """RAS points ``(..., 3)`` -> ``grid_sample`` coordinates of ``volume (1, C, K, J, I)``.

    ``grid_sample`` wants (x, y, z) = (I, J, K) scaled to [-1, 1] (``align_corners=True``: -1
    and 1 are the first and last voxel centres); the whole map is one affine transform.
    """
    size = np.array(volume.shape[2:][::-1], dtype=np.float64)  # (I, J, K)
    to_grid = np.diag(np.r_[2.0 / (size - 1), 1.0])
    to_grid[:3, 3] = -1.0
    m = to_grid @ ras_to_index
    return (ras @ m[:3, :3].T + m[:3, 3]).astype(np.float32)


def sample(volume: torch.Tensor, grid: torch.Tensor, padding: str) -> torch.Tensor:
    """Trilinear samples of ``volume (1, C, K, J, I)`` at grid points ``(N, 3)``: ``(C, N)``."""
    out = F.grid_sample(
        volume, grid.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode=padding, align_corners=True
    )
    return out.view(volume.shape[1], -1)


def contrast_curve(values: np.ndarray, atlas: Atlas, csf: float, gm: float) -> np.ndarray:
    """Map template intensities to the subject's (CSF, GM, WM -> ``csf``, ``gm``, 1)."""
    lv = atlas.levels
    top = 1.0 + (1.0 - lv.wm) * (1.0 - gm) / (lv.wm - lv.gm)
    return np.interp(values, [0.0, lv.csf, lv.gm, lv.wm, 1.0], [0.0, csf, gm, 1.0, top])


def shell_intensity(distance_mm: np.ndarray, csf: float) -> np.ndarray:
    """Intensity of the CSF/skull/scalp layers at a distance outside the brain outline."""
    knots = np.array([d for d, _ in SHELL_PROFILE])
    values = np.array([csf if v is None else v for _, v in SHELL_PROFILE])
    return np.interp(distance_mm, knots, values, right=0.0)


@dataclass(frozen=True)
class Rendering:
    """Noise-free images of one series and where the head is in them."""

    images: np.ndarray  # (n, rows, cols) float32, WM ~ 1
    head_fraction: np.ndarray  # (n,) fraction of each slice's pixels inside the scalp
    brain_fraction: np.ndarray  # (n,) fraction inside the brain outline


def render(atlas: Atlas, anatomy: Anatomy, geometry: SliceGeometry) -> Rendering:
    """Synthesize the tissue images of ``geometry``'s slices for ``anatomy``."""
    pts, (nr, nc) = geometry.pixel_points(COARSE_STEP)
    n = geometry.n_slices
    ras = anatomy.pose.patient_to_template(pts.reshape(-1, 3))
    ras = ras + anatomy.deformation(ras)
    coarse_grid = torch.from_numpy(grid_coordinates(atlas.coarse, atlas.coarse_ras_to_index, ras))
    coarse = sample(atlas.coarse, coarse_grid, padding="border").numpy()
    shift = ventricle_shift(coarse[3], anatomy.ventricle_expansion_mm)
    ras = ras - shift[:, None] * coarse[:3].T  # sample towards the ventricles
    outline = coarse[4] * (1.0 / anatomy.skull_scale)
    thinning = anatomy.cortical_thinning_mm + anatomy.regional_thinning_mm * hotspot_weight(ras)

    # Upsample what the fine stage needs: fine-volume grid coordinates (affine in RAS, so
    # interpolating them equals mapping interpolated RAS), outline distance and thinning.
    fine_grid = grid_coordinates(atlas.fine, atlas.fine_ras_to_index, ras)
    smooth = np.concatenate([fine_grid, outline[:, None], thinning[:, None]], axis=1)
    smooth_t = torch.from_numpy(smooth.astype(np.float32)).view(n, nr, nc, 5).permute(0, 3, 1, 2)
    up = F.interpolate(
        smooth_t, size=(geometry.rows, geometry.cols), mode="bilinear", align_corners=True
    )
    up = up.permute(0, 2, 3, 1).reshape(-1, 5)  # (n * rows * cols, 5)
    outline_up = up[:, 3]
    inside = outline_up < 0.0

    image = torch.from_numpy(shell_intensity(outline_up.numpy(), anatomy.contrast_csf))
    image = image.to(torch.float32)
    if bool(inside.any()):
        chosen = up[inside]
        t1, depth = sample(atlas.fine, chosen[:, :3].contiguous(), padding="border")
        lost = (chosen[:, 4] - depth + 0.5).clamp_(0.0, 1.0)
        t1 = t1 + lost * (atlas.levels.csf - t1)
        image[inside] = torch.from_numpy(
            contrast_curve(t1.numpy(), atlas, anatomy.contrast_csf, anatomy.contrast_gm)
        ).to(torch.float32)

    shape = (n, geometry.rows, geometry.cols)
    head = (outline_up < SHELL_PROFILE[-1][0]).view(shape)
    return Rendering(
        images=image.view(shape).numpy(),
        head_fraction=head.float().mean(dim=(1, 2)).numpy(),
        brain_fraction=inside.view(shape).float().mean(dim=(1, 2)).numpy(),
    )

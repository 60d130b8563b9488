"""The anatomy every synthetic subject is warped from: nilearn's bundled MNI152 templates.

nilearn ships the ICBM 2009a symmetric T1 template with its grey-matter, white-matter and brain
masks (they load offline). From them this module derives, once per process, the few volumes the
renderer samples:

- ``fine`` (1 mm, 2 channels): the T1 intensity with the space between brain and skull filled
  with CSF, and the *external-CSF depth*: the distance (mm) from each brain voxel to the nearest
  sulcal or surface CSF. Cortical thinning and sulcal widening of ``a`` mm turn the tissue with a
  depth below ``a`` into CSF.
- ``coarse`` (2 mm, padded around the head, 5 channels): the direction away from the
  ventricles (3 components) and the signed distance to their wall, which together give the
  displacement of a ventricle enlargement, and the signed distance to a smoothed brain outline
  (used to draw CSF, skull and scalp around the brain).

Sampling these volumes on the planes of the slices we write is the only per-subject work; no
subject ever gets a whole high-resolution volume.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

#: Margin (mm) added around the template box in the coarse volume, so that the skull and scalp
#: drawn outside the brain are never cut; extra room below for the neck.
COARSE_PAD_MM = 26
COARSE_NECK_PAD_MM = 70
COARSE_STEP_MM = 2

#: T1 threshold of nilearn.datasets.load_mni152_brain_mask (its default).
BRAIN_MASK_THRESHOLD = 0.2

#: How far (mm) beyond the moved ventricle wall the surrounding tissue is still compressed.
VENTRICLE_REACH_MM = 18.0

#: Distance given to voxels far from the ventricles (outside the box where it is computed).
FAR_FROM_VENTRICLES_MM = 99.0

#: Region (RAS mm) where the template's lateral ventricles lie; the largest deep-CSF component
#: inside it is taken as the ventricles.
_VENTRICLE_BOX = ((-40.0, 40.0), (-65.0, 35.0), (-10.0, 35.0))


@dataclass(frozen=True)
class TissueLevels:
    """Median template T1 intensity of each tissue (the knots of the contrast curve)."""

    csf: float
    gm: float
    wm: float


@dataclass(frozen=True)
class Atlas:
    """Template-derived volumes, ready for ``torch.nn.functional.grid_sample``.

    ``fine`` is ``(1, 2, K, J, I)`` on the template's 1 mm grid: [T1 filled, external-CSF depth].
    ``coarse`` is ``(1, 5, K', J', I')`` on a padded 2 mm grid: [direction away from the
    ventricles x, y, z (RAS), signed distance to the ventricle wall (mm, < 0 inside), signed
    distance to the brain outline (mm, > 0 outside)]. (i, j, k) are the template's voxel
    axes (x, y, z); the tensors store them reversed so that x is contiguous.
    ``*_ras_to_index`` map RAS mm to (fractional) voxel indices (i, j, k) of each grid.
    """

    fine: torch.Tensor
    coarse: torch.Tensor
    fine_ras_to_index: np.ndarray  # (4, 4)
    coarse_ras_to_index: np.ndarray  # (4, 4)
    levels: TissueLevels
    neck_level: float  # template-scale intensity given to the neck below the template
    brain_center_ras: np.ndarray  # (3,) centre of the brain mask's bounding box
    brain_surface_ras: np.ndarray  # (n, 3) a sample of brain-outline points, for extents
    ventricle_volume_ml: float


def _load_templates() -> tuple[dict[str, np.ndarray], np.ndarray]:
    # Imported here: nilearn is slow to import and only the generator needs it.
    from nilearn import datasets

    images = {
        "t1": datasets.load_mni152_template(resolution=1),
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
    }
    affine = np.asarray(images["t1"].affine, dtype=np.float64)
    volumes = {k: np.asarray(v.get_fdata(dtype=np.float32)) for k, v in images.items()}
    # nilearn's load_mni152_brain_mask is exactly this threshold of the T1 template; doing it
    # here saves decompressing the template a second time.
    volumes["mask"] = (volumes["t1"] > BRAIN_MASK_THRESHOLD).astype(np.float32)
    return volumes, affine


def _axis_coordinates(shape: tuple[int, ...], index_to_ras: np.ndarray) -> list[np.ndarray]:
    """RAS coordinate of each index along each axis, broadcastable to ``shape``.

    The MNI templates are stored axis-aligned (a diagonal affine), which this relies on.
    """
    if not np.allclose(index_to_ras[:3, :3], np.diag(np.diag(index_to_ras[:3, :3]))):
        raise ValueError("expected an axis-aligned template affine")
    coords = []
    for axis, n in enumerate(shape):
        c = index_to_ras[axis, axis] * np.arange(n) + index_to_ras[axis, 3]
        coords.append(c.reshape([-1 if a == axis else 1 for a in range(len(shape))]))
    return coords


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Distance (voxels) from each voxel of ``mask`` to the nearest voxel outside it.

    Computed on the mask's bounding box (plus a one-voxel rim): much faster on a brain that fills
    only half of the template box, and exact, since the rim is outside the mask.
    """
    out = np.zeros(mask.shape, np.float32)
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return out
    lo = np.maximum(idx.min(0) - 1, 0)
    hi = np.minimum(idx.max(0) + 2, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    out[box] = ndi.distance_transform_edt(mask[box])
    return out


def _ventricles(csf: np.ndarray, depth: np.ndarray, index_to_ras: np.ndarray) -> np.ndarray:
    """Boolean mask of the lateral ventricles: the largest deep-CSF blob in the ventricle box.

    ``depth`` is the distance (mm) from each voxel to the outside of the brain.
    """
    deep_csf = (csf > 0.5) & (depth > 8)
    for coord, (lo, hi) in zip(
        _axis_coordinates(csf.shape, index_to_ras), _VENTRICLE_BOX, strict=True
    ):
        deep_csf &= (coord > lo) & (coord < hi)
    labels, n = ndi.label(deep_csf)
    if n == 0:
        raise RuntimeError("no ventricles found in the MNI152 template")
    sizes = ndi.sum_labels(deep_csf, labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def _ventricle_field(ventricles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the ventricle wall is and which way is out: ``(direction (3, ...), distance)``.

    ``distance`` is the signed distance (mm) to the wall of the template's ventricles (< 0
    inside); ``direction`` the vector pointing away from them (RAS voxel axes): unit length near
    a wall, shorter on the medial axes where it flips. Only a box around the ventricles is
    computed; outside it the direction is zero. :func:`pipeline.synthetic.render.ventricle_shift`
    turns them into the pull-back displacement of an enlargement.
    """
    margin = int(VENTRICLE_REACH_MM) + 6
    idx = np.argwhere(ventricles)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, ventricles.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    vent = ventricles[box]
    sdf = ndi.distance_transform_edt(~vent) - ndi.distance_transform_edt(vent)
    sdf = ndi.gaussian_filter(sdf.astype(np.float32), 1.0)
    grad = np.stack(np.gradient(sdf))
    grad /= np.linalg.norm(grad, axis=0) + 1e-6
    # Smoothing the unit vectors makes opposite ones cancel on the medial axes: the septum
    # between the two ventricles barely moves, so it survives an enlargement.
    grad = np.stack([ndi.gaussian_filter(g, 2.0) for g in grad])
    direction = np.zeros((3, *ventricles.shape), np.float32)
    distance = np.full(ventricles.shape, FAR_FROM_VENTRICLES_MM, np.float32)
    for axis in range(3):
        direction[(axis, *box)] = grad[axis]
    distance[box] = sdf
    return direction, distance


def _resample(
    volume: np.ndarray,
    index_map: np.ndarray,
    shape: tuple[int, ...],
    order: int = 1,
    mode: str = "nearest",
    cval: float = 0.0,
) -> np.ndarray:
    """Sample ``volume`` at the voxel indices ``index_map @ [i, j, k, 1]`` of a new grid."""
    return ndi.affine_transform(
        volume,
        index_map[:3, :3],
        offset=index_map[:3, 3],
        output_shape=shape,
        order=order,
        mode=mode,
        cval=cval,
    ).astype(np.float32)


def _coarse_grid(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Index->RAS matrix and shape of the padded 2 mm grid around the template box."""
    lo = affine[:3, 3] - COARSE_PAD_MM - np.array([0, 0, COARSE_NECK_PAD_MM - COARSE_PAD_MM])
    hi = affine[:3, :3] @ (np.array(shape) - 1) + affine[:3, 3] + COARSE_PAD_MM
    coarse_shape = tuple(int(n) for n in np.ceil((hi - lo) / COARSE_STEP_MM) + 1)
    index_to_ras = np.eye(4)
    index_to_ras[:3, :3] *= COARSE_STEP_MM
    index_to_ras[:3, 3] = lo
    return index_to_ras, coarse_shape


def _outline_distance(
    brain: np.ndarray,
    coarse_to_template: np.ndarray,
    shape: tuple[int, ...],
    index_to_ras: np.ndarray,
    template_bottom_z: float,
) -> np.ndarray:
    """Signed distance (mm, > 0 outside) to a smooth outline of the brain, on the coarse grid.

    The outline is the brain mask with its sulci closed by smoothing (the skull is smooth, not
    gyral); below the template its lowest slab continues downwards as the neck.
    """
    mask = _resample(brain.astype(np.float32), coarse_to_template, shape, mode="constant")
    outline = ndi.gaussian_filter(mask, 2.0)
    below = index_to_ras[2, 3] + COARSE_STEP_MM * np.arange(shape[2]) < template_bottom_z + 2
    bottom = int(np.argmax(~below))
    outline[:, :, below] = outline[:, :, bottom : bottom + 1]
    inside = outline > 0.3
    signed = ndi.distance_transform_edt(~inside) - ndi.distance_transform_edt(inside)
    return (signed * COARSE_STEP_MM).astype(np.float32)


def _as_zyx_tensor(channels: list[np.ndarray]) -> torch.Tensor:
    """``(1, C, K, J, I)``: x fastest in memory, so the pixels of an axial row are neighbours."""
    stacked = np.stack(channels).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 2, 1)))[None]


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Build (once per process) the volumes the renderer samples. Takes a few seconds."""
    vol, affine = _load_templates()
    brain = vol["mask"] > 0.5
    csf = np.clip(vol["mask"] - vol["gm"] - vol["wm"], 0.0, 1.0)
    t1 = vol["t1"]
    levels = TissueLevels(
        csf=float(np.median(t1[csf > 0.9])),
        gm=float(np.median(t1[vol["gm"] > 0.9])),
        wm=float(np.median(t1[vol["wm"] > 0.9])),
    )
    neck_level = 0.5 * (levels.csf + levels.gm)

    brain_depth = _distance_inside(brain)
    ventricles = _ventricles(csf, brain_depth, affine)
    external_csf = ~brain | ((csf > 0.5) & ~ventricles)
    depth = np.minimum(_distance_inside(~external_csf), 20.0)
    t1_filled = np.where(brain, t1, levels.csf).astype(np.float32)
    # Two slabs of neck below the template, so that 'border' padding continues with neck tissue.
    neck = np.full((*t1.shape[:2], 2), neck_level, np.float32)
    t1_filled = np.concatenate([neck, t1_filled], axis=2)
    depth = np.concatenate([np.full_like(neck, 20.0), depth], axis=2)
    fine_index_to_ras = affine.copy()
    fine_index_to_ras[:3, 3] -= 2 * affine[:3, 2]  # the two prepended slabs

    coarse_index_to_ras, coarse_shape = _coarse_grid(affine, t1.shape)
    coarse_to_template = np.linalg.inv(affine) @ coarse_index_to_ras
    direction, distance = _ventricle_field(ventricles)
    field_coarse = [
        _resample(c, coarse_to_template, coarse_shape, mode="constant") for c in direction
    ]
    field_coarse.append(
        _resample(
            distance, coarse_to_template, coarse_shape, mode="constant", cval=FAR_FROM_VENTRICLES_MM
        )
    )
    outline = _outline_distance(
        brain, coarse_to_template, coarse_shape, coarse_index_to_ras, float(affine[2, 3])
    )

    surface_idx = np.argwhere(brain & (brain_depth <= 1.0))
    surface_idx = surface_idx[:: max(1, len(surface_idx) // 4000)]
    surface_ras = (affine[:3, :3] @ surface_idx.T + affine[:3, 3:4]).T
    bbox = np.argwhere(brain)
    center_idx = 0.5 * (bbox.min(0) + bbox.max(0))

    return Atlas(
        fine=_as_zyx_tensor([t1_filled, depth]),
        coarse=_as_zyx_tensor([*field_coarse, outline]),
        fine_ras_to_index=np.linalg.inv(fine_index_to_ras),
        coarse_ras_to_index=np.linalg.inv(coarse_index_to_ras),
        levels=levels,
        neck_level=neck_level,
        brain_center_ras=affine[:3, :3] @ center_idx + affine[:3, 3],
        brain_surface_ras=surface_ras.astype(np.float32),
        ventricle_volume_ml=float(ventricles.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000),
    )

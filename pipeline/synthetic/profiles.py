"""The knobs of the generator: a simulated site's scanner and export habits, and the anatomy model.

The values live in ``conf/synthetic_site/*.yaml`` and ``conf/synthetic_anatomy/*.yaml``; these
dataclasses give them names, types and checks. Ranges are ``[low, high]`` drawn uniformly per
subject; probabilities and choice weights are per subject (or per series).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipeline.config import CONF_DIR
from pipeline.synthetic.export import INSTANCE_ORDERS, LAYOUTS, transfer_syntax_uid

SITE_GROUP = "synthetic_site"
ANATOMY_GROUP = "synthetic_anatomy"


@dataclasses.dataclass(frozen=True)
class SiteProfile:
    """A simulated site: scanner, acquisition ranges, image quality and export mess."""

    name: str  # labels.csv ``site`` column
    id_prefix: str  # subject ids are <id_prefix><number>; must differ between cohorts
    institution: str
    manufacturer: str
    model: str
    field_strength_t: float
    series_description: str
    # acquisition geometry
    n_slices: int
    slice_spacing_mm: tuple[float, float]
    thickness_fraction: tuple[float, float]  # slice thickness / spacing
    fov_mm: tuple[float, float]
    matrix: tuple[tuple[int, int], ...]  # (rows, cols) choices
    rotation_deg: tuple[float, float, float]  # max |angle| about x, y, z
    translation_mm: tuple[float, float, float]  # sd of the head position
    fov_shift_mm: float  # sd of the in-plane FOV centre
    stack_offset_mm: float  # max |stack centre - brain centre| along the normal
    oblique_deg: float  # max slab tilt about left-right
    p_feet_first: float
    instance_order: Mapping[str, float]  # ascending / descending / interleaved weights
    # image
    gm_wm_ratio: tuple[float, float]
    csf_wm_ratio: tuple[float, float]
    wm_value: tuple[float, float]  # physical units
    rescale_slope: tuple[float, float]
    rescale_intercept: float
    bits_stored: int
    noise_sd: tuple[float, float]  # fraction of white matter
    bias_strength: tuple[float, float]
    # export
    transfer_syntax: Mapping[str, float]  # pydicom.uid keyword -> weight
    layout: Mapping[str, float]  # adni / flat / pacs weights
    extension: Mapping[str, float]  # file extension -> weight ("" for none)
    p_localizer: float
    p_stray_file: float
    # Optional acquisition/export variants (data/README.md). At their defaults they are left
    # out of a cohort's settings, so the demo cohorts keep their stamps and bytes.
    acquisition: str = "axial_2d"  # axial_2d | sagittal_3d (a 3D volume, sagittal frames)
    multiframe: bool = False  # sagittal_3d: one enhanced MR multi-frame file, not one per slice
    file_format: str = "dicom"  # dicom | nifti (the volume as <subject>/<description>.nii.gz)


#: SiteProfile fields with defaults: optional in profile files and left out of settings when
#: at their default.
OPTIONAL_SITE_FIELDS = {
    f.name: f.default
    for f in dataclasses.fields(SiteProfile)
    if f.default is not dataclasses.MISSING
}
ACQUISITIONS = ("axial_2d", "sagittal_3d")
FILE_FORMATS = ("dicom", "nifti")


def site_settings(profile: SiteProfile) -> dict[str, Any]:
    """The profile's values that decide a cohort's content (optional ones only when changed)."""
    values = dataclasses.asdict(profile)
    return {
        k: v
        for k, v in values.items()
        if k not in OPTIONAL_SITE_FIELDS or v != OPTIONAL_SITE_FIELDS[k]
    }


@dataclasses.dataclass(frozen=True)
class AnatomyModel:
    """Between-person anatomy, ageing and the disease, shared by every site."""

    classes: tuple[str, ...]
    severity: Mapping[str, tuple[float, float]]  # class -> (mean, sd), clipped to [0, 1]
    age: Mapping[str, tuple[float, float]]  # class -> (mean, sd) years
    age_range: tuple[float, float]
    p_male: float
    head_scale_sd: float
    male_head_scale: float
    axis_scale_sd: float
    deformation_mm: float
    deformation_wavelength_mm: tuple[float, float]
    deformation_waves: int
    ventricle_mm_at_70: float
    ventricle_mm_per_decade: float
    ventricle_mm_per_severity: float
    ventricle_sd_mm: float
    cortex_mm_at_70: float
    cortex_mm_per_decade: float
    cortex_mm_per_severity: float
    regional_mm_per_severity: float
    regional_sd_mm: float
    cortex_sd_mm: float
    skull_scale_sd: float


def _freeze(value: Any) -> Any:
    """Lists -> tuples (hashable, immutable), recursively; mappings stay dicts."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    return value


def _build(cls: type, values: Mapping[str, Any], source: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    unknown = sorted(set(values) - names)
    missing = sorted(names - set(values) - optional)
    if unknown or missing:
        raise ValueError(f"{source}: unknown keys {unknown}, missing keys {missing}")
    return cls(**{k: _freeze(v) for k, v in values.items()})


def _load_group(group: str, name: str) -> dict[str, Any]:
    path = Path(CONF_DIR) / group / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no {group} profile {name!r} ({path}); choices: {choices}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def site_profile(site: str | Mapping[str, Any] | SiteProfile, **overrides: Any) -> SiteProfile:
    """A site profile from a built-in name ("A", "B", "site_a"), a mapping, or a profile."""
    if isinstance(site, SiteProfile):
        values = dataclasses.asdict(site)
    elif isinstance(site, Mapping):
        values = dict(OmegaConf.to_container(OmegaConf.create(dict(site)), resolve=True))
    else:
        name = str(site).lower()
        values = _load_group(SITE_GROUP, name if name.startswith("site_") else f"site_{name}")
    values.update(overrides)
    profile = _build(SiteProfile, values, f"site profile {values.get('name', site)!r}")
    _check_site(profile)
    return profile


def anatomy_model(
    model: str | Mapping[str, Any] | AnatomyModel = "default", **overrides: Any
) -> AnatomyModel:
    """The anatomy model from a built-in name, a mapping, or a model."""
    if isinstance(model, AnatomyModel):
        values = dataclasses.asdict(model)
    elif isinstance(model, Mapping):
        values = dict(OmegaConf.to_container(OmegaConf.create(dict(model)), resolve=True))
    else:
        values = _load_group(ANATOMY_GROUP, str(model))
    values.update(overrides)
    anatomy = _build(AnatomyModel, values, "anatomy model")
    for key in ("severity", "age"):
        missing = [c for c in anatomy.classes if c not in getattr(anatomy, key)]
        if missing:
            raise ValueError(f"anatomy model: {key} has no entry for classes {missing}")
    return anatomy


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort flat ``key=value`` overrides into (site, anatomy) by field name."""
    site_keys = {f.name for f in dataclasses.fields(SiteProfile)}
    anatomy_keys = {f.name for f in dataclasses.fields(AnatomyModel)}
    unknown = sorted(set(overrides) - site_keys - anatomy_keys)
    if unknown:
        raise TypeError(
            f"unknown generator option(s) {unknown}; see pipeline/synthetic/profiles.py"
        )
    site = {k: v for k, v in overrides.items() if k in site_keys}
    anatomy = {k: v for k, v in overrides.items() if k in anatomy_keys}
    return site, anatomy


def _check_site(p: SiteProfile) -> None:
    def check_weights(name: str, weights: Mapping[str, float], allowed: Any = None) -> None:
        if not weights or sum(weights.values()) <= 0 or min(weights.values()) < 0:
            raise ValueError(f"site {p.name}: {name} needs non-negative weights, positive sum")
        if allowed is not None:
            bad = sorted(set(weights) - set(allowed))
            if bad:
                raise ValueError(f"site {p.name}: {name} choices {bad} not in {sorted(allowed)}")

    check_weights("instance_order", p.instance_order, INSTANCE_ORDERS)
    check_weights("layout", p.layout, LAYOUTS)
    check_weights("extension", p.extension)
    check_weights("transfer_syntax", p.transfer_syntax)
    for keyword in p.transfer_syntax:
        transfer_syntax_uid(keyword)
    if p.acquisition not in ACQUISITIONS:
        raise ValueError(f"site {p.name}: acquisition {p.acquisition!r} not in {ACQUISITIONS}")
    if p.file_format not in FILE_FORMATS:
        raise ValueError(f"site {p.name}: file_format {p.file_format!r} not in {FILE_FORMATS}")
    if p.multiframe and p.acquisition != "sagittal_3d":
        raise ValueError(f"site {p.name}: multiframe needs acquisition sagittal_3d")
    if p.n_slices < 3:
        raise ValueError(f"site {p.name}: n_slices must be >= 3")
    if not p.matrix:
        raise ValueError(f"site {p.name}: matrix needs at least one (rows, cols) choice")
    if not p.id_prefix:
        raise ValueError(f"site {p.name}: id_prefix must not be empty")

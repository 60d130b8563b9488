"""One synthetic subject, start to finish: draw who they are and how they were scanned, render
the slices, write the export, and return the truth row.

Everything a subject looks like comes from one ``numpy`` generator seeded by that subject's
:class:`numpy.random.SeedSequence`, so a subject is the same whatever worker makes it and
whatever other subjects are made beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom.uid

from pipeline.synthetic.atlas import Atlas, load_atlas
from pipeline.synthetic.export import (
    Identity,
    ScannerInfo,
    Series,
    file_names,
    folder_plan,
    make_identity,
    stray_file,
    write_enhanced,
    write_nifti,
    write_series,
)
from pipeline.synthetic.geometry import (
    HeadPose,
    SliceGeometry,
    axial_stack,
    rotation_matrix,
    sagittal_volume,
    three_plane_localizer,
)
from pipeline.synthetic.profiles import AnatomyModel, SiteProfile
from pipeline.synthetic.render import Anatomy, render
from pipeline.synthetic.scanner import Acquisition, acquire, to_stored

#: Deliberate defects a cohort can carry (each documented in data/README.md):
#: ``truncated``: one slice file of the T1 is cut short inside its header, so a correct
#: preprocessor rejects that file and then the series (43 of 44 slices);
#: ``unlabelled``: images on disk but no row in labels.csv;
#: ``no_images``: a row in labels.csv but no folder.
DEFECTS = ("truncated", "unlabelled", "no_images")


@dataclass(frozen=True)
class SubjectTask:
    """A picklable unit of work for a pool worker."""

    subject_id: str
    label: str
    seed: np.random.SeedSequence
    site: SiteProfile
    model: AnatomyModel
    dicom_root: str
    defect: str = ""  # "" or one of DEFECTS


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _choice(rng: np.random.Generator, weights: dict[str, float] | Any) -> str:
    keys = sorted(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return str(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def _random_waves(
    rng: np.random.Generator, k: int, wavelength: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` plane waves with random directions and wavelengths: (wave vectors, phases)."""
    directions = rng.normal(size=(k, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    lengths = rng.uniform(*wavelength, size=k)
    return directions * (2 * np.pi / lengths)[:, None], rng.uniform(0, 2 * np.pi, size=k)


@dataclass(frozen=True)
class Person:
    """Who the subject is (the part of the truth a clinician would know, plus the severity)."""

    sex: str
    age: float
    severity: float


def draw_person(rng: np.random.Generator, label: str, model: AnatomyModel) -> Person:
    """Sex, age and disease severity, from the class's overlapping distributions."""
    sex = "M" if rng.random() < model.p_male else "F"
    mean, sd = model.age[label]
    age = float(np.clip(rng.normal(mean, sd), *model.age_range))
    mean, sd = model.severity[label]
    severity = float(np.clip(rng.normal(mean, sd), 0.0, 1.0))
    return Person(sex=sex, age=round(age, 1), severity=severity)


def draw_anatomy(
    rng: np.random.Generator, person: Person, model: AnatomyModel, site: SiteProfile, atlas: Atlas
) -> Anatomy:
    """The subject's head: size, shape, pose, ageing and disease atrophy, tissue contrast."""
    scale = model.male_head_scale if person.sex == "M" else 1.0
    scale *= 1.0 + rng.normal(0.0, model.head_scale_sd)
    scales = scale * (1.0 + rng.normal(0.0, model.axis_scale_sd, size=3))
    angles = rng.uniform(-1.0, 1.0, size=3) * np.asarray(site.rotation_deg)
    position = rng.normal(0.0, 1.0, size=3) * np.asarray(site.translation_mm)
    pose = HeadPose(
        rotation=rotation_matrix(angles),
        scale=scales,
        position=position,
        centre=atlas.brain_center_ras,
    )

    k = model.deformation_waves
    vectors, phases = _random_waves(rng, k, model.deformation_wavelength_mm)
    # rms of a sum of k sines with N(0, a^2) amplitudes per axis is a * sqrt(k / 2)
    amplitudes = rng.normal(0.0, model.deformation_mm / np.sqrt(k / 2), size=(k, 3))

    decades = (person.age - 70.0) / 10.0
    ventricles = (
        model.ventricle_mm_at_70
        + model.ventricle_mm_per_decade * decades
        + model.ventricle_mm_per_severity * person.severity
        + rng.normal(0.0, model.ventricle_sd_mm)
    )
    cortex = (
        model.cortex_mm_at_70
        + model.cortex_mm_per_decade * decades
        + model.cortex_mm_per_severity * person.severity
        + rng.normal(0.0, model.cortex_sd_mm)
    )
    return Anatomy(
        pose=pose,
        wave_vectors=vectors,
        wave_phases=phases,
        wave_amplitudes=amplitudes,
        ventricle_expansion_mm=float(np.clip(ventricles, 0.0, 10.0)),
        cortical_thinning_mm=float(max(cortex, 0.0)),
        regional_thinning_mm=float(
            max(
                0.0,
                model.regional_mm_per_severity * person.severity
                + rng.normal(0.0, model.regional_sd_mm),
            )
        ),
        skull_scale=float(np.clip(1.0 + rng.normal(0.0, model.skull_scale_sd), 0.7, 1.4)),
        contrast_csf=_uniform(rng, site.csf_wm_ratio),
        contrast_gm=_uniform(rng, site.gm_wm_ratio),
    )


@dataclass(frozen=True)
class Placement:
    """The T1 stack and the facts about it that tests check against."""

    geometry: SliceGeometry
    up: np.ndarray  # unit slice normal pointing to the head (superior)
    feet_first: bool
    tilt_deg: float
    brain_low_mm: float  # brain extent along ``up``
    brain_high_mm: float
    stack_offset_mm: float  # stack centre - brain centre along ``up``


def brain_extent(atlas: Atlas, anatomy: Anatomy, up: np.ndarray) -> tuple[float, float]:
    """Lowest and highest brain point along ``up`` (patient mm).

    The template's brain outline goes through the pose and (to first order) the inverse of the
    random deformation; ventricle expansion never moves the outline.
    """
    surface = atlas.brain_surface_ras.astype(np.float64)
    native = surface - anatomy.deformation(surface)
    along = anatomy.pose.template_to_patient(native) @ up
    return float(along.min()), float(along.max())


def place_stack(
    rng: np.random.Generator, atlas: Atlas, anatomy: Anatomy, site: SiteProfile
) -> Placement:
    """Choose spacing, field of view, matrix, tilt and where the slab sits on the head."""
    spacing = round(_uniform(rng, site.slice_spacing_mm), 3)
    thickness = round(spacing * _uniform(rng, site.thickness_fraction), 3)
    fov = _uniform(rng, site.fov_mm)
    rows, cols = (int(v) for v in site.matrix[int(rng.integers(len(site.matrix)))])
    pixel = round(fov / max(rows, cols), 4)
    tilt = _uniform(rng, (-site.oblique_deg, site.oblique_deg))
    feet_first = bool(rng.random() < site.p_feet_first)
    offset = _uniform(rng, (-site.stack_offset_mm, site.stack_offset_mm))
    shift = np.r_[rng.normal(0.0, site.fov_shift_mm, size=2), 0.0]
    if site.acquisition == "sagittal_3d":
        return _place_sagittal(
            atlas,
            anatomy,
            site,
            spacing=spacing,
            thickness=thickness,
            rows=rows,
            cols=cols,
            pixel=pixel,
            tilt=tilt,
            feet_first=feet_first,
            offset=offset,
            shift=shift,
        )

    t = np.deg2rad(tilt)
    up = np.array([0.0, -np.sin(t), np.cos(t)])
    low, high = brain_extent(atlas, anatomy, up)
    target = 0.5 * (low + high) + offset
    centre = shift + (target - shift @ up) * up
    geometry = axial_stack(
        centre=centre,
        n_slices=site.n_slices,
        spacing_mm=spacing,
        thickness_mm=thickness,
        rows=rows,
        cols=cols,
        pixel_mm=pixel,
        tilt_deg=tilt,
        mirrored=feet_first,
    )
    # Positions are measured along the normal of the geometry as written (rounded), as a reader
    # of the headers will measure them.
    normal = geometry.normals[0] / np.linalg.norm(geometry.normals[0])
    up = normal if normal[2] > 0 else -normal
    return Placement(
        geometry=geometry,
        up=up,
        feet_first=feet_first,
        tilt_deg=tilt,
        brain_low_mm=low,
        brain_high_mm=high,
        stack_offset_mm=offset,
    )


def _place_sagittal(
    atlas: Atlas,
    anatomy: Anatomy,
    site: SiteProfile,
    *,
    spacing: float,
    thickness: float,
    rows: int,
    cols: int,
    pixel: float,
    tilt: float,
    feet_first: bool,
    offset: float,
    shift: np.ndarray,
) -> Placement:
    """A sagittal 3D slab: centred on the brain left to right, its field of view moved
    ``|offset|`` mm towards the feet (a sagittal FOV takes in the neck) and ``shift`` front to
    back. ``up`` is the slab normal towards the patient's left (positions increase along it)."""
    middle = np.array([0.5 * sum(brain_extent(atlas, anatomy, axis)) for axis in np.eye(3)])
    centre = middle + np.array([0.0, shift[0], -abs(offset)])
    geometry = sagittal_volume(
        centre=centre,
        n_slices=site.n_slices,
        spacing_mm=spacing,
        thickness_mm=thickness,
        rows=rows,
        cols=cols,
        pixel_mm=pixel,
        tilt_deg=tilt,
        mirrored=feet_first,
    )
    normal = geometry.normals[0] / np.linalg.norm(geometry.normals[0])
    up = normal if normal[0] > 0 else -normal
    low, high = brain_extent(atlas, anatomy, up)
    return Placement(
        geometry=geometry,
        up=up,
        feet_first=feet_first,
        tilt_deg=tilt,
        brain_low_mm=low,
        brain_high_mm=high,
        stack_offset_mm=-abs(offset),
    )


#: Slices rendered at once: bounds the renderer's memory for 3D volumes (one chunk for 44).
RENDER_CHUNK = 48


def render_series(
    atlas: Atlas,
    anatomy: Anatomy,
    geometry: SliceGeometry,
    acq: Acquisition,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored pixels ``(n, rows, cols)`` of a series, with the head and brain fraction per slice.

    Rendered ``RENDER_CHUNK`` slices at a time; a stack of at most that many is one chunk, so
    the demo's 44-slice series come out as they always have.
    """
    pixels, head, brain = [], [], []
    for start in range(0, geometry.n_slices, RENDER_CHUNK):
        part = slice(start, start + RENDER_CHUNK)
        sub = dataclasses.replace(
            geometry,
            origins=geometry.origins[part],
            row_dirs=geometry.row_dirs[part],
            col_dirs=geometry.col_dirs[part],
        )
        rendering = render(atlas, anatomy, sub)
        pixels.append(to_stored(acquire(rendering.images, acq, sub, rng), acq))
        head.append(rendering.head_fraction)
        brain.append(rendering.brain_fraction)
    return np.concatenate(pixels), np.concatenate(head), np.concatenate(brain)


def draw_acquisition(rng: np.random.Generator, site: SiteProfile) -> Acquisition:
    """Intensity scale, noise, bias field and rescale of the subject's T1."""
    vectors, phases = _random_waves(rng, 3, (150.0, 400.0))
    amplitudes = rng.dirichlet(np.ones(3)) * rng.choice([-1.0, 1.0], size=3)
    strength = _uniform(rng, site.bias_strength)
    return Acquisition(
        wm_value=_uniform(rng, site.wm_value),
        noise_sd=_uniform(rng, site.noise_sd),
        bias_vectors=vectors,
        bias_phases=phases,
        bias_amplitudes=amplitudes * strength / 2.0,
        rescale_slope=round(_uniform(rng, site.rescale_slope), 4),
        rescale_intercept=float(site.rescale_intercept),
        bits_stored=int(site.bits_stored),
    )


#: Bytes kept of a truncated file: the preamble, the file meta and the first few elements, so
#: that the geometry (ImagePositionPatient and on) is gone and no reader can use the file.
TRUNCATED_BYTES = 512


def _truncate(path: Path) -> None:
    """Cut a file short inside its header, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[:TRUNCATED_BYTES])


@dataclass(frozen=True)
class SubjectDraw:
    """Every random choice about one subject, drawn in a fixed order from its seed."""

    person: Person
    anatomy: Anatomy
    placement: Placement
    acquisition: Acquisition
    identity: Identity
    layout: str
    extension: str
    transfer_syntax: str
    instance_order: str
    with_localizer: bool
    with_stray: bool
    t1_number: int
    rng: np.random.Generator  # continues with the noise, file names and folders


def draw_subject(task: SubjectTask, atlas: Atlas) -> SubjectDraw:
    """Draw who the subject is and how they were scanned and exported (nothing is rendered)."""
    site, model = task.site, task.model
    rng = np.random.default_rng(task.seed)
    person = draw_person(rng, task.label, model)
    anatomy = draw_anatomy(rng, person, model, site, atlas)
    placement = place_stack(rng, atlas, anatomy, site)
    return SubjectDraw(
        person=person,
        anatomy=anatomy,
        placement=placement,
        acquisition=draw_acquisition(rng, site),
        identity=make_identity(rng, person.sex, person.age),
        layout=_choice(rng, site.layout),
        extension=_choice(rng, site.extension),
        transfer_syntax=_choice(rng, site.transfer_syntax),
        instance_order=_choice(rng, site.instance_order),
        with_localizer=bool(rng.random() < site.p_localizer),
        with_stray=bool(rng.random() < site.p_stray_file),
        t1_number=int(rng.integers(2, 9)),
        rng=rng,
    )


def render_slices(task: SubjectTask, indices: list[int]) -> tuple[np.ndarray, tuple[float, float]]:
    """Some slices of the subject's T1, in memory: physical values ``(k, rows, cols)`` in the
    geometric order, and the pixel spacing (row, column) in mm.

    The same anatomy, pose, geometry and scanner as the written series, with fresh noise, shown
    in the orientation a correct reader gives (columns from the patient's right to left, so a
    feet-first export is mirrored back): for measuring difficulty without writing or reading
    DICOM (benchmarks/bench_synthetic.py).
    """
    atlas = load_atlas()
    draw = draw_subject(task, atlas)
    geo = draw.placement.geometry
    sub = dataclasses.replace(
        geo,
        origins=geo.origins[indices],
        row_dirs=geo.row_dirs[indices],
        col_dirs=geo.col_dirs[indices],
    )
    images = render(atlas, draw.anatomy, sub).images
    values = acquire(images, draw.acquisition, sub, draw.rng)
    stored = to_stored(values, draw.acquisition)
    physical = stored * draw.acquisition.rescale_slope + draw.acquisition.rescale_intercept
    if sub.row_dirs[0][0] < 0:  # mirrored rows (feet-first): back to right-to-left columns
        physical = physical[:, :, ::-1]
    return np.ascontiguousarray(physical, dtype=np.float32), geo.pixel_spacing


def generate_subject(task: SubjectTask) -> dict[str, Any]:
    """Make one subject's files under ``<dicom_root>/<subject_id>/``; return its truth row."""
    atlas = load_atlas()
    draw = draw_subject(task, atlas)
    # Rendered even for a "no_images" subject: the truth row's head and brain indices need it.
    pixels, head_fraction, brain_fraction = render_series(
        atlas, draw.anatomy, draw.placement.geometry, draw.acquisition, draw.rng
    )
    truth = truth_row(task, draw, head_fraction, brain_fraction)
    if task.defect == "no_images":
        return truth
    truth.update(write_subject(task, atlas, draw, pixels))
    return truth


def truth_row(
    task: SubjectTask, draw: SubjectDraw, head_fraction: np.ndarray, brain_fraction: np.ndarray
) -> dict[str, Any]:
    """The subject's truth row as drawn, before export (``stray_file`` and ``t1_folder`` empty)."""
    positions = draw.placement.geometry.origins @ draw.placement.up
    # The parts are merged in this order because it is the order of the truth.csv columns.
    return {
        **_subject_truth(task, draw.person, draw.anatomy),
        **_scan_truth(draw, positions),
        **_slice_truth(draw.placement, positions, head_fraction, brain_fraction),
        **_export_truth(draw),
    }


def _subject_truth(task: SubjectTask, person: Person, anatomy: Anatomy) -> dict[str, Any]:
    """Truth columns of who the subject is and what their head looks like."""
    return {
        "subject_id": task.subject_id,
        "label": task.label,
        "site": task.site.name,
        "defect": task.defect,
        "severity": round(person.severity, 4),
        "age": person.age,
        "sex": person.sex,
        "head_scale": round(float(np.prod(anatomy.pose.scale) ** (1 / 3)), 4),
        "rotation_deg": ";".join(f"{a:.2f}" for a in _angles(anatomy.pose.rotation)),
        "translation_mm": ";".join(f"{v:.2f}" for v in anatomy.pose.position),
        "ventricle_expansion_mm": round(anatomy.ventricle_expansion_mm, 3),
        "cortical_thinning_mm": round(anatomy.cortical_thinning_mm, 3),
        "regional_thinning_mm": round(anatomy.regional_thinning_mm, 3),
        "contrast_gm_wm": round(anatomy.contrast_gm, 4),
        "contrast_csf_wm": round(anatomy.contrast_csf, 4),
    }


def _scan_truth(draw: SubjectDraw, positions: np.ndarray) -> dict[str, Any]:
    """Truth columns of the T1's geometry, acquisition and encoding."""
    geo, placement, acq = draw.placement.geometry, draw.placement, draw.acquisition
    return {
        "n_slices": geo.n_slices,
        "rows": geo.rows,
        "cols": geo.cols,
        "pixel_spacing_mm": geo.pixel_spacing[0],
        "slice_spacing_mm": round(float(np.mean(np.diff(positions))), 4),
        "slice_thickness_mm": geo.thickness,
        "tilt_deg": round(placement.tilt_deg, 3) + 0.0,  # no "-0.0"
        "feet_first": placement.feet_first,
        "instance_order": draw.instance_order,
        "transfer_syntax": draw.transfer_syntax,
        "wm_value": round(acq.wm_value, 2),
        "noise_sd": round(acq.noise_sd, 4),
        "rescale_slope": acq.rescale_slope,
        "rescale_intercept": acq.rescale_intercept,
    }


def _slice_truth(
    placement: Placement,
    positions: np.ndarray,
    head_fraction: np.ndarray,
    brain_fraction: np.ndarray,
) -> dict[str, Any]:
    """Truth columns of where the slices lie on the head, in the geometric order."""
    # Index 0 is the most inferior slice; positions are along the head-pointing slice normal as
    # a correct preprocessor computes them.
    brain_centre = 0.5 * (placement.brain_low_mm + placement.brain_high_mm)
    head = np.flatnonzero(head_fraction > 0.002)
    brain = np.flatnonzero(brain_fraction > 0.0)
    return {
        "slice_positions_mm": ";".join(f"{p:.4f}" for p in positions),
        "stack_center_mm": round(float(positions.mean()), 4),
        "brain_center_mm": round(brain_centre, 4),
        "brain_low_mm": round(placement.brain_low_mm, 4),
        "brain_high_mm": round(placement.brain_high_mm, 4),
        "stack_offset_mm": round(float(positions.mean()) - brain_centre, 4),
        "brain_center_index": int(np.argmin(np.abs(positions - brain_centre))),
        "head_first_index": int(head[0]) if head.size else -1,
        "head_last_index": int(head[-1]) if head.size else -1,
        "brain_first_index": int(brain[0]) if brain.size else -1,
        "brain_last_index": int(brain[-1]) if brain.size else -1,
    }


def _export_truth(draw: SubjectDraw) -> dict[str, Any]:
    """Truth columns of how the subject is exported, with the made-up identifying headers."""
    who = draw.identity
    return {
        "layout": draw.layout,
        "extension": draw.extension,
        "localizer": draw.with_localizer,
        "stray_file": "",  # both filled in by write_subject
        "t1_folder": "",
        "dicom_patient_name": who.patient_name,
        "dicom_patient_id": who.patient_id,
        "dicom_birth_date": who.birth_date,
        "dicom_accession": who.accession,
        "dicom_referring_physician": who.referring_physician,
    }


def write_subject(
    task: SubjectTask, atlas: Atlas, draw: SubjectDraw, pixels: np.ndarray
) -> dict[str, str]:
    """Write the subject's export; return its ``t1_folder`` and ``stray_file`` truth columns."""
    site, rng = task.site, draw.rng
    subject_dir = Path(task.dicom_root) / task.subject_id
    # The rng is drawn from in a fixed order (folders, T1, scout, stray file, truncation), so
    # a seed always gives the same files.
    plan = folder_plan(rng, draw.layout, site.series_description, draw.identity, draw.t1_number, 1)
    common = _shared_headers(draw, site)
    t1_paths = _write_t1(
        _t1_series(draw, site, pixels),
        subject_dir / plan.t1,
        rng,
        draw.extension,
        site,
        series_uid=pydicom.uid.generate_uid(entropy_srcs=[draw.identity.uid_seed, "t1"]),
        **common,
    )
    if draw.with_localizer and site.file_format == "dicom":  # a NIfTI export comes without scouts
        _write_localizer(
            rng,
            atlas,
            draw.anatomy,
            draw.acquisition,
            subject_dir / plan.localizer,
            draw.extension,
            common,
        )
    stray = stray_file(rng, subject_dir / plan.t1).name if draw.with_stray else ""
    if task.defect == "truncated":
        _truncate(t1_paths[int(rng.integers(len(t1_paths)))])
    return {"t1_folder": plan.t1, "stray_file": stray}


def _shared_headers(draw: SubjectDraw, site: SiteProfile) -> dict[str, Any]:
    """Header values every series of the subject shares: patient, scanner, study, frame."""
    who = draw.identity
    scanner = ScannerInfo(
        institution=site.institution,
        manufacturer=site.manufacturer,
        model=site.model,
        field_strength_t=site.field_strength_t,
        feet_first=draw.placement.feet_first,
    )
    # UIDs come from the identity's seed, not from the rng, so they are the same for a subject
    # whatever else is drawn.
    return {
        "who": who,
        "scanner": scanner,
        "study_uid": pydicom.uid.generate_uid(entropy_srcs=[who.uid_seed, "study"]),
        "frame_uid": pydicom.uid.generate_uid(entropy_srcs=[who.uid_seed, "frame"]),
        "transfer_syntax": draw.transfer_syntax,
    }


def _t1_series(draw: SubjectDraw, site: SiteProfile, pixels: np.ndarray) -> Series:
    """The subject's T1 series: its rendered pixels with the site's description and numbering."""
    return Series(
        geometry=draw.placement.geometry,
        pixels=pixels,
        acquisition=draw.acquisition,
        description=site.series_description,
        number=draw.t1_number,
        instance_order=draw.instance_order,
        acquisition_type="3D" if site.acquisition == "sagittal_3d" else "2D",
    )


def _write_t1(
    series: Series,
    folder: Path,
    rng: np.random.Generator,
    extension: str,
    site: SiteProfile,
    **common: Any,
) -> list[Path]:
    """The T1 as the site exports it: one file per slice, one enhanced file, or NIfTI."""
    if site.file_format == "nifti":
        safe = "".join(c if c.isalnum() else "_" for c in site.series_description)
        return [write_nifti(series, folder / f"{safe}.nii.gz")]
    if site.multiframe:
        return [write_enhanced(series, folder / file_names(rng, 1, extension)[0], **common)]
    return write_series(
        series, folder, file_names(rng, series.geometry.n_slices, extension), **common
    )


def _write_localizer(
    rng: np.random.Generator,
    atlas: Atlas,
    anatomy: Anatomy,
    acq: Acquisition,
    folder: Path,
    extension: str,
    common: dict[str, Any],
) -> None:
    """A 3-plane scout through the head's centre, written beside (or with) the T1."""
    geo = three_plane_localizer(centre=anatomy.pose.position)
    images = render(atlas, anatomy, geo).images
    pixels = to_stored(acquire(images, acq, geo, rng), acq)
    series = Series(
        geometry=geo,
        pixels=pixels,
        acquisition=acq,
        description="localizer",
        number=1,
        instance_order="ascending",
        localizer=True,
    )
    write_series(
        series,
        folder,
        file_names(rng, geo.n_slices, extension),
        series_uid=pydicom.uid.generate_uid(entropy_srcs=[common["who"].uid_seed, "loc"]),
        **common,
    )


def _angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """x, y, z angles (deg) of ``rotation_matrix`` (rz @ ry @ rx)."""
    ay = -np.arcsin(np.clip(rotation[2, 0], -1.0, 1.0))
    ax = np.arctan2(rotation[2, 1], rotation[2, 2])
    az = np.arctan2(rotation[1, 0], rotation[0, 0])
    return tuple(float(np.rad2deg(a)) for a in (ax, ay, az))  # type: ignore[return-value]


def identity_columns() -> tuple[str, ...]:
    """Truth columns holding made-up identifying header values (for privacy tests)."""
    return (
        "dicom_patient_name",
        "dicom_patient_id",
        "dicom_birth_date",
        "dicom_accession",
        "dicom_referring_physician",
    )


__all__ = ["DEFECTS", "Identity", "SubjectTask", "generate_subject", "identity_columns"]

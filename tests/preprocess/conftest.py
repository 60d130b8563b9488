"""Fixtures of the preprocess stage's tests: the composed config and small synthetic heads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from pipeline.config import compose
from pipeline.synthetic.phantom import UID_PREFIX, DicomWriter, axial_volume, head_volume, new_uid


def ellipse_head(
    rows: int = 96,
    cols: int = 80,
    center: tuple[float, float] | None = None,
    radii: tuple[float, float] = (36.0, 28.0),
    level: float = 800.0,
    noise: float = 20.0,
    seed: int = 0,
) -> np.ndarray:
    """One axial-like slice: a bright ellipse with a darker "ventricle" on a noisy background."""
    rng = np.random.default_rng(seed)
    cy, cx = center if center is not None else ((rows - 1) / 2, (cols - 1) / 2)
    yy, xx = np.mgrid[:rows, :cols]
    inside = ((yy - cy) / radii[0]) ** 2 + ((xx - cx) / radii[1]) ** 2 <= 1
    ventricle = ((yy - cy) / (radii[0] / 4)) ** 2 + ((xx - cx) / (radii[1] / 5)) ** 2 <= 1
    image = np.abs(rng.normal(0.0, noise, (rows, cols)))
    image[inside] += level
    image[ventricle] -= level * 0.6
    return image.astype(np.float32)


@pytest.fixture(scope="session")
def preprocess_cfg() -> DictConfig:
    return compose("preprocess", [])


# ---------------------------------------------------------------------------------------------
# A small DICOM cohort on disk: head phantoms exported as single-frame MR series.


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    description: str = "T1 AX",
    spacing: float = 4.0,
    pixel_spacing: float = 2.0,
    study_uid: str | None = None,
    seed: int = 0,
) -> list[Path]:
    """``volume`` (n, rows, cols) as an axial series with slice k at ``k * spacing - 20`` mm;
    random file names, InstanceNumbers not in geometric order, a new study unless given."""
    return DicomWriter().series(
        folder,
        axial_volume(volume, spacing=spacing, pixel_spacing=pixel_spacing),
        names="random",
        instance_numbers="shuffled",
        description=description,
        study_uid=study_uid or new_uid(),
        seed=seed,
    )


@dataclass
class Cohort:
    root: Path
    labels: Path
    subjects: dict[str, str]  # subject_id -> label (only those expected to be accepted)


def make_cohort(base: Path, n_good: int = 4, n_slices: int = 12, extras: bool = True) -> Cohort:
    """``n_good`` labelled subjects with one good series each, plus (``extras``) the trouble
    makers every real export has: a localizer beside the series, junk files, a truncated file,
    a subject with a short series, a labelled subject without images, images without a label.
    """
    root = base / "dicom"
    classes = ["CN", "MCI", "AD"]
    subjects = {f"sub-{i:03d}": classes[i % 3] for i in range(n_good)}
    rows, cols = 40, 36
    study_uids = {sid: f"{UID_PREFIX}{i + 1}" for i, sid in enumerate(subjects)}
    for i, sid in enumerate(subjects):
        volume = head_volume(n_slices, rows, cols, i)
        write_series(root / sid / "study" / "t1", volume, study_uid=study_uids[sid], seed=i)
    lines = ["subject_id,label,age,sex,site"]
    lines += [f"{sid},{label},{70 + i},F,A" for i, (sid, label) in enumerate(subjects.items())]
    if extras:
        first = next(iter(subjects))
        localizer = head_volume(3, rows, cols, 99)
        write_series(
            root / first / "study" / "loc",
            localizer,
            description="3-plane localizer",
            study_uid=study_uids[first],
        )
        (root / first / "notes.txt").write_text("scanned on a Tuesday")
        (root / first / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        second = list(subjects)[1 % n_good]
        volume = head_volume(n_slices, rows, cols, 50)
        files = write_series(root / second / "extra", volume, study_uid=study_uids[second])
        for path in files[1:]:
            path.unlink()
        files[0].write_bytes(files[0].read_bytes()[:1200])  # an interrupted copy
        write_series(root / "sub-short" / "t1", head_volume(n_slices - 1, rows, cols, 7))
        write_series(root / "sub-nolabel" / "t1", head_volume(n_slices, rows, cols, 8))
        lines += ["sub-short,AD,80,M,B", "sub-noimages,CN,66,M,B"]
    labels = base / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return Cohort(root=root, labels=labels, subjects=subjects)


def cohort_cfg(cohort: Cohort, cache: Path, name: str = "test", *overrides: str) -> DictConfig:
    """The preprocess config for ``cohort``: small stacks, small images, in-process workers."""
    return compose(
        "preprocess",
        [
            f"data.root={cohort.root}",
            f"data.labels={cohort.labels}",
            f"data.name={name}",
            f"paths.cache={cache}",
            "slices.expected=12",
            "normalize.size=32",
            "preprocess.workers=1",
            "preprocess.qc_samples=4",
            *overrides,
        ],
    )

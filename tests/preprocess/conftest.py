"""Fixtures of the preprocess stage's tests: the composed config and small synthetic heads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pipeline.config import CONF_DIR


def compose_preprocess(overrides: list[str] | None = None) -> DictConfig:
    """``conf/preprocess.yaml`` composed with ``overrides``, as ``python -m`` would see it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("preprocess", overrides=overrides or [])


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
    return compose_preprocess()


# ---------------------------------------------------------------------------------------------
# A small DICOM cohort on disk: head phantoms exported as single-frame MR series.

#: Identifying values planted in every header; no output may contain any of them.
PHI = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "PHI-ID-998877",
    "PatientBirthDate": "19380517",
    "InstitutionName": "St Elsewhere Memorial",
    "ReferringPhysicianName": "House^Gregory",
}
#: Prefix of every UID the fixtures write (UIDs must not leak either).
UID_PREFIX = "1.2.826.0.1.3680043.10.999."


def phantom_volume(n_slices: int, rows: int, cols: int, seed: int) -> np.ndarray:
    """An ellipsoidal "head" (brightest in its middle slices) with a subject-specific ventricle."""
    rng = np.random.default_rng(seed)
    k = np.linspace(-1.0, 1.0, n_slices)[:, None, None]
    yy, xx = np.mgrid[:rows, :cols]
    yy = (yy - (rows - 1) / 2) / (rows * 0.42)
    xx = (xx - (cols - 1) / 2) / (cols * 0.38)
    head = (yy**2 + xx**2 + (k * 0.9) ** 2) <= 1.0
    ventricle = (yy / 0.25) ** 2 + (xx / (0.1 + 0.05 * rng.random())) ** 2 + (k / 0.5) ** 2 <= 1
    volume = np.abs(rng.normal(0, 15, (n_slices, rows, cols)))
    volume[head] += 600 + 100 * rng.random()
    volume[ventricle & head] -= 400
    return np.clip(volume, 0, 4000).astype(np.uint16)


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
    """One file per slice, random file names, InstanceNumbers not in geometric order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = study_uid or generate_uid(UID_PREFIX), generate_uid(UID_PREFIX)
    n = volume.shape[0]
    numbers = rng.permutation(n) + 1
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(UID_PREFIX)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.StudyTime = "20200102", "101500"
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "MR", description, 3
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.InstanceNumber = int(numbers[k])
        # Axial, head first: +z is superior, so slice k sits at k * spacing along the normal.
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-40.0, -40.0, k * spacing - 20.0]
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        ds.SliceThickness = spacing
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(volume[k]).tobytes()
        path = folder / f"{rng.integers(1 << 40):011x}"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


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
        volume = phantom_volume(n_slices, rows, cols, i)
        write_series(root / sid / "study" / "t1", volume, study_uid=study_uids[sid], seed=i)
    lines = ["subject_id,label,age,sex,site"]
    lines += [f"{sid},{label},{70 + i},F,A" for i, (sid, label) in enumerate(subjects.items())]
    if extras:
        first = next(iter(subjects))
        localizer = phantom_volume(3, rows, cols, 99)
        write_series(
            root / first / "study" / "loc",
            localizer,
            description="3-plane localizer",
            study_uid=study_uids[first],
        )
        (root / first / "notes.txt").write_text("scanned on a Tuesday")
        (root / first / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        second = list(subjects)[1 % n_good]
        volume = phantom_volume(n_slices, rows, cols, 50)
        files = write_series(root / second / "extra", volume, study_uid=study_uids[second])
        for path in files[1:]:
            path.unlink()
        files[0].write_bytes(files[0].read_bytes()[:1200])  # an interrupted copy
        write_series(root / "sub-short" / "t1", phantom_volume(n_slices - 1, rows, cols, 7))
        write_series(root / "sub-nolabel" / "t1", phantom_volume(n_slices, rows, cols, 8))
        lines += ["sub-short,AD,80,M,B", "sub-noimages,CN,66,M,B"]
    labels = base / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return Cohort(root=root, labels=labels, subjects=subjects)


def cohort_cfg(cohort: Cohort, cache: Path, name: str = "test", *overrides: str) -> DictConfig:
    """The preprocess config for ``cohort``: small stacks, small images, in-process workers."""
    return compose_preprocess(
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
        ]
    )

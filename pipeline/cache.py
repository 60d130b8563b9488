"""The preprocessed cohort on disk: the contract between ``preprocess`` and ``train``/``evaluate``.

``${paths.cache}/${data.name}/`` holds:

- ``images.npy``      float32 ``(N, S, H, W)``, S = ``slices.count`` (3 by default), memory-mappable
- ``manifest.csv``    one row per accepted subject/session; ``row`` indexes ``images.npy``
- ``rejected.csv``    every subject, series or file not used, with an actionable ``reason``
- ``provenance.json`` the recipe and its hash, versions, counts, timings; written *last*, so a
  cache without it (a crash mid-run) is never taken as complete
- ``qc_montage.png``  the chosen slices of a sample of subjects, for a person to check

No file here ever holds a DICOM patient name, header patient ID or birth date: subject ids come
from folder names and the labels table.

pandas is imported by the functions that read tables, not with this module: the preprocess
command's "up to date" answer and its config errors use the layout alone, and so answer
without pandas' import, 0.25-0.5 s here (README, "Benchmark figures").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

IMAGES = "images.npy"
MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
PROVENANCE = "provenance.json"
QC_MONTAGE = "qc_montage.png"

#: Columns every manifest has, in this order (preprocess may append more after them).
MANIFEST_COLUMNS = (
    "row",  # index into images.npy
    "subject_id",
    "session_id",  # "" when the cohort has one visit per subject
    "label",  # class name, or "" for an unlabeled cohort (predict)
    "site",
    "age",
    "sex",
    "source_format",  # dicom | nifti
    "series_hash",  # hash of the SeriesInstanceUID (or NIfTI path), never the raw UID
    "source_hash",  # hash of the source files' names, sizes and mtimes: detects changed input
    "n_slices",  # slices in the accepted stack
    "slice_spacing_mm",
    "slice_indices",  # chosen indices in the geometrically sorted stack, ";"-joined
    "slice_positions_mm",  # their positions along the slice normal, ";"-joined
)

#: Columns of rejected.csv.
REJECTED_COLUMNS = ("subject_id", "session_id", "path", "level", "reason")

#: The reason rejected.csv gives an image folder that has no row in the labels table. It is not
#: a defect of the input: a cohort that is a subset of a shared folder has one per other subject.
NO_LABEL_REASON = "images found but the subject has no row in the labels table (data.labels)"

#: Id-like columns are always read as strings ("007" must not become 7).
_STRING_COLUMNS = ("subject_id", "session_id", "label", "site", "sex", "path", "level", "reason")


class CacheError(RuntimeError):
    """A preprocessed cohort is missing, incomplete or built with another recipe."""


def cohort_dir(cache_root: str | Path, name: str) -> Path:
    """``${paths.cache}/${data.name}``."""
    return Path(cache_root) / str(name)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a manifest/rejected/predictions CSV with id columns kept as strings."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    dtypes = {c: str for c in _STRING_COLUMNS if c in header}
    frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={"age": [""]})
    return frame


def split_unlabelled(rejected: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rejections, folders without a label)`` of a ``rejected.csv`` table."""
    if rejected.empty or "reason" not in rejected:
        return rejected, rejected.iloc[0:0]
    unlabelled = (rejected["level"] == "subject") & (rejected["reason"] == NO_LABEL_REASON)
    return rejected[~unlabelled], rejected[unlabelled]


@dataclass(frozen=True)
class PreprocessedCohort:
    """A complete cache, opened read-only. ``images`` is a memory map, not loaded into RAM."""

    directory: Path
    images: np.ndarray
    manifest: pd.DataFrame
    provenance: dict[str, Any] = field(repr=False)

    @property
    def recipe_hash(self) -> str:
        return str(self.provenance["recipe_hash"])

    @property
    def recipe(self) -> dict[str, Any]:
        return dict(self.provenance["recipe"])

    @property
    def rejected(self) -> pd.DataFrame:
        import pandas as pd

        path = self.directory / REJECTED
        if not path.exists():
            return pd.DataFrame(columns=list(REJECTED_COLUMNS))
        return read_table(path)

    def __len__(self) -> int:
        return len(self.manifest)


def is_complete(directory: str | Path) -> bool:
    """True when a finished preprocess run left all required files (provenance is written last)."""
    d = Path(directory)
    return all((d / name).exists() for name in (IMAGES, MANIFEST, PROVENANCE))


#: Provenance keys renamed since caches were first written: old name -> current name.
_RENAMED_PROVENANCE_KEYS = {"preprocessing": "recipe", "preprocessing_hash": "recipe_hash"}


def read_provenance(directory: str | Path) -> dict[str, Any]:
    """``provenance.json`` of the cache in ``directory``, with current key names.

    The one reader of the file. Caches written before the recipe was named ``recipe`` stored it
    as ``preprocessing``/``preprocessing_hash``; they are read under the new names, so they stay
    usable instead of looking like caches of an unknown recipe.
    """
    provenance = json.loads((Path(directory) / PROVENANCE).read_text(encoding="utf-8"))
    for old, new in _RENAMED_PROVENANCE_KEYS.items():
        if old in provenance and new not in provenance:
            provenance[new] = provenance.pop(old)
    return provenance


def recorded_source(directory: str | Path) -> Path | None:
    """The data root a cache's provenance records, or ``None`` when it has no (complete) record.

    The preprocess stage stores the root as an absolute path, so comparisons with it do not
    depend on the folder a command runs from.
    """
    if not (Path(directory) / PROVENANCE).exists():
        return None
    recorded = read_provenance(directory).get("source_root")
    return Path(recorded) if isinstance(recorded, str) and recorded else None


def load_cohort(
    directory: str | Path,
    expected_hash: str | None = None,
    rebuild_hint: str | None = None,
) -> PreprocessedCohort:
    """Open a cache, checking it is complete and, if ``expected_hash`` is given, its recipe.

    ``rebuild_hint`` is the command that would (re)build the cache; it goes into the error so the
    user knows what to run.
    """
    d = Path(directory)
    hint = f"\nBuild it with:\n  {rebuild_hint}" if rebuild_hint else ""
    if not d.is_dir():
        raise CacheError(f"No preprocessed cohort at {d}.{hint}")
    if not is_complete(d):
        raise CacheError(
            f"The preprocessed cohort at {d} is incomplete (no {PROVENANCE}: the run that made it "
            f"did not finish).{hint}"
        )
    provenance = read_provenance(d)
    if expected_hash is not None and provenance.get("recipe_hash") != expected_hash:
        raise CacheError(
            f"The preprocessed cohort at {d} was built with recipe "
            f"{provenance.get('recipe_hash')}, but this run expects {expected_hash} "
            f"(slices/series/normalize settings differ).{hint}"
        )
    images = np.load(d / IMAGES, mmap_mode="r")
    manifest = read_table(d / MANIFEST)
    if images.ndim != 4 or images.shape[0] != len(manifest):
        raise CacheError(
            f"{d / IMAGES} has shape {images.shape} but {MANIFEST} has {len(manifest)} rows; "
            f"the cache is inconsistent.{hint}"
        )
    manifest = manifest.sort_values("row", kind="stable").reset_index(drop=True)
    if not np.array_equal(manifest["row"].to_numpy(), np.arange(len(manifest))):
        raise CacheError(f"{d / MANIFEST}: column 'row' is not 0..{len(manifest) - 1}.{hint}")
    return PreprocessedCohort(directory=d, images=images, manifest=manifest, provenance=provenance)

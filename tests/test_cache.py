"""pipeline.cache: the preprocessed cohort as train, evaluate and predict open it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import cache
from tests.helpers import write_cache

HASH = "0123456789abcdef"
REJECTION = {"subject_id": "007", "session_id": "", "path": "007/a", "level": "file",
             "reason": "cut short"}  # fmt: skip


def small_cache(directory: Path, n: int = 3, *, rows: list[int] | None = None) -> Path:
    images = np.arange(n * 3 * 4 * 4, dtype=np.float32).reshape(n, 3, 4, 4)
    manifest = pd.DataFrame(
        {
            "row": rows if rows is not None else list(range(n)),
            "subject_id": [f"{i:03d}" for i in range(n)],  # "000": must stay a string
            "label": ["CN", "MCI", "AD"][:n],
            "age": [71.5, None, 80][:n],
        }
    )
    provenance = {"recipe": {"slices": {"count": 3}}, "recipe_hash": HASH}
    rejected = pd.DataFrame([REJECTION])
    return write_cache(directory, images, manifest, provenance, rejected)


def test_load_cohort_opens_a_complete_cache_memory_mapped(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    assert cache.is_complete(d)
    cohort = cache.load_cohort(d, expected_hash=HASH)
    assert isinstance(cohort.images, np.memmap) and cohort.images.shape == (3, 3, 4, 4)
    assert len(cohort) == 3
    assert cohort.manifest["subject_id"].tolist() == ["000", "001", "002"]
    assert np.isnan(cohort.manifest["age"].iloc[1]) and cohort.manifest["age"].iloc[2] == 80
    assert cohort.manifest["session_id"].tolist() == ["", "", ""]  # empty, not NaN
    assert cohort.recipe_hash == HASH
    assert cohort.recipe == {"slices": {"count": 3}}
    assert cohort.rejected.to_dict("records") == [REJECTION]


def test_caches_written_before_the_recipe_rename_still_open(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    provenance = cache.read_provenance(d)
    legacy = {"preprocessing": provenance.pop("recipe"), "preprocessing_hash": HASH}
    (d / cache.PROVENANCE).write_text(json.dumps(provenance | legacy), encoding="utf-8")
    cohort = cache.load_cohort(d, expected_hash=HASH)
    assert cohort.recipe_hash == HASH and cohort.recipe == {"slices": {"count": 3}}
    with pytest.raises(cache.CacheError, match="built with recipe"):
        cache.load_cohort(d, expected_hash="f" * 16)


def test_recorded_source_is_the_provenance_root_or_none(tmp_path: Path) -> None:
    assert cache.recorded_source(tmp_path / "nothing") is None
    d = small_cache(tmp_path / "c")
    assert cache.recorded_source(d) is None  # no source_root recorded
    provenance = cache.read_provenance(d) | {"source_root": str(tmp_path / "dicom")}
    (d / cache.PROVENANCE).write_text(json.dumps(provenance), encoding="utf-8")
    assert cache.recorded_source(d) == tmp_path / "dicom"


def test_manifest_is_put_in_row_order(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c", rows=[2, 0, 1])
    manifest = cache.load_cohort(d).manifest
    assert manifest["row"].tolist() == [0, 1, 2]
    assert manifest["subject_id"].tolist() == ["001", "002", "000"]


def test_missing_rejected_list_reads_as_empty(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    (d / cache.REJECTED).unlink()
    rejected = cache.load_cohort(d).rejected
    assert rejected.empty and list(rejected.columns) == list(cache.REJECTED_COLUMNS)


def test_missing_folder_names_the_command_that_builds_it(tmp_path: Path) -> None:
    hint = r"(?s)No preprocessed cohort.*Build it with:\n  python -m pipeline"
    with pytest.raises(cache.CacheError, match=hint):
        cache.load_cohort(tmp_path / "nope", rebuild_hint="python -m pipeline.preprocess")


def test_cache_without_provenance_is_incomplete(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    (d / cache.PROVENANCE).unlink()
    assert not cache.is_complete(d)
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.load_cohort(d)


def test_other_recipe_is_refused(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    with pytest.raises(cache.CacheError, match=f"built with recipe {HASH}"):
        cache.load_cohort(d, expected_hash="ffffffffffffffff")
    cache.load_cohort(d)  # no expectation: any recipe


def test_images_and_manifest_must_agree(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c")
    np.save(d / cache.IMAGES, np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(cache.CacheError, match=r"shape \(2, 3, 4, 4\) but manifest.csv has 3"):
        cache.load_cohort(d)


def test_rows_must_index_every_image_once(tmp_path: Path) -> None:
    d = small_cache(tmp_path / "c", rows=[0, 0, 2])
    with pytest.raises(cache.CacheError, match=r"'row' is not 0\.\.2"):
        cache.load_cohort(d)


def test_read_table_keeps_ids_as_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("subject_id,session_id,label,age,score\n007,01,CN,,0.5\n", encoding="utf-8")
    row = cache.read_table(path).iloc[0]
    assert (row["subject_id"], row["session_id"], row["label"]) == ("007", "01", "CN")
    assert np.isnan(row["age"]) and row["score"] == 0.5


def test_cohort_dir_is_cache_root_and_name(tmp_path: Path) -> None:
    assert cache.cohort_dir(tmp_path, "adni") == tmp_path / "adni"
    assert cache.cohort_dir("cache", 2026) == Path("cache/2026")  # a numeric data.name

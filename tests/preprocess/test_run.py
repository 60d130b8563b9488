"""The stage on a small DICOM cohort: outputs, rejections, reruns, crashes, shards, privacy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from pipeline import cache
from pipeline.config import recipe_hash
from pipeline.preprocess import run as run_module
from pipeline.preprocess import subject as subject_module
from pipeline.preprocess.run import PreprocessError, preprocess_cohort
from pipeline.synthetic.phantom import PHI, UID_PREFIX, head_volume

from .conftest import Cohort, cohort_cfg, make_cohort, write_series


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), n_good=4)


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """One plain run over the cohort, shared by the tests that only read its outputs."""
    cache_root = tmp_path_factory.mktemp("cache")
    out = preprocess_cohort(cohort_cfg(cohort, cache_root))
    return out


def provenance(directory: Path) -> dict:
    return json.loads((directory / cache.PROVENANCE).read_text())


def test_outputs_open_with_load_cohort(cohort, reference):
    loaded = cache.load_cohort(reference, expected_hash=provenance(reference)["recipe_hash"])
    assert loaded.images.shape == (4, 3, 32, 32)
    assert loaded.images.dtype == np.float32
    assert isinstance(loaded.images, np.memmap)
    manifest = loaded.manifest
    assert list(manifest.columns[: len(cache.MANIFEST_COLUMNS)]) == list(cache.MANIFEST_COLUMNS)
    assert manifest["subject_id"].tolist() == sorted(cohort.subjects)
    assert dict(zip(manifest["subject_id"], manifest["label"], strict=True)) == cohort.subjects
    assert set(manifest["slice_indices"]) == {"5;6;7"}  # 12 slices: tie towards the head
    # write_series puts slice k at k * 4 mm - 20 mm along the normal
    assert set(manifest["slice_positions_mm"]) == {"0.00;4.00;8.00"}
    assert manifest["n_slices"].tolist() == [12] * 4
    assert manifest["slice_spacing_mm"].tolist() == [4.0] * 4
    assert manifest["age"].tolist() == [70.0, 71.0, 72.0, 73.0]
    assert manifest["source_format"].unique().tolist() == ["dicom"]
    assert manifest["acquired_plane"].unique().tolist() == ["axial"]
    assert manifest["resliced"].unique().tolist() == [False]
    assert manifest["series_hash"].nunique() == 4
    # Every row is a normalized head: background 0, brightest tissue 1.
    assert np.allclose(loaded.images.min(axis=(1, 2, 3)), 0.0)
    assert np.allclose(loaded.images.max(axis=(1, 2, 3)), 1.0)


def test_provenance_records_recipe_versions_counts_and_timings(cohort, reference):
    prov = provenance(reference)
    cfg = cohort_cfg(cohort, reference.parent)
    assert prov["recipe_hash"] == recipe_hash(cfg)
    assert prov["recipe"]["normalize"]["size"] == 32
    assert prov["classes"] == ["CN", "MCI", "AD"]
    assert prov["data_name"] == "test"
    assert prov["config"]["data"]["name"] == "test"
    assert {"torch", "monai", "pydicom", "numpy"} <= set(prov["versions"])
    counts = prov["counts"]
    # 4 good + sub-short (bad series) + sub-nolabel (no label) + sub-noimages (no images)
    assert counts["subjects_seen"] == 7
    assert counts["subjects_accepted"] == 4
    assert counts["subjects_rejected"] == 2  # sub-nolabel is counted apart: not a defect
    assert counts["subjects_unlabelled"] == 1
    listed = cache.read_table(reference / cache.REJECTED)
    assert counts["rejected_rows"] == len(listed) - 1  # rejected.csv still lists sub-nolabel
    assert counts["rejected_by_level"]["subject"] == (listed["level"] == "subject").sum() - 1
    assert counts["non_dicom_skipped"] == 2  # notes.txt and .DS_Store
    assert counts["files"] > 4 * 12
    assert counts["labels"] == {"AD": 1, "CN": 2, "MCI": 1}
    assert {"plan_s", "process_s", "assemble_s", "total_s"} <= set(prov["timings"])
    assert (reference / cache.QC_MONTAGE).stat().st_size > 1000


def test_rejected_lists_every_unused_input_with_a_reason(reference):
    rejected = cache.read_table(reference / cache.REJECTED)
    assert list(rejected.columns) == list(cache.REJECTED_COLUMNS)

    def reasons(subject_id: str) -> str:
        return " | ".join(rejected.loc[rejected["subject_id"] == subject_id, "reason"])

    assert "no folder or NIfTI file" in reasons("sub-noimages")
    assert "no row in the labels table" in reasons("sub-nolabel")
    assert "11 slices, expected 12" in reasons("sub-short")
    assert "localizer" in reasons("sub-000")
    truncated = rejected[(rejected["subject_id"] == "sub-001") & (rejected["level"] == "file")]
    assert len(truncated) == 1 and truncated["path"].iloc[0].startswith("sub-001/extra/")
    assert "truncated" in truncated["reason"].iloc[0]


def copied(cohort: Cohort, tmp_path: Path) -> tuple[Cohort, DictConfig]:
    """A copy of ``cohort`` that a test may change, and its config (cache under tmp_path)."""
    work = tmp_path / "cohort"
    shutil.copytree(cohort.root.parent, work)
    moved = Cohort(work / "dicom", work / "labels.csv", cohort.subjects)
    return moved, cohort_cfg(moved, tmp_path / "cache")


def test_rerun_is_incremental(cohort, tmp_path):
    moved, cfg = copied(cohort, tmp_path)
    out = preprocess_cohort(cfg)
    first = provenance(out)
    assert first["counts"]["subjects_processed"] == 5  # 4 good + sub-short

    before = (out / cache.PROVENANCE).stat().st_mtime_ns
    preprocess_cohort(cfg)  # nothing changed: the cache is returned untouched
    assert (out / cache.PROVENANCE).stat().st_mtime_ns == before

    # One subject's files change, one subject is added: only those two are decoded again.
    changed = next(p for p in (moved.root / "sub-002").rglob("*") if p.is_file())
    os.utime(changed, ns=(1, 1))
    write_series(moved.root / "sub-010" / "t1", head_volume(12, 40, 36, 10), seed=10)
    with open(moved.labels, "a") as fh:
        fh.write("sub-010,MCI,75,M,C\n")
    out = preprocess_cohort(cfg)
    counts = provenance(out)["counts"]
    assert counts["subjects_processed"] == 2
    assert counts["subjects_reused"] == 4
    assert counts["subjects_accepted"] == 5
    manifest = cache.load_cohort(out).manifest
    assert "sub-010" in set(manifest["subject_id"])

    # A recipe change reprocesses everything, and old results are cleaned up.
    out = preprocess_cohort(cohort_cfg(moved, tmp_path / "cache", "test", "slices.offset=1"))
    assert provenance(out)["counts"]["subjects_processed"] == 6
    assert set(cache.load_cohort(out).manifest["slice_indices"]) == {"6;7;8"}
    assert len(list((out / "subjects").iterdir())) == 6


def test_up_to_date_is_decided_from_the_files_before_the_labels_are_parsed(
    cohort, tmp_path, monkeypatch
):
    moved, cfg = copied(cohort, tmp_path)
    out = preprocess_cohort(cfg)
    built = provenance(out)

    def written() -> list[int]:
        return [(out / name).stat().st_mtime_ns for name in (cache.IMAGES, cache.MANIFEST)]

    stamp = written()
    assert built["source_signature"]

    def unparsed(*args, **kwargs):
        raise AssertionError("the labels table was parsed")

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "read_labels", unparsed)
        assert preprocess_cohort(cfg) == out  # nothing changed: answered from the signature

    # The same rows saved again (other bytes): the parsed inputs still match, so the cache is
    # left as it is, and the new signature recorded for the next answer.
    text = moved.labels.read_text()
    moved.labels.write_bytes(text.replace("\n", "\r\n").encode())
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "read_labels", unparsed)
        with pytest.raises(AssertionError, match="labels table was parsed"):
            preprocess_cohort(cfg)
    preprocess_cohort(cfg)
    assert written() == stamp
    again = provenance(out)
    assert again["source_signature"] != built["source_signature"]
    assert again == built | {"source_signature": again["source_signature"]}
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "read_labels", unparsed)
        preprocess_cohort(cfg)

    # A changed label is a changed cohort.
    header, row, *rest = text.splitlines()
    first = row.split(",")
    first[1] = next(c for c in ("CN", "MCI", "AD") if c != first[1])
    moved.labels.write_text("\n".join([header, ",".join(first), *rest]) + "\n")
    preprocess_cohort(cfg)
    assert provenance(out)["inputs_hash"] != built["inputs_hash"]
    manifest = cache.load_cohort(out).manifest.set_index("subject_id")
    assert manifest.loc[first[0], "label"] == first[1]


def test_interrupted_run_leaves_nothing_trusted(cohort, tmp_path, monkeypatch, reference):
    cfg = cohort_cfg(cohort, tmp_path / "cache")
    calls = {"n": 0}
    real = subject_module.process_subject

    def crash_after_two(*args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C, or the machine going down
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(subject_module, "process_subject", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        preprocess_cohort(cfg)
    out = tmp_path / "cache" / "test"
    assert not cache.is_complete(out)
    with pytest.raises(cache.CacheError, match="incomplete"):
        cache.load_cohort(out)
    assert len(list((out / "subjects").glob("*.npz"))) == 2

    # A crash while assembling the cache: the provenance file is gone, so nothing is trusted.
    monkeypatch.setattr(subject_module, "process_subject", real)
    monkeypatch.setattr(
        "pipeline.preprocess.writer.write_qc_montage",
        lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")),
    )
    with pytest.raises(OSError, match="disk full"):
        preprocess_cohort(cfg)
    assert not cache.is_complete(out)
    assert (out / cache.IMAGES).exists() and not (out / cache.PROVENANCE).exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    monkeypatch.undo()
    preprocess_cohort(cfg)
    counts = provenance(out)["counts"]
    assert counts["subjects_processed"] == 0 and counts["subjects_reused"] == 5
    np.testing.assert_array_equal(
        cache.load_cohort(out).images, cache.load_cohort(reference).images
    )


def test_shards_then_merge_equal_one_run_with_workers(cohort, tmp_path, reference):
    cache_root = tmp_path / "cache"
    with pytest.raises(PreprocessError, match="Cannot merge"):
        preprocess_cohort(cohort_cfg(cohort, cache_root, "test", "preprocess.merge=true"))
    for shard in ("0/2", "1/2"):
        out = preprocess_cohort(
            cohort_cfg(
                cohort, cache_root, "test", f"preprocess.shard={shard}", "preprocess.workers=2"
            )
        )
        assert not cache.is_complete(out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "shard-0-of-2.json",
        "shard-1-of-2.json",
    ]
    out = preprocess_cohort(cohort_cfg(cohort, cache_root, "test", "preprocess.merge=true"))
    merged, single = cache.load_cohort(out), cache.load_cohort(reference)
    np.testing.assert_array_equal(merged.images, single.images)
    pd.testing.assert_frame_equal(merged.manifest, single.manifest)
    pd.testing.assert_frame_equal(merged.rejected, single.rejected)
    assert provenance(out)["counts"]["subjects_processed"] == 0


def test_unlabeled_cohort_accepts_every_imaged_subject(cohort, tmp_path):
    out = preprocess_cohort(cohort_cfg(cohort, tmp_path, "test", "data.labels=null"))
    manifest = cache.load_cohort(out).manifest
    assert sorted(manifest["subject_id"]) == sorted([*cohort.subjects, "sub-nolabel"])
    assert set(manifest["label"]) == {""}


def test_sessions_give_one_row_each(tmp_path):
    root = tmp_path / "dicom"
    for k, session in enumerate(("bl", "m12")):
        write_series(root / "s1" / session, head_volume(12, 40, 36, k), seed=k)
    write_series(root / "s2" / "bl", head_volume(12, 40, 36, 5), seed=5)
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "subject_id\tsession_id\tlabel\ns1\tbl\tCN\ns1\tm12\tMCI\ns2\tbl\tAD\ns2\tm24\tAD\n"
    )
    cohort = Cohort(root, labels, {})
    out = preprocess_cohort(cohort_cfg(cohort, tmp_path / "cache"))
    manifest = cache.load_cohort(out).manifest
    rows = list(zip(manifest["subject_id"], manifest["session_id"], manifest["label"], strict=True))
    assert rows == [("s1", "bl", "CN"), ("s1", "m12", "MCI"), ("s2", "bl", "AD")]
    rejected = cache.read_table(out / cache.REJECTED)
    assert rejected[["subject_id", "session_id"]].values.tolist() == [["s2", "m24"]]
    assert "line 5" in rejected["reason"].iloc[0]


def test_bad_configuration_is_a_clear_error(cohort, tmp_path):
    with pytest.raises(PreprocessError, match="is not a folder"):
        preprocess_cohort(cohort_cfg(cohort, tmp_path, "test", f"data.root={tmp_path / 'nope'}"))
    with pytest.raises(PreprocessError, match="expected 'i/n'"):
        preprocess_cohort(cohort_cfg(cohort, tmp_path, "test", "preprocess.shard=half"))


def test_a_cache_is_never_replaced_by_another_cohorts_data(cohort, reference, tmp_path):
    assert provenance(reference)["source_root"] == str(cohort.root.resolve())
    other = tmp_path / "other_root"
    shutil.copytree(cohort.root, other)
    before = (reference / cache.IMAGES).read_bytes()
    cfg = cohort_cfg(cohort, reference.parent, reference.name, f"data.root={other}")
    with pytest.raises(PreprocessError, match=r"preprocessed from .*another data.name"):
        preprocess_cohort(cfg)
    assert (reference / cache.IMAGES).read_bytes() == before


def all_output_bytes(*folders: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for folder in folders for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_cli_end_to_end_without_phi(cohort, tmp_path, repo_root):
    """``python -m pipeline.preprocess`` as a user runs it; no header PHI in any output."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.preprocess",
        f"data.root={cohort.root}",
        f"data.labels={cohort.labels}",
        "data.name=cli",
        f"paths.cache={tmp_path / 'cache'}",
        "slices.expected=12",
        "normalize.size=32",
        "preprocess.workers=2",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "cache" / "cli"
    assert f"Cache: {out}" in done.stdout
    assert cache.load_cohort(out).images.shape == (4, 3, 32, 32)
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "pip_freeze.txt").exists()
    assert (run_dir / cache.PROVENANCE).exists()
    log_text = "".join(p.read_text() for p in run_dir.glob("*.log"))
    assert "4 subject(s) accepted" in log_text and "11 slices, expected 12" in log_text

    secrets = [v.encode() for v in PHI.values()] + [b"Doe", b"19380517", UID_PREFIX.encode()]
    outputs = [
        *all_output_bytes(out, run_dir),
        (Path("stdout"), done.stdout.encode()),
        (Path("stderr"), done.stderr.encode()),
    ]
    assert len(outputs) > 8
    for path, content in outputs:
        for secret in secrets:
            assert secret not in content, f"{secret!r} leaked into {path}"

    bad = subprocess.run(
        [
            *cmd[:3],
            f"data.root={cohort.root}",
            f"data.labels={tmp_path / 'missing.csv'}",
            f"paths.cache={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run2'}",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert bad.returncode == 2
    assert "missing.csv does not exist" in bad.stdout + bad.stderr


def test_nifti_subjects_sit_beside_dicom_ones(tmp_path):
    import nibabel as nib

    root = tmp_path / "mixed"
    write_series(root / "dcm" / "t1", head_volume(12, 40, 36, 1), seed=1)
    # (x, y, z) = (column, row, slice), 2 x 2 x 4 mm, RAS: slices go towards the head
    volume = np.transpose(head_volume(12, 40, 36, 2), (2, 1, 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 4.0, 1.0])), root / "nii.nii.gz")
    labels = tmp_path / "labels.csv"
    labels.write_text("subject_id,label\ndcm,CN\nnii,AD\n")
    out = preprocess_cohort(cohort_cfg(Cohort(root, labels, {}), tmp_path / "cache"))
    manifest = cache.load_cohort(out).manifest
    assert manifest[["subject_id", "source_format", "label"]].values.tolist() == [
        ["dcm", "dicom", "CN"],
        ["nii", "nifti", "AD"],
    ]
    assert manifest["slice_indices"].tolist() == ["5;6;7", "5;6;7"]
    assert manifest["slice_spacing_mm"].tolist() == [4.0, 4.0]


@pytest.mark.slow
def test_cli_multirun_shards_then_merge(cohort, tmp_path, repo_root, reference):
    """The documented cluster recipe, with Hydra's basic launcher standing in for SLURM."""
    common = [
        f"data.root={cohort.root}",
        f"data.labels={cohort.labels}",
        "data.name=test",
        f"paths.cache={tmp_path / 'cache'}",
        "slices.expected=12",
        "normalize.size=32",
        "preprocess.qc_samples=4",
    ]
    for extra in (
        ["-m", "preprocess.shard=0/2,1/2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        ["preprocess.merge=true", f"hydra.run.dir={tmp_path / 'merge'}"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.preprocess", *extra, *common],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    merged = cache.load_cohort(tmp_path / "cache" / "test")
    np.testing.assert_array_equal(merged.images, cache.load_cohort(reference).images)
    assert len(list((tmp_path / "sweep").iterdir())) >= 2  # one folder per shard job


def test_a_damaged_result_is_redone(cohort, tmp_path, reference, caplog):
    """Results skip fsync; one damaged by a machine crash is detected and processed again."""
    cfg = cohort_cfg(cohort, tmp_path / "cache")
    out = preprocess_cohort(cfg)
    damaged = sorted((out / "subjects").glob("sub-002-*.npz"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    (out / cache.PROVENANCE).unlink()  # the run after the crash must assemble again
    with caplog.at_level("WARNING"):
        preprocess_cohort(cfg)
    assert "is damaged" in caplog.text and "sub-002" in caplog.text
    np.testing.assert_array_equal(
        cache.load_cohort(out).images, cache.load_cohort(reference).images
    )

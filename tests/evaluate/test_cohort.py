"""The held-out cache: reuse with the checkpoint's recipe, rebuild otherwise; the leakage guard."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pipeline.apply.cohort import (
    LeakageError,
    build_config,
    check_overlap,
    prepare_cohort,
    recipe_cache_name,
)
from pipeline.cache import PROVENANCE, CacheError
from pipeline.checkpoint import load_checkpoint
from pipeline.config import recipe_config, recipe_hash


@pytest.fixture
def fake_preprocess(monkeypatch, fakes):
    """Stand-in for pipeline.preprocess.run: records its config and writes a matching cache."""
    calls = []

    def preprocess_cohort(cfg):
        calls.append(cfg)
        directory = Path(cfg.paths.cache) / cfg.data.name
        pp = recipe_config(cfg)
        subjects, labels = fakes.cohort_ids((2, 2, 2))
        return fakes.write_cache(directory, subjects, labels, pp=pp)

    module = types.ModuleType("pipeline.preprocess.run")
    module.preprocess_cohort = preprocess_cohort
    monkeypatch.setitem(sys.modules, "pipeline.preprocess.run", module)
    return calls


def test_matching_cache_is_reused(tmp_path, fakes, evaluate_cfg, fake_preprocess) -> None:
    subjects, labels = fakes.cohort_ids()
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    cohort = prepare_cohort(evaluate_cfg("data.name=held"), ckpt, log=lambda _: None)
    assert cohort.directory == tmp_path / "cache" / "held"
    assert len(cohort) == len(subjects)
    assert fake_preprocess == []


def test_missing_cache_is_built_with_the_checkpoint_recipe(
    tmp_path, fakes, evaluate_cfg, fake_preprocess
) -> None:
    pp = fakes.recipe(size=24)
    pp["slices"]["offset"] = 2
    ckpt = load_checkpoint(
        fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net(), pp=pp, classes=["CN", "AD"])
    )
    (tmp_path / "dicom").mkdir()
    cfg = evaluate_cfg("data.name=held", f"data.root={tmp_path / 'dicom'}", "preprocess.workers=1")
    cohort = prepare_cohort(cfg, ckpt, log=lambda _: None)
    assert cohort.recipe_hash == recipe_hash(pp)
    (built,) = fake_preprocess
    assert built.slices.offset == 2 and built.normalize.size == 24
    # the model's classes first; MCI (known to the data, not the model) is kept, not an error
    assert list(built.data.classes) == ["CN", "AD", "MCI"]
    assert built.data.root == str(tmp_path / "dicom")
    assert built.preprocess.workers == 1
    assert "qc_samples" in built.preprocess  # defaults from conf/preprocess.yaml fill the rest


def test_without_cache_or_images_the_error_says_what_to_pass(
    tmp_path, fakes, evaluate_cfg, fake_preprocess
) -> None:
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    with pytest.raises(CacheError, match=r"data.root=.* is not a folder.*Pass data.root=DIR"):
        prepare_cohort(evaluate_cfg("data.name=held"), ckpt, log=lambda _: None)
    assert fake_preprocess == []


def test_a_cache_made_from_another_folder_is_refused_not_overwritten(
    tmp_path, fakes, evaluate_cfg, fake_preprocess
) -> None:
    subjects, labels = fakes.cohort_ids()
    cache = fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    provenance = json.loads((cache / PROVENANCE).read_text())
    provenance["source_root"] = str((tmp_path / "old_cohort").resolve())
    (cache / PROVENANCE).write_text(json.dumps(provenance))
    (tmp_path / "new_cohort").mkdir()
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    cfg = evaluate_cfg("data.name=held", f"data.root={tmp_path / 'new_cohort'}")
    with pytest.raises(CacheError, match=r"old_cohort.*another data.name"):
        prepare_cohort(cfg, ckpt, log=lambda _: None)
    assert fake_preprocess == []  # the other cohort's cache was not touched
    # The same folder (spelled differently) is reused.
    cfg = evaluate_cfg("data.name=held", f"data.root={tmp_path / 'new_cohort'}/.")
    provenance["source_root"] = str((tmp_path / "new_cohort").resolve())
    (cache / PROVENANCE).write_text(json.dumps(provenance))
    prepare_cohort(cfg, ckpt, log=lambda _: None)
    assert fake_preprocess == []


def test_cache_of_another_recipe_is_kept_and_a_sibling_built(
    tmp_path, fakes, evaluate_cfg, fake_preprocess
) -> None:
    subjects, labels = fakes.cohort_ids()
    (tmp_path / "dicom").mkdir()
    other = fakes.write_cache(tmp_path / "cache" / "held", subjects, labels, pp=fakes.recipe(16))
    before = (other / PROVENANCE).read_text()
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    cfg = evaluate_cfg("data.name=held", f"data.root={tmp_path / 'dicom'}")
    cohort = prepare_cohort(cfg, ckpt, log=lambda _: None)
    expected = recipe_cache_name("held", ckpt.recipe_hash)
    assert cohort.directory.name == expected
    assert (other / PROVENANCE).read_text() == before
    # The second time the sibling is found and reused.
    again = prepare_cohort(cfg, ckpt, log=lambda _: None)
    assert again.directory.name == expected and len(fake_preprocess) == 1


def test_force_rebuilds_a_matching_cache(tmp_path, fakes, evaluate_cfg, fake_preprocess) -> None:
    subjects, labels = fakes.cohort_ids()
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels)
    (tmp_path / "dicom").mkdir()
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    cfg = evaluate_cfg("data.name=held", "preprocess.force=true", f"data.root={tmp_path / 'dicom'}")
    prepare_cohort(cfg, ckpt, log=lambda _: None)
    assert len(fake_preprocess) == 1 and fake_preprocess[0].data.name == "held"


def test_build_config_carries_paths_and_resolves_data(tmp_path, fakes, evaluate_cfg) -> None:
    ckpt = load_checkpoint(fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net()))
    built = build_config(evaluate_cfg(), ckpt, "demo_heldout")
    assert built.paths.cache == str(tmp_path / "cache")
    assert built.data.root == str(tmp_path / "data" / "demo" / "heldout" / "dicom")
    assert recipe_hash(built) == ckpt.recipe_hash


def test_leakage_guard_lists_the_shared_subjects(tmp_path, fakes) -> None:
    ckpt = load_checkpoint(
        fakes.write_checkpoint(
            tmp_path / "best.pt", fakes.conv_net(), train_subjects=["s1", "s2"], val_subjects=["s9"]
        )
    )
    with pytest.raises(LeakageError, match=r"2 held-out subject\(s\).*s1, s9") as err:
        check_overlap(["s0", "s1", "s9", "s1"], ckpt)
    assert "evaluate.allow_overlap=true" in str(err.value)
    assert check_overlap(["s0", "s1", "s9"], ckpt, allow_overlap=True) == ["s1", "s9"]
    assert check_overlap(["s0", "s3"], ckpt) == []

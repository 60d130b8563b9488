"""train, evaluate and predict answer ``--help`` and config errors without importing torch or MONAI
(``python -X importtime`` tells); the preprocess stage's own checks are in
tests/preprocess/test_startup.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import COMPUTE_LIBRARIES, imported_packages


def run_stage(repo_root: Path, stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"pipeline.{stage}", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("stage", ["train", "evaluate", "predict"])
def test_help_imports_no_compute_library(repo_root: Path, stage: str) -> None:
    done = run_stage(repo_root, stage, "--help")
    assert done.returncode == 0 and "== Config ==" in done.stdout
    imported = imported_packages(done.stderr)
    assert "hydra" in imported
    assert not imported & COMPUTE_LIBRARIES, imported & COMPUTE_LIBRARIES


@pytest.mark.parametrize("stage", ["evaluate", "predict"])
def test_missing_checkpoint_is_a_quick_config_error(repo_root, tmp_path, stage) -> None:
    run = f"hydra.run.dir={tmp_path / 'run'}"
    missing = run_stage(repo_root, stage, run)
    assert missing.returncode == 2
    assert "error: Missing mandatory value: checkpoint" in missing.stderr
    cohort = (f"data.root={tmp_path}", "data.name=x")
    nowhere = run_stage(repo_root, stage, f"checkpoint={tmp_path / 'nope.pt'}", *cohort, run)
    assert nowhere.returncode == 2
    assert f"error: No checkpoint at {tmp_path / 'nope.pt'}" in nowhere.stderr
    for done in (missing, nowhere):
        assert not imported_packages(done.stderr) & COMPUTE_LIBRARIES


def test_train_without_its_cache_is_a_quick_config_error(repo_root, tmp_path) -> None:
    done = run_stage(repo_root, "train", "data.name=nowhere", f"paths.cache={tmp_path}",
                     f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert done.returncode == 2
    assert f"error: No preprocessed cohort at {tmp_path / 'nowhere'}" in done.stderr
    assert "python -m pipeline.preprocess data.name=nowhere" in done.stderr
    assert not imported_packages(done.stderr) & COMPUTE_LIBRARIES


def test_no_config_sets_hydra_mode(repo_root: Path) -> None:
    """What lets pipeline.utils.hydra_start skip Hydra's probe of ``hydra.mode``."""
    from omegaconf import OmegaConf

    files = sorted((repo_root / "conf").rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        node = OmegaConf.to_container(OmegaConf.load(path)) or {}
        section = node if path.parent.name == "hydra" else node.get("hydra") or {}
        assert "mode" not in section, path


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ([], False),
        (["hydra.run.dir=/tmp/x", "model=resnet18"], False),
        (["hydra.mode=MULTIRUN"], True),
        (["++hydra.mode=RUN"], True),
        (["~hydra.mode"], True),
        (["hydra.model=x"], False),
    ],
)
def test_names_mode(overrides: list[str], named: bool) -> None:
    from pipeline.utils.hydra_start import names_mode

    assert names_mode(overrides) is named


def test_compose_once_answers_as_hydras_probe(repo_root: Path) -> None:
    """The same answer as Hydra's own probe, which composes the config, for each of our
    commands; and the probe still runs when the command line names ``hydra.mode``."""
    from hydra import initialize_config_dir
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.config import CONF_DIR
    from pipeline.utils.hydra_start import compose_once

    original = Hydra.get_mode
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            hydra_app = GlobalHydra.instance().hydra
            for name in ("preprocess", "train", "evaluate", "predict"):
                assert original(hydra_app, name, []) is None
            compose_once()
            compose_once()  # idempotent: still one layer over Hydra's probe
            assert Hydra.get_mode.__wrapped__ is original
            for name in ("preprocess", "train", "evaluate", "predict"):
                assert Hydra.get_mode(hydra_app, name, []) is None
            multirun = Hydra.get_mode(hydra_app, "preprocess", ["hydra.mode=MULTIRUN"])
            assert str(multirun) == "RunMode.MULTIRUN"
    finally:
        Hydra.get_mode = original

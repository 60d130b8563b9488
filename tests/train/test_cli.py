"""``python -m pipeline.train``: clear errors (exit 2), printed results, multirun folders."""

from __future__ import annotations

import sys

import pytest

from pipeline.train.__main__ import main

FAST = [
    "data.name=fake",
    "normalize.size=32",
    "model.net.channels=[8,16]",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "datamodule.batch_size=16",
    "split.folds=1",
]


def _run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["pipeline.train", *args])
    main()


def test_missing_cache_says_what_to_run(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        _run(monkeypatch, *FAST, "data.name=nothere", f"hydra.run.dir={tmp_path / 'run'}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "No preprocessed cohort at cache/nothere" in err
    assert "python -m pipeline.preprocess data.name=nothere" in err and "normalize.size=32" in err
    assert "Traceback" not in err


def test_missing_cache_hint_keeps_the_cohort_group_and_classes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        _run(
            monkeypatch,
            *FAST,
            "data=custom",
            "data.name=nothere",
            "data.classes=[CN,AD]",
            "model.optimizer.lr=0.01",
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    hint = next(
        line for line in capsys.readouterr().err.splitlines() if "pipeline.preprocess" in line
    )
    assert "data=custom" in hint and "data.classes=[CN,AD]" in hint
    assert "model.optimizer.lr" not in hint  # training settings are not preprocess settings


def test_cache_with_another_recipe_is_refused(
    tmp_path, monkeypatch, capsys, train_cfg, fake_cache
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_cache(train_cfg(f"paths.cache={tmp_path / 'cache'}", "normalize.size=48"), n_subjects=12)
    with pytest.raises(SystemExit) as exit_info:
        _run(monkeypatch, *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "was built with recipe" in err and "normalize.size=32" in err


def test_empty_class_is_a_clear_error(tmp_path, monkeypatch, capsys, train_cfg, fake_cache) -> None:
    monkeypatch.chdir(tmp_path)
    fake_cache(train_cfg(f"paths.cache={tmp_path / 'cache'}"), labels=["CN", "MCI"] * 6)
    with pytest.raises(SystemExit):
        _run(monkeypatch, *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert "class(es) ['AD'] have no subjects (CN=6, MCI=6, AD=0)" in capsys.readouterr().err


@pytest.mark.slow
def test_run_prints_folder_and_checkpoint(
    tmp_path, monkeypatch, capsys, train_cfg, fake_cache, quick_freeze
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_cache(
        train_cfg(f"paths.cache={tmp_path / 'cache'}", "model.net.channels=[8,16]"), n_subjects=20
    )
    _run(monkeypatch, *FAST, "hydra.run.dir=runs/cli")
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "cli"
    assert f"Run folder: {run}" in out
    assert f"Best checkpoint: {run / 'checkpoints' / 'best.pt'}" in out
    assert (tmp_path / "runs" / "cli" / ".hydra" / "config.yaml").is_file()
    assert "Fold 0: kept epoch" in (tmp_path / "runs" / "cli" / "train.log").read_text()
    assert (tmp_path / "runs" / "cli" / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
def test_multirun_gives_each_job_its_own_folder(
    tmp_path, monkeypatch, train_cfg, fake_cache, quick_freeze
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_cache(train_cfg(f"paths.cache={tmp_path / 'cache'}"), n_subjects=20)
    _run(monkeypatch, "-m", *FAST, "model.optimizer.lr=0.001,0.003", "hydra.sweep.dir=sweep")
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 2
    assert "model.optimizer.lr=0.001" in jobs[0].name and "model.optimizer.lr=0.003" in jobs[1].name
    for job in jobs:
        assert (job / "checkpoints" / "best.pt").is_file()
        assert (job / "split.csv").is_file()

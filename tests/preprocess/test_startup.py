"""The commands that compute nothing import nothing heavy: ``--help``, a config error and "the
cohort is up to date" answer without torch or MONAI, and the last two without the labels parser
and cache writer's pandas and Pillow either (``python -X importtime`` tells); worker processes
start from what the parent already imported."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from pipeline.preprocess import workers
from pipeline.preprocess.run import preprocess_cohort
from tests.helpers import COMPUTE_LIBRARIES, imported_packages

from .conftest import cohort_cfg, make_cohort

#: What only parsing the labels table and writing the cache need.
TABLE_LIBRARIES = frozenset({"pandas", "PIL"})


def run_cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline.preprocess", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_imports_no_compute_library(repo_root: Path) -> None:
    done = run_cli(repo_root, "--help")
    assert done.returncode == 0 and "== Configuration groups ==" in done.stdout
    imported = imported_packages(done.stderr)
    assert "hydra" in imported  # the parser works: it did see the imports
    assert not imported & COMPUTE_LIBRARIES, imported & COMPUTE_LIBRARIES


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), n_good=3, extras=False)


def cli_args(cohort, cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        f"data.root={cohort.root}",
        f"data.labels={cohort.labels}",
        "data.name=startup",
        f"paths.cache={cache}",
        "slices.expected=12",
        "normalize.size=32",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def test_bad_recipe_is_one_error_before_any_subject(small_cohort, tmp_path, repo_root) -> None:
    bad = ("series.prefer=middle", "series.description_include='(t1'")
    done = run_cli(repo_root, *cli_args(small_cohort, tmp_path, tmp_path / "run", *bad))
    assert done.returncode == 2
    message = done.stdout + done.stderr
    assert "series.prefer must be 'first' or 'last', got 'middle'" in message
    assert message.count("Invalid preprocessing recipe") == 1
    assert not (tmp_path / "startup" / "subjects").exists()  # no subject was looked at
    assert not imported_packages(done.stderr) & (COMPUTE_LIBRARIES | TABLE_LIBRARIES)


def test_up_to_date_cohort_answers_without_compute_libraries(
    small_cohort, tmp_path, repo_root
) -> None:
    cache = tmp_path / "cache"
    preprocess_cohort(cohort_cfg(small_cohort, cache, "startup"))
    args = cli_args(small_cohort, cache, tmp_path / "run", "preprocess.qc_samples=4")
    done = run_cli(repo_root, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is up to date" in done.stdout + done.stderr
    imported = imported_packages(done.stderr)
    assert not imported & (COMPUTE_LIBRARIES | TABLE_LIBRARIES), imported


def test_a_broken_chain_is_one_config_error(small_cohort, tmp_path) -> None:
    cfg = cohort_cfg(small_cohort, tmp_path, "chain", "normalize.transforms.0._target_=no.Such")
    with pytest.raises(workers.PreprocessError, match=r"normalize\.transforms cannot be built"):
        preprocess_cohort(cfg)
    assert not (tmp_path / "chain" / "subjects").exists()


def _already_imported(name: str) -> bool:
    return name in sys.modules


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start is Linux's")
def test_workers_start_with_the_parents_imports() -> None:
    workers._compute_path()  # what run_tasks imports before it starts the pool
    with ProcessPoolExecutor(max_workers=1, mp_context=workers._pool_context()) as pool:
        inherited = pool.submit(_already_imported, "monai").result(timeout=60)
    assert inherited, "the worker had to import MONAI again"


@pytest.mark.parametrize("n_tasks, n_workers", [(1, 2), (7, 2), (40, 2), (2000, 2), (2000, 8)])
def test_task_chunks_cover_every_task_once_and_keep_workers_busy(n_tasks, n_workers) -> None:
    tasks = list(range(n_tasks))
    chunks = workers.task_chunks(tasks, n_workers)
    assert [t for chunk in chunks for t in chunk] == tasks  # each once, in order
    assert max(len(c) for c in chunks) <= workers.MAX_CHUNK
    assert len(chunks) >= min(n_tasks, 8 * n_workers)  # enough for the end of the run

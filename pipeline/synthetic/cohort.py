"""A whole synthetic cohort: subject ids and labels, a process pool over the subjects, and a
crash-safe folder.

A cohort is written into a temporary sibling folder and renamed into place only when every
subject, ``labels.csv``, ``truth.csv`` and the stamp ``cohort.json`` are written, so a folder
named like a cohort is always complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import config_hash
from pipeline.provenance import package_versions
from pipeline.synthetic.atlas import load_atlas
from pipeline.synthetic.profiles import (
    AnatomyModel,
    SiteProfile,
    anatomy_model,
    site_profile,
    site_settings,
    split_overrides,
)
from pipeline.synthetic.subject import DEFECTS, SubjectTask, generate_subject
from pipeline.utils.atomic import write_csv, write_json

#: Bump when a change to the generator changes its output for the same config.
GENERATOR_VERSION = 1

DICOM_DIR = "dicom"
LABELS = "labels.csv"
TRUTH = "truth.csv"
STAMP = "cohort.json"
LABEL_COLUMNS = ("subject_id", "label", "age", "sex", "site")
DEFAULT_CLASS_MIX: Mapping[str, float] = {"CN": 0.45, "MCI": 0.35, "AD": 0.20}


def class_counts(n_subjects: int, class_mix: Mapping[str, float]) -> dict[str, int]:
    """Subjects per class: proportional to ``class_mix``, rounded by largest remainder."""
    if n_subjects < 0:
        raise ValueError("n_subjects must be >= 0")
    weights = {k: float(v) for k, v in class_mix.items()}
    if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"class_mix needs non-negative weights with a positive sum: {class_mix}")
    total = sum(weights.values())
    exact = {k: n_subjects * w / total for k, w in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), list(exact).index(k)))
    for k in by_remainder[: n_subjects - sum(counts.values())]:
        counts[k] += 1
    return counts


def _stable_key(text: str) -> int:
    """A process-independent integer for a string (``hash()`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass
class CohortPlan:
    """Everything needed to make one cohort; :func:`plan_cohort` builds it."""

    out_dir: Path
    site: SiteProfile
    model: AnatomyModel
    seed: int
    class_mix: dict[str, float]
    defects: dict[str, int]
    tasks: list[SubjectTask] = field(default_factory=list)
    work_dir: Path | None = None

    def settings(self) -> dict[str, Any]:
        """What determines the cohort's content (hashed into the stamp)."""
        return {
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "n_subjects": sum(1 for t in self.tasks if not t.defect),
            "class_mix": self.class_mix,
            "defects": self.defects,
            "site": site_settings(self.site),
            "anatomy": asdict(self.model),
        }

    def settings_hash(self) -> str:
        return config_hash(self.settings())


def plan_cohort(
    out_dir: str | Path,
    *,
    n_subjects: int,
    seed: int,
    site: str | Mapping[str, Any] | SiteProfile = "A",
    class_mix: Mapping[str, float] | None = None,
    anatomy: str | Mapping[str, Any] | AnatomyModel = "default",
    defects: Mapping[str, int] | None = None,
    **overrides: Any,
) -> CohortPlan:
    """Ids, labels and per-subject seeds of a cohort (nothing is written yet)."""
    site_over, anatomy_over = split_overrides(overrides)
    profile = site_profile(site, **site_over)
    model = anatomy_model(anatomy, **anatomy_over)
    mix = {str(k): float(v) for k, v in (class_mix or DEFAULT_CLASS_MIX).items()}
    unknown = sorted(set(mix) - set(model.classes))
    if unknown:
        raise ValueError(
            f"class_mix names classes {unknown} the anatomy model lacks "
            f"(it has {list(model.classes)})"
        )
    bad = sorted(set(defects or {}) - set(DEFECTS))
    if bad:
        raise ValueError(f"unknown defect(s) {bad}; choices: {list(DEFECTS)}")
    defect_counts = {k: int(v) for k, v in (defects or {}).items() if int(v) > 0}

    root = np.random.SeedSequence(int(seed), spawn_key=(_stable_key(profile.id_prefix),))
    label_seed, *subject_seeds = root.spawn(1 + n_subjects + sum(defect_counts.values()))
    rng = np.random.default_rng(label_seed)
    counts = class_counts(n_subjects, mix)
    labels = [c for c, n in counts.items() for _ in range(n)]
    labels = [str(x) for x in rng.permutation(labels)] if labels else []
    extra = [d for d in DEFECTS for _ in range(defect_counts.get(d, 0))]
    extra_labels = [str(rng.choice(sorted(mix), p=_normalised(mix))) for _ in extra]

    plan = CohortPlan(
        out_dir=Path(out_dir),
        site=profile,
        model=model,
        seed=int(seed),
        class_mix=mix,
        defects=defect_counts,
    )
    width = max(4, len(str(len(subject_seeds))))
    for i, (label, defect) in enumerate(
        [(lab, "") for lab in labels] + list(zip(extra_labels, extra, strict=True))
    ):
        plan.tasks.append(
            SubjectTask(
                subject_id=f"{profile.id_prefix}{i + 1:0{width}d}",
                label=label,
                seed=subject_seeds[i],
                site=profile,
                model=model,
                dicom_root="",
                defect=defect,
            )
        )
    return plan


def _normalised(mix: Mapping[str, float]) -> list[float]:
    keys = sorted(mix)
    total = sum(mix[k] for k in keys)
    return [mix[k] / total for k in keys]


def _init_worker() -> None:
    # One thread per worker (torch and BLAS): the pool already uses every core, and idle BLAS
    # threads spinning beside busy workers cost more than they give on small matrix products.
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    load_atlas()


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """One torch and one BLAS thread for the block, as in a pool worker; restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def subject_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """A process pool for ``workers > 1`` (``None``: work in this process, single-threaded)."""
    if workers <= 1:
        with _single_threaded():
            yield None
        return
    load_atlas()  # built once here; forked workers inherit it
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker
    ) as pool:
        yield pool


def _start(plan: CohortPlan) -> None:
    """Create the cohort's temporary folder and point the tasks at it."""
    plan.out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = plan.out_dir.with_name(f".{plan.out_dir.name}.tmp-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    (work / DICOM_DIR).mkdir(parents=True)
    plan.work_dir = work
    root = str(work / DICOM_DIR)
    plan.tasks = [dataclasses.replace(t, dicom_root=root) for t in plan.tasks]


def _finish(plan: CohortPlan, truths: Sequence[dict[str, Any]], seconds: float) -> None:
    """Write labels, truth and stamp, then move the finished cohort into place."""
    assert plan.work_dir is not None
    truth = pd.DataFrame(truths).sort_values("subject_id").reset_index(drop=True)
    labels = truth.loc[truth["defect"] != "unlabelled", list(LABEL_COLUMNS)]
    write_csv(plan.work_dir / LABELS, labels)
    write_csv(plan.work_dir / TRUTH, truth)
    usable = truth.loc[truth["defect"] == "", "label"]
    counts = usable.value_counts().reindex(list(plan.class_mix), fill_value=0)
    write_json(
        plan.work_dir / STAMP,
        {
            "settings_hash": plan.settings_hash(),
            "settings": plan.settings(),
            "counts": {
                "usable": len(usable),
                "labelled_rows": len(labels),
                "per_class": {k: int(v) for k, v in counts.items()},
                "defects": plan.defects,
            },
            "seconds": round(seconds, 2),
            "versions": package_versions(),
        },
    )
    old = plan.out_dir.with_name(f".{plan.out_dir.name}.old-{os.getpid()}")
    if plan.out_dir.exists():
        plan.out_dir.rename(old)
    plan.work_dir.rename(plan.out_dir)
    shutil.rmtree(old, ignore_errors=True)


def read_stamp(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``cohort.json`` of a finished cohort, or ``None``."""
    path = Path(out_dir) / STAMP
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_plans(plans: Sequence[CohortPlan], workers: int = 1, progress: bool = False) -> None:
    """Make several cohorts, sharing one process pool so every core stays busy."""
    for plan in plans:
        _start(plan)
    tasks = [(i, t) for i, plan in enumerate(plans) for t in plan.tasks]
    results: list[list[dict[str, Any]]] = [[] for _ in plans]
    started = time.perf_counter()
    try:
        with subject_pool(workers) as pool:
            mapped = (
                pool.map(generate_subject, [t for _, t in tasks], chunksize=2)
                if pool
                else map(generate_subject, (t for _, t in tasks))
            )
            if progress:
                from tqdm import tqdm

                mapped = tqdm(mapped, total=len(tasks), desc="subjects", unit="subj")
            for (i, _), truth in zip(tasks, mapped, strict=True):
                results[i].append(truth)
        for plan, truths in zip(plans, results, strict=True):
            _finish(plan, truths, time.perf_counter() - started)
    finally:
        for plan in plans:
            if plan.work_dir is not None and plan.work_dir.exists():
                shutil.rmtree(plan.work_dir, ignore_errors=True)


def generate_cohort(
    out_dir: str | Path,
    *,
    n_subjects: int,
    seed: int,
    site: str | Mapping[str, Any] | SiteProfile = "A",
    class_mix: Mapping[str, float] | None = None,
    workers: int = 1,
    anatomy: str | Mapping[str, Any] | AnatomyModel = "default",
    defects: Mapping[str, int] | None = None,
    progress: bool = False,
    **overrides: Any,
) -> Path:
    """Write a synthetic cohort and return ``out_dir``.

    ``out_dir`` gets ``dicom/<subject_id>/...`` (the raw export), ``labels.csv``
    (subject_id,label,age,sex,site), ``truth.csv`` (everything the generator knows, for tests
    only) and ``cohort.json`` (settings hash and counts). An existing ``out_dir`` is replaced.

    Args:
        n_subjects: labelled, usable subjects; the class counts follow ``class_mix`` exactly
            (largest-remainder rounding).
        seed: the same seed and settings give byte-identical files, whatever ``workers``.
        site: built-in site profile ("A", "B"), a mapping of profile keys, or a SiteProfile.
        class_mix: class -> weight (default 45% CN, 35% MCI, 20% AD).
        workers: processes (one subject at a time each).
        anatomy: built-in anatomy model name, a mapping, or an AnatomyModel.
        defects: extra deliberately broken subjects, e.g. ``{"truncated": 1}`` (see
            :data:`pipeline.synthetic.subject.DEFECTS`); none by default.
        **overrides: any site-profile or anatomy-model key, e.g. ``p_localizer=1.0``,
            ``matrix=[[64, 64]]`` (small images for fast tests), ``transfer_syntax={...}``.
    """
    plan = plan_cohort(
        out_dir,
        n_subjects=n_subjects,
        seed=seed,
        site=site,
        class_mix=class_mix,
        anatomy=anatomy,
        defects=defects,
        **overrides,
    )
    run_plans([plan], workers=workers, progress=progress)
    return plan.out_dir

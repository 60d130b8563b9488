"""Cohort orchestration: find subjects, match the labels, process in workers, assemble the cache.

:func:`preprocess_cohort` is the stage's public API (the CLI, ``evaluate`` and ``predict`` call
it). It is incremental at two levels:

- per subject: a subject whose files, sessions and recipe are unchanged reuses its saved result
  (:mod:`pipeline.preprocess.results`) and is not decoded again;
- per cohort: when nothing at all changed (same subjects, results, labels table and options),
  the existing complete cache is returned untouched. This is decided first from a signature of
  the files, before the labels table is parsed (:mod:`pipeline.preprocess.signature`): that
  answer needs neither pandas nor the cache writer. A table saved again with the same rows
  still matches the second check, on the parsed inputs.

Scale-out: ``preprocess.shard=i/n`` runs one shard of the subjects and stops;
``preprocess.merge=true`` assembles the cache from every shard's results, refusing if any
subject is missing (see :mod:`pipeline.preprocess.shards`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from pipeline import cache
from pipeline.config import config_hash, recipe_config, to_container
from pipeline.labels import read_labels, sessions_by_subject
from pipeline.preprocess.discover import relative_path
from pipeline.preprocess.options import SeriesOptions
from pipeline.preprocess.record import STEPS, SubjectContext, SubjectRecord
from pipeline.preprocess.rejection import Rejection
from pipeline.preprocess.results import RESULT_FORMAT, ResultStore, SubjectTask
from pipeline.preprocess.shards import parse_shard, select_shard, write_shard_record
from pipeline.preprocess.signature import PROVENANCE_KEY as SIGNATURE_KEY
from pipeline.preprocess.signature import FoundSubjects, SourceSignature
from pipeline.preprocess.slices import MODES
from pipeline.preprocess.workers import PreprocessError, load_compute_path, run_tasks
from pipeline.provenance import package_versions
from pipeline.utils.atomic import write_json

if TYPE_CHECKING:
    import pandas as pd

# The compute path (pipeline.preprocess.subject: torch, MONAI, the DICOM readers) is imported
# only once there are subjects to process (pipeline.preprocess.workers), and the labels parser
# and cache writer (pandas, Pillow) only once the cohort is not up to date: "up to date" and
# config errors answer without any of them.

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("CN", "MCI", "AD")


@dataclass(frozen=True)
class PreprocessOptions:
    """The ``preprocess`` config section (run options; they never change the pixels)."""

    workers: int = 2
    shard: tuple[int, int] | None = None  # (i, n)
    merge: bool = False
    force: bool = False
    qc_samples: int = 12
    progress: bool = True

    @classmethod
    def from_cfg(cls, section: Mapping[str, Any] | None) -> PreprocessOptions:
        section = dict(section or {})
        try:
            shard = parse_shard(section.get("shard"))
        except ValueError as exc:
            raise PreprocessError(str(exc)) from None
        options = cls(
            workers=int(section.get("workers", cls.workers)),
            shard=shard,
            merge=bool(section.get("merge", cls.merge)),
            force=bool(section.get("force", cls.force)),
            qc_samples=int(section.get("qc_samples", cls.qc_samples)),
            progress=bool(section.get("progress", cls.progress)),
        )
        if options.merge and options.shard is not None:
            raise PreprocessError("preprocess.merge=true joins all shards; do not set a shard")
        return options

    @property
    def may_reuse_cache(self) -> bool:
        """An up-to-date complete cache is returned as it is (not with force, shard or merge)."""
        return not (self.force or self.shard or self.merge)


def check_recipe(recipe: Mapping[str, Any]) -> None:
    """Raise :class:`PreprocessError` naming the key when the recipe cannot work.

    Checked once, before any subject: a bad ``series.prefer`` or regex, or an impossible slice
    block, is one config error instead of a rejection of every subject. (The MONAI chain itself
    is built, and so checked, once there are subjects to process.)
    """
    slices, normalize = recipe["slices"], recipe["normalize"]
    problems = []
    try:
        SeriesOptions.from_config(recipe["series"])
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
    if slices.get("mode", MODES[0]) not in MODES:
        problems.append(f"slices.mode must be one of {list(MODES)}, got {slices.get('mode')!r}")
    for key in ("count", "step"):
        if not _is_int(slices.get(key, 1), minimum=1):
            problems.append(f"slices.{key} must be a whole number >= 1, got {slices.get(key)!r}")
    expected = slices.get("expected")
    if expected is not None and not _is_int(expected, minimum=3):
        problems.append(f"slices.expected must be null or a whole number >= 3, got {expected!r}")
    size = normalize.get("size")
    if not _is_int(size, minimum=1):
        problems.append(f"normalize.size must be a whole number >= 1, got {size!r}")
    if problems:
        raise PreprocessError("Invalid preprocessing recipe: " + "; ".join(problems))


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class CohortRun:
    """What one ``preprocess_cohort`` call was asked to do, read from its config and checked."""

    name: str
    root: Path  # data.root
    out: Path  # ${paths.cache}/${data.name}
    classes: tuple[str, ...]
    labels_path: str | None  # data.labels (None: an unlabeled cohort)
    options: PreprocessOptions
    recipe: dict[str, Any]
    recipe_hash: str

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> CohortRun:
        data = cfg.data
        recipe = recipe_config(cfg)
        run = cls(
            name=str(data.name),
            root=Path(str(data.root)),
            out=cache.cohort_dir(cfg.paths.cache, str(data.name)),
            classes=tuple(str(c) for c in (data.get("classes") or DEFAULT_CLASSES)),
            labels_path=str(data.labels) if data.get("labels") else None,
            options=PreprocessOptions.from_cfg(to_container(cfg.get("preprocess"))),
            recipe=recipe,
            recipe_hash=config_hash(recipe),
        )
        if not run.root.is_dir():
            raise PreprocessError(f"data.root={run.root} is not a folder (cohort {run.name!r}).")
        check_recipe(recipe)
        return run

    def context(self) -> SubjectContext:
        return SubjectContext.from_recipe(self.root, self.recipe, self.recipe_hash, self.out)

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the cache besides the input files (see :mod:`.signature`)."""
        return {
            "format": RESULT_FORMAT,
            "recipe": self.recipe_hash,
            "classes": list(self.classes),
            "qc_samples": self.options.qc_samples,
        }


@dataclass
class CohortPlan:
    """The subjects to process and what was rejected before any image was read."""

    tasks: list[SubjectTask]
    rejections: list[Rejection]
    n_subjects_seen: int


def plan_cohort(root: Path, labels: pd.DataFrame | None, found: FoundSubjects) -> CohortPlan:
    """Match the subject folders ``found`` under ``root`` with the labels table."""
    folders, rejections = found.folders, list(found.rejections)
    if labels is None:
        wanted: dict[str, tuple[str, ...] | None] = {sid: None for sid in folders}
    else:
        sessions = sessions_by_subject(labels)
        wanted = {sid: (s or None) for sid, s in sessions.items() if sid in folders}
        rejections += _unmatched_subjects(root, labels, sessions, folders)
    tasks = [
        SubjectTask(sid, str(folders[sid]), wanted[sid], found.fingerprint(sid))
        for sid in sorted(wanted)
    ]
    n_seen = len(set(folders) | (set(wanted) if labels is None else set(labels["subject_id"])))
    return CohortPlan(tasks=tasks, rejections=rejections, n_subjects_seen=n_seen)


def _unmatched_subjects(
    root: Path, labels: pd.DataFrame, sessions: Mapping[str, Any], folders: Mapping[str, Path]
) -> list[Rejection]:
    """Labelled subjects without images, and imaged subjects without a label."""
    lines = labels.groupby("subject_id")["line"].min().to_dict()
    missing = [
        Rejection(
            sid,
            "",
            sid,
            "subject",
            f"in the labels table (line {lines[sid]}) but there is no folder or NIfTI "
            "file of that name under data.root",
        )
        for sid in sorted(set(sessions) - set(folders))
    ]
    unlabelled = [
        Rejection(sid, "", relative_path(folders[sid], root), "subject", cache.NO_LABEL_REASON)
        for sid in sorted(set(folders) - set(sessions))
    ]
    return missing + unlabelled


def preprocess_cohort(cfg: DictConfig) -> Path:
    """Preprocess ``data.root`` into ``${paths.cache}/${data.name}`` and return that folder.

    ``cfg`` needs ``paths.cache``, ``data`` (``name``, ``root``, ``labels`` or null for an
    unlabeled cohort, ``classes``), the recipe (``slices``, ``series``, ``normalize``) and
    optionally ``preprocess`` (see :class:`PreprocessOptions`). A shard run returns the folder
    without a complete cache in it.
    """
    started = time.perf_counter()
    run = CohortRun.from_cfg(cfg)
    _check_same_source(run.out, run.root, run.name)
    stored = _complete_provenance(run.out) if run.options.may_reuse_cache else None
    found = FoundSubjects.discover(run.root)
    if stored and SourceSignature.matches(found, run.settings, run.labels_path, stored):
        return _up_to_date(run, stored)
    # Here, not at the top: the answer above needs neither the cache writer nor pandas.
    from pipeline.preprocess.writer import build_manifest, rejected_frame, top_reasons, write_cohort

    labels = read_labels(run.labels_path, list(run.classes)) if run.labels_path else None
    plan = plan_cohort(run.root, labels, found)
    signature = SourceSignature.of(
        found, (t.subject_id for t in plan.tasks), run.settings, run.labels_path
    )
    store = ResultStore(run.out)
    paths = {task.subject_id: store.path(task, run.recipe_hash) for task in plan.tasks}
    timings: dict[str, float] = {"plan_s": time.perf_counter() - started}
    inputs_hash = _inputs_hash(run, plan, labels, paths)
    if stored and stored.get("inputs_hash") == inputs_hash:
        _record_signature(run.out, stored, signature)  # so that the next answer needs no parsing
        return _up_to_date(run, stored)

    tick = time.perf_counter()
    records = _process_missing(run, plan, paths, timings)
    timings["process_s"] = time.perf_counter() - tick
    if run.options.shard is not None:
        _finish_shard(run, records, timings)
        return run.out

    tick = time.perf_counter()
    results = _collect_results(run, plan, paths, records)
    assembly = build_manifest(results, labels)
    rejected = rejected_frame(plan.rejections + assembly.rejections)
    counts = _counts(plan, results, assembly.manifest, rejected, len(records))
    write_cohort(run.out, assembly, rejected, run.context().image_shape, run.options.qc_samples)
    timings["assemble_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    hashes = {"inputs_hash": inputs_hash, SIGNATURE_KEY: signature.as_json()}
    _write_provenance(run, cfg, hashes, counts, timings, records.values())
    store.remove_others(paths.values())
    _log_summary(run.name, run.out, counts, top_reasons(cache.split_unlabelled(rejected)[0]))
    return run.out


def _up_to_date(run: CohortRun, provenance: Mapping[str, Any]) -> Path:
    """Say in the log that the complete cache was built from exactly these inputs; its folder."""
    counts = provenance.get("counts", {})
    log.info(
        "Cohort %r is up to date (nothing changed): %s subject(s) accepted, %s rejected%s. "
        "Cache: %s (preprocess.force=true redoes it)",
        run.name,
        counts.get("subjects_accepted", "?"),
        counts.get("subjects_rejected", "?"),
        _unlabelled_note(counts.get("subjects_unlabelled", 0)),
        run.out,
    )
    return run.out


def _process_missing(
    run: CohortRun, plan: CohortPlan, paths: Mapping[str, Path], timings: dict[str, float]
) -> dict[str, SubjectRecord]:
    """Process this run's subjects (its shard) that have no result yet, or all with ``force``.

    ``timings["load_s"]``: importing the compute path (torch, MONAI) and building the chain.
    """
    mine = select_shard(plan.tasks, run.options.shard)
    todo = [t for t in mine if run.options.force or not paths[t.subject_id].exists()]
    if run.options.merge and todo:
        missing = ", ".join(t.subject_id for t in todo[:20]) + (" ..." if len(todo) > 20 else "")
        raise PreprocessError(
            f"Cannot merge cohort {run.name!r}: {len(todo)} subject(s) have no result under "
            f"{ResultStore(run.out).directory} ({missing}). Run the missing shards "
            "(preprocess.shard=i/n), or run without preprocess.merge to process them here."
        )
    if todo:
        tick = time.perf_counter()
        try:
            load_compute_path(run.recipe)
        except ValueError as exc:
            raise PreprocessError(str(exc)) from exc
        timings["load_s"] = time.perf_counter() - tick
    context = run.context()
    tasks = run_tasks(todo, context, run.options.workers, run.options.progress)
    records = {record.subject_id: record for record in tasks}
    log.info("Processed %d subject(s), reused %d.", len(records), len(mine) - len(records))
    return records


def _finish_shard(
    run: CohortRun, records: Mapping[str, SubjectRecord], timings: Mapping[str, float]
) -> None:
    assert run.options.shard is not None
    write_shard_record(run.out, run.options.shard, records, timings)
    log.info(
        "Shard %d/%d done; run preprocess.merge=true once every shard has finished.",
        *run.options.shard,
    )


def _collect_results(
    run: CohortRun,
    plan: CohortPlan,
    paths: Mapping[str, Path],
    records: dict[str, SubjectRecord],
) -> list[tuple[Path, SubjectRecord]]:
    """Every subject's ``(result file, record)``, in subject order; a result damaged by a
    machine crash is redone here (and added to ``records``)."""
    store = ResultStore(run.out)
    results = []
    for task in plan.tasks:
        path = paths[task.subject_id]
        record = records.get(task.subject_id) or store.read_record(path)
        if record is None:
            record = records[task.subject_id] = next(
                run_tasks([task], run.context(), 1, progress=False)
            )
        results.append((path, record))
    return results


def _write_provenance(
    run: CohortRun,
    cfg: DictConfig,
    hashes: Mapping[str, str],
    counts: Mapping[str, Any],
    timings: Mapping[str, float],
    records: Any,
) -> None:
    provenance = {
        "data_name": run.name,
        "source_root": str(run.root.resolve()),
        "recipe": run.recipe,
        "recipe_hash": run.recipe_hash,
        "classes": list(run.classes),
        **hashes,  # inputs_hash and source_signature: see preprocess_cohort
        "config": _resolved(cfg),
        "versions": package_versions(),
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()} | _worker_stats(records),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(run.out / cache.PROVENANCE, provenance)  # last: it marks the cache complete


def _check_same_source(out: Path, root: Path, name: str) -> None:
    """Refuse to turn the cache of one cohort into the cache of another under the same name.

    A reused ``data.name`` would otherwise silently replace, say, the development cohort's cache
    with a held-out cohort's subjects, and every later stage would read the wrong people.
    """
    recorded = cache.recorded_source(out)
    if recorded is not None and recorded != root.resolve():
        raise PreprocessError(
            f"The cache {out} holds cohort {name!r} preprocessed from {recorded}, not from "
            f"data.root={root.resolve()}. Pass another data.name for this cohort, or delete {out} "
            "if the data really moved."
        )


def _record_signature(
    directory: Path, provenance: Mapping[str, Any], signature: SourceSignature
) -> None:
    """Store ``signature`` in the provenance of a cache found up to date by its parsed inputs
    (a labels table saved again, or a cache made before signatures were stored)."""
    if provenance.get(SIGNATURE_KEY) != signature.as_json():
        updated = dict(provenance) | {SIGNATURE_KEY: signature.as_json()}
        write_json(directory / cache.PROVENANCE, updated)


def _inputs_hash(
    run: CohortRun, plan: CohortPlan, labels: pd.DataFrame | None, paths: Mapping[str, Path]
) -> str:
    """Everything that decides the cache's content; equal hashes mean nothing to redo."""
    return config_hash(
        {
            **run.settings,  # the same hash as before settings existed: same keys and values
            "results": sorted(p.name for p in paths.values()),
            "rejections": sorted(json.dumps(r.as_row(), sort_keys=True) for r in plan.rejections),
            "labels": None if labels is None else labels.to_csv(index=False),
        }
    )


def _complete_provenance(directory: Path) -> dict[str, Any] | None:
    """The provenance of the complete cache in ``directory``, else ``None``."""
    if not cache.is_complete(directory):
        return None
    try:
        return cache.read_provenance(directory)
    except (OSError, ValueError):
        return None


def _counts(
    plan: CohortPlan,
    results: Sequence[tuple[Path, SubjectRecord]],
    manifest: pd.DataFrame,
    rejected: pd.DataFrame,
    n_processed: int,
) -> dict[str, Any]:
    """The ``counts`` of provenance.json. Folders without a label (a cohort that is a subset of
    a shared folder) are counted apart: they are listed in rejected.csv but are not defects."""
    accepted_subjects = set(manifest["subject_id"])
    rejections, unlabelled = cache.split_unlabelled(rejected)
    return {
        "subjects_seen": plan.n_subjects_seen,
        "subjects_accepted": len(accepted_subjects),
        "subjects_rejected": plan.n_subjects_seen - len(accepted_subjects) - len(unlabelled),
        "subjects_unlabelled": len(unlabelled),
        "rows": len(manifest),
        "rejected_rows": len(rejections),
        "rejected_by_level": {k: int(v) for k, v in rejections["level"].value_counts().items()},
        "labels": {k: int(v) for k, v in manifest["label"].value_counts().sort_index().items()},
        "files": sum(r.n_files for _, r in results),
        "non_dicom_skipped": sum(r.n_non_dicom for _, r in results),
        "subjects_processed": n_processed,
        "subjects_reused": len(results) - n_processed,
    }


def _worker_stats(records: Any) -> dict[str, float]:
    """Mean wall and CPU time per processed subject (CPU by step), and the peak worker memory."""
    records = list(records)
    if not records:
        return {}
    n = len(records)
    cpu = {step: sum(r.cpu_s.get(step, 0.0) for r in records) / n for step in STEPS}
    return {
        "subject_mean_s": round(sum(r.seconds for r in records) / n, 4),
        "subject_cpu_ms": round(1000 * sum(cpu.values()), 2),
        **{f"subject_cpu_{step}_ms": round(1000 * value, 2) for step, value in cpu.items()},
        "worker_peak_rss_mb": max(r.peak_rss_mb for r in records),
    }


def _resolved(cfg: DictConfig) -> Any:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable key (e.g. a Hydra runtime value outside Hydra)
        return OmegaConf.to_container(cfg, resolve=False)


def _unlabelled_note(n: int) -> str:
    """``", N folder(s) without a label not used"`` for the summary lines, or nothing."""
    return f", {n} folder(s) without a label not used" if n else ""


def _log_summary(
    name: str, out: Path, counts: Mapping[str, Any], reasons: Sequence[tuple[str, int]]
) -> None:
    log.info(
        "Cohort %r: %d subject(s) accepted (%d rows), %d rejected%s; %d files, %d non-DICOM "
        "skipped.",
        name,
        counts["subjects_accepted"],
        counts["rows"],
        counts["subjects_rejected"],
        _unlabelled_note(counts["subjects_unlabelled"]),
        counts["files"],
        counts["non_dicom_skipped"],
    )
    if counts["labels"]:
        log.info("Classes: %s", ", ".join(f"{k} {v}" for k, v in counts["labels"].items()))
    for reason, n in reasons:
        log.info("  rejected x%d: %s", n, reason)
    log.info("Cache: %s  (rejections: %s)", out, out / cache.REJECTED)

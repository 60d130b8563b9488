"""Cohort orchestration: find subjects, match the labels, process in workers, assemble the cache.

:func:`preprocess_cohort` is the stage's public API (the CLI, ``evaluate`` and ``predict`` call
it). It is incremental at two levels:

- per subject: a subject whose files, sessions and recipe are unchanged reuses its saved result
  (:mod:`pipeline.preprocess.results`) and is not decoded again;
- per cohort: when nothing at all changed (same subjects, results, labels table and options),
  the existing complete cache is returned untouched.

Scale-out: ``preprocess.shard=i/n`` runs one shard of the subjects and stops;
``preprocess.merge=true`` assembles the cache from every shard's results, refusing if any
subject is missing (see :mod:`pipeline.preprocess.shards`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from pipeline import cache
from pipeline.config import config_hash, preprocessing_config, to_container
from pipeline.labels import read_labels, sessions_by_subject
from pipeline.preprocess.discover import relative_path
from pipeline.preprocess.ingest import discover_subjects, list_files, source_fingerprint
from pipeline.preprocess.results import RESULT_FORMAT, ResultStore, SubjectTask
from pipeline.preprocess.shards import parse_shard, select_shard, write_shard_record
from pipeline.preprocess.stack import Rejection
from pipeline.preprocess.subject import init_worker, process_subject, single_threaded
from pipeline.preprocess.writer import build_manifest, rejected_frame, top_reasons, write_cohort
from pipeline.provenance import package_versions
from pipeline.utils.atomic import write_json

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("CN", "MCI", "AD")


class PreprocessError(RuntimeError):
    """The cohort cannot be preprocessed as configured; the message says what to change."""


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


@dataclass
class CohortPlan:
    """The subjects to process and what was rejected before any image was read."""

    tasks: list[SubjectTask]
    rejections: list[Rejection]
    n_subjects_seen: int


def plan_cohort(root: Path, labels: pd.DataFrame | None) -> CohortPlan:
    """Match subject folders with the labels table; fingerprint every subject's files."""
    found, rejections = discover_subjects(root)
    folders = dict(found)
    if labels is None:
        wanted: dict[str, tuple[str, ...] | None] = {sid: None for sid in folders}
    else:
        sessions = sessions_by_subject(labels)
        wanted = {sid: (s or None) for sid, s in sessions.items() if sid in folders}
        lines = labels.groupby("subject_id")["line"].min().to_dict()
        for sid in sorted(set(sessions) - set(folders)):
            rejections.append(
                Rejection(
                    sid,
                    "",
                    sid,
                    "subject",
                    f"in the labels table (line {lines[sid]}) but there is no folder or NIfTI "
                    "file of that name under data.root",
                )
            )
        for sid in sorted(set(folders) - set(sessions)):
            rejections.append(
                Rejection(
                    sid,
                    "",
                    relative_path(folders[sid], root),
                    "subject",
                    "images found but the subject has no row in the labels table (data.labels)",
                )
            )
    tasks = [
        SubjectTask(
            sid,
            str(folders[sid]),
            wanted[sid],
            source_fingerprint(list_files(folders[sid]), root),
        )
        for sid in sorted(wanted)
    ]
    n_seen = len(set(folders) | (set(wanted) if labels is None else set(labels["subject_id"])))
    return CohortPlan(tasks=tasks, rejections=rejections, n_subjects_seen=n_seen)


def run_tasks(
    tasks: Sequence[SubjectTask],
    root: Path,
    recipe: Mapping[str, Any],
    recipe_hash: str,
    cohort_dir: Path,
    workers: int,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Process ``tasks`` (in worker processes when ``workers > 1``), yielding records as done."""
    args = (str(root), dict(recipe), recipe_hash, str(cohort_dir))
    bar = tqdm(total=len(tasks), desc="preprocess", unit="subject", disable=not progress or None)
    with bar:
        if workers <= 1 or len(tasks) <= 1:
            with single_threaded():
                for task in tasks:
                    yield process_subject(task, *args)
                    bar.update()
            return
        pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=init_worker)
        done = 0
        try:
            futures = [pool.submit(process_subject, task, *args) for task in tasks]
            for future in as_completed(futures):
                yield future.result()
                done += 1
                bar.update()
        except BrokenProcessPool as exc:
            # A worker was killed (out of memory, or a crash inside a decoder): the subjects
            # already finished are saved, so a rerun picks up where this one stopped.
            raise PreprocessError(
                f"A worker process died with {len(tasks) - done} subject(s) unfinished "
                "(out of memory, or a crash while decoding a file). Finished subjects are kept; "
                "rerun to resume, with fewer preprocess.workers if memory is short."
            ) from exc
        finally:  # on Ctrl-C or an error, do not wait for the queued subjects
            pool.shutdown(wait=True, cancel_futures=True)


def preprocess_cohort(cfg: DictConfig) -> Path:
    """Preprocess ``data.root`` into ``${paths.cache}/${data.name}`` and return that folder.

    ``cfg`` needs ``paths.cache``, ``data`` (``name``, ``root``, ``labels`` or null for an
    unlabeled cohort, ``classes``), the recipe (``slices``, ``series``, ``normalize``) and
    optionally ``preprocess`` (see :class:`PreprocessOptions`). A shard run returns the folder
    without a complete cache in it.
    """
    started = time.perf_counter()
    options = PreprocessOptions.from_cfg(to_container(cfg.get("preprocess")))
    recipe = preprocessing_config(cfg)
    recipe_hash = config_hash(recipe)
    data = cfg.data
    root = Path(str(data.root))
    name = str(data.name)
    classes = [str(c) for c in (data.get("classes") or DEFAULT_CLASSES)]
    out = cache.cohort_dir(cfg.paths.cache, name)
    if not root.is_dir():
        raise PreprocessError(f"data.root={root} is not a folder (cohort {name!r}).")
    _check_same_source(out, root, name)
    labels = read_labels(data.labels, classes) if data.get("labels") else None

    plan = plan_cohort(root, labels)
    store = ResultStore(out)
    paths = {task.subject_id: store.path(task, recipe_hash) for task in plan.tasks}
    timings: dict[str, float] = {"plan_s": time.perf_counter() - started}

    inputs_hash = _inputs_hash(recipe_hash, plan, labels, classes, options, paths)
    current = _current_provenance(out, inputs_hash)
    if current is not None and not (options.force or options.shard or options.merge):
        counts = current.get("counts", {})
        log.info(
            "Cohort %r is up to date (nothing changed): %s subject(s) accepted, %s rejected. "
            "Cache: %s (preprocess.force=true redoes it)",
            name,
            counts.get("subjects_accepted", "?"),
            counts.get("subjects_rejected", "?"),
            out,
        )
        return out

    mine = select_shard(plan.tasks, options.shard)
    todo = [t for t in mine if options.force or not paths[t.subject_id].exists()]
    if options.merge and todo:
        missing = ", ".join(t.subject_id for t in todo[:20]) + (" ..." if len(todo) > 20 else "")
        raise PreprocessError(
            f"Cannot merge cohort {name!r}: {len(todo)} subject(s) have no result under "
            f"{store.directory} ({missing}). Run the missing shards (preprocess.shard=i/n), or "
            "run without preprocess.merge to process them here."
        )
    tick = time.perf_counter()
    records = {
        r["subject_id"]: r
        for r in run_tasks(todo, root, recipe, recipe_hash, out, options.workers, options.progress)
    }
    timings["process_s"] = time.perf_counter() - tick
    log.info("Processed %d subject(s), reused %d.", len(records), len(mine) - len(records))
    if options.shard is not None:
        write_shard_record(out, options.shard, records, timings)
        log.info(
            "Shard %d/%d done; run preprocess.merge=true once every shard has finished.",
            *options.shard,
        )
        return out

    tick = time.perf_counter()
    results = []
    for task in plan.tasks:
        path = paths[task.subject_id]
        record = records.get(task.subject_id) or store.read_record(path)
        if record is None:  # damaged by a machine crash: redo it here
            record = records[task.subject_id] = next(
                run_tasks([task], root, recipe, recipe_hash, out, 1, progress=False)
            )
        results.append((path, record))
    assembly = build_manifest(results, labels)
    rejected = rejected_frame(plan.rejections + assembly.rejections)
    image_shape = (int(recipe["slices"]["count"]), *(2 * [int(recipe["normalize"]["size"])]))
    counts = _counts(plan, results, assembly.manifest, rejected, len(records))
    write_cohort(out, assembly, rejected, image_shape, options.qc_samples)
    timings["assemble_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    provenance = {
        "data_name": name,
        "source_root": str(root.resolve()),
        "preprocessing": recipe,
        "preprocessing_hash": recipe_hash,
        "classes": classes,
        "inputs_hash": inputs_hash,
        "config": _resolved(cfg),
        "versions": package_versions(),
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()} | _worker_stats(records.values()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(out / cache.PROVENANCE, provenance)  # last: it marks the cache complete
    store.remove_others(paths.values())
    _log_summary(name, out, counts, rejected)
    return out


def _check_same_source(out: Path, root: Path, name: str) -> None:
    """Refuse to turn the cache of one cohort into the cache of another under the same name.

    A reused ``data.name`` would otherwise silently replace, say, the development cohort's cache
    with a held-out cohort's subjects, and every later stage would read the wrong people.
    """
    provenance_path = out / cache.PROVENANCE
    if not provenance_path.exists():
        return
    recorded = json.loads(provenance_path.read_text(encoding="utf-8")).get("source_root")
    if recorded and Path(recorded) != root.resolve():
        raise PreprocessError(
            f"The cache {out} holds cohort {name!r} preprocessed from {recorded}, not from "
            f"data.root={root.resolve()}. Pass another data.name for this cohort, or delete {out} "
            "if the data really moved."
        )


def _inputs_hash(
    recipe_hash: str,
    plan: CohortPlan,
    labels: pd.DataFrame | None,
    classes: Sequence[str],
    options: PreprocessOptions,
    paths: Mapping[str, Path],
) -> str:
    """Everything that decides the cache's content; equal hashes mean nothing to redo."""
    return config_hash(
        {
            "format": RESULT_FORMAT,
            "recipe": recipe_hash,
            "results": sorted(p.name for p in paths.values()),
            "rejections": sorted(json.dumps(r.as_row(), sort_keys=True) for r in plan.rejections),
            "labels": None if labels is None else labels.to_csv(index=False),
            "classes": list(classes),
            "qc_samples": options.qc_samples,
        }
    )


def _current_provenance(directory: Path, inputs_hash: str) -> dict[str, Any] | None:
    """The provenance of a complete cache built from exactly these inputs, else ``None``."""
    if not cache.is_complete(directory):
        return None
    try:
        provenance = json.loads((directory / cache.PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return provenance if provenance.get("inputs_hash") == inputs_hash else None


def _counts(
    plan: CohortPlan,
    results: Sequence[tuple[Path, Mapping[str, Any]]],
    manifest: pd.DataFrame,
    rejected: pd.DataFrame,
    n_processed: int,
) -> dict[str, Any]:
    accepted_subjects = set(manifest["subject_id"])
    return {
        "subjects_seen": plan.n_subjects_seen,
        "subjects_accepted": len(accepted_subjects),
        "subjects_rejected": plan.n_subjects_seen - len(accepted_subjects),
        "rows": len(manifest),
        "rejected_rows": len(rejected),
        "rejected_by_level": {k: int(v) for k, v in rejected["level"].value_counts().items()},
        "labels": {k: int(v) for k, v in manifest["label"].value_counts().sort_index().items()},
        "files": sum(int(r["n_files"]) for _, r in results),
        "non_dicom_skipped": sum(int(r["n_non_dicom"]) for _, r in results),
        "subjects_processed": n_processed,
        "subjects_reused": len(results) - n_processed,
    }


def _worker_stats(records: Any) -> dict[str, float]:
    records = list(records)
    if not records:
        return {}
    seconds = [float(r["seconds"]) for r in records]
    return {
        "subject_mean_s": round(sum(seconds) / len(seconds), 4),
        "worker_peak_rss_mb": max(float(r["peak_rss_mb"]) for r in records),
    }


def _resolved(cfg: DictConfig) -> Any:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable key (e.g. a Hydra runtime value outside Hydra)
        return OmegaConf.to_container(cfg, resolve=False)


def _log_summary(name: str, out: Path, counts: Mapping[str, Any], rejected: pd.DataFrame) -> None:
    log.info(
        "Cohort %r: %d subject(s) accepted (%d rows), %d rejected; %d files, %d non-DICOM skipped.",
        name,
        counts["subjects_accepted"],
        counts["rows"],
        counts["subjects_rejected"],
        counts["files"],
        counts["non_dicom_skipped"],
    )
    if counts["labels"]:
        log.info("Classes: %s", ", ".join(f"{k} {v}" for k, v in counts["labels"].items()))
    for reason, n in top_reasons(rejected):
        log.info("  rejected x%d: %s", n, reason)
    log.info("Cache: %s  (rejections: %s)", out, out / cache.REJECTED)

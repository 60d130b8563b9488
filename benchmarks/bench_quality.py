"""Quality benchmark: default recipe, candidate recipes and plain baselines on one subject split.

    .venv/bin/python benchmarks/bench_quality.py                       # both splits, seeds 42 1 2
    .venv/bin/python benchmarks/bench_quality.py --split heldout --seeds 42 \\
        --methods default age_lr pca_lr --extra "trainer.max_epochs=3"   # a quick smoke run
    .venv/bin/python benchmarks/bench_quality.py --candidate ordinal="head=corn" --methods ordinal
    .venv/bin/python benchmarks/bench_quality.py --out runs/bench_quality/<time>   # resume

For every split, seed and method it trains on the training subjects and scores the evaluation
subjects: balanced accuracy, the paired subject-bootstrap 95% interval of its difference with
PCA + logistic regression (same subjects, same resamples), per-class sensitivity, macro ROC AUC
and the training wall time; then a summary over seeds. The tables are printed as markdown and
written with a JSON of every number to ``runs/bench_quality/<time>/`` (``--out``).

Splits (``--split``):
- ``heldout``: train on the ``demo_dev`` cache, evaluate on ``demo_heldout`` (another site).
- ``within``: one stratified subject-level split of ``demo_dev`` (``--test-fraction``, drawn from
  the seed): a training and an evaluation subset cache are written under ``<out>/caches/``.

Methods (``--methods`` picks some by name; PCA + LR always runs, it is the reference):
- ``default``: ``python -m pipeline.train`` with nothing but data, paths and seed.
- candidates: a name and Hydra overrides of ``pipeline.train`` (:data:`CANDIDATES`, plus
  ``--candidate NAME="override1 override2"``): ``previous`` (the default before issue 10) and
  today's default with one part changed.
- rule candidates (:data:`RULE_CANDIDATES`): the default's own models with another decision
  rule (``argmax_rule``), so the rule's contribution is measured on identical weights.
- ``plain_cnn``: the default SimpleCNN at 64 px, class-weighted loss, one-cycle, 40 epochs,
  shifts only, trained on every training subject with no validation and kept at its last epoch.
  ``pipeline.train`` always holds out validation subjects, so this one is a Lightning loop here;
  it still writes a ``best.pt`` (argmax rule).
- ``age_lr``: logistic regression on age (the manifest's ``age`` column, from the labels table).
- ``pca_lr``: standardised pixels of the three slices -> PCA (50) -> logistic regression.

Trained methods are scored through the pipeline's apply path (:func:`pipeline.apply.
apply_checkpoint`: checkpoint -> probabilities -> the checkpoint's stored decision rule), as
evaluate does. ``--extra`` overrides are appended to every trained method (the quick runs above).
A method whose ``checkpoints/best.pt`` exists under ``--out`` is not trained again, and an
interrupted ``pipeline.train`` run is continued with ``train.resume=true``: rerun with the same
``--out`` to resume. The baselines take seconds and are always refitted.

Caches are never assumed: each method's recipe (its ``slices``/``series``/``normalize`` after
its overrides) must have been preprocessed, in ``${paths.cache}/<cohort>`` or its recipe-named
sibling ``<cohort>__pp-<hash>``. When one is missing or stale the preprocess command is printed
and that method is skipped (or, without the default recipe's caches, the benchmark stops).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.cache import (
    IMAGES,
    MANIFEST,
    PROVENANCE,
    PreprocessedCohort,
    cohort_dir,
    is_complete,
    load_cohort,
)
from pipeline.config import RECIPE_KEYS, compose, recipe_hash, to_container
from pipeline.utils.atomic import atomic_path, write_csv, write_json, write_text
from pipeline.utils.jsonable import write_strict_json

#: Candidate recipes: a name and the ``pipeline.train`` overrides that make it.
#: ``previous`` is the default before issue 10 (128 px, one softmax model, best epoch by early
#: stopping, argmax); each other candidate changes one part of today's default (``epochs40``:
#: the default of the first issue-10 recipe, 40 epochs instead of 80; ``wide``: twice the
#: channels in every block).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "previous": (
        "normalize.size=128",
        "head=softmax",
        "split.folds=1",
        "callbacks=early_stopping",
        "decision=argmax",
        "trainer.max_epochs=60",
    ),
    "epochs40": ("trainer.max_epochs=40",),
    "wide": ("model.net.channels=[32,64,128,256]",),
    "softmax_head": ("head=softmax",),
    "corn_head": ("head=corn",),
    "single_model": ("split.folds=1",),
    "early_stopping": ("callbacks=early_stopping",),
    "balanced_sampler": ("sampler=balanced", "model.class_weight=null"),
}

#: Candidates that reuse the default's trained models with another decision rule (no training).
RULE_CANDIDATES: dict[str, str] = {"argmax_rule": "argmax"}

#: The plain small CNN of issue 10: config overrides composed here, trained by :func:`plain_cnn`.
#: Shifts only: the affine transform with no rotation or zoom, on every sample.
PLAIN_CNN: tuple[str, ...] = (
    "normalize.size=64",
    "model=simple_cnn",
    "model.class_weight=balanced",
    "scheduler=onecycle",
    "sampler=shuffle",
    "trainer.max_epochs=40",
    "augment=none",
    "+augment.transforms.affine={_target_:pipeline.train.augment.RandAffineBatch,"
    "prob:1.0,rotate_deg:0.0,scale_frac:0.0,translate_frac:0.05}",
)

BASELINE = "pca_lr"
BASELINES = ("age_lr", "pca_lr")
SPLITS = ("heldout", "within")
#: The cohorts (conf/data groups) each split trains and evaluates on.
TRAIN_DATA, HELDOUT_DATA = "demo_dev", "demo_heldout"
TRAINED = ("train", "plain_cnn")


@dataclass(frozen=True)
class Method:
    """One row of the benchmark. ``kind``: ``train`` (a ``pipeline.train`` subprocess),
    ``plain_cnn`` (the loop here) or a baseline name; ``overrides`` configure the trained kinds."""

    name: str
    kind: str
    overrides: tuple[str, ...] = ()


def parse_candidate(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME="override1 override2"`` -> ``(NAME, (override1, override2))``."""
    name, sep, overrides = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f'--candidate wants NAME="overrides", got {text!r}')
    return name.strip(), tuple(shlex.split(overrides))


def methods(candidates: dict[str, tuple[str, ...]], selected: Sequence[str] | None) -> list[Method]:
    """Every known method, or the ``selected`` ones (plus the PCA + LR reference)."""
    known = [
        Method("default", "train"),
        *(Method(name, "train", tuple(o)) for name, o in candidates.items()),
        *(Method(name, "rule", (f"decision={rule}",)) for name, rule in RULE_CANDIDATES.items()),
        Method("plain_cnn", "plain_cnn", PLAIN_CNN),
        *(Method(name, name) for name in BASELINES),
    ]
    if not selected:
        return known
    by_name = {m.name: m for m in known}
    unknown = sorted(set(selected) - set(by_name))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {sorted(by_name)}")
    wanted = set(selected) | {BASELINE}
    if any(by_name[name].kind == "rule" for name in selected):
        wanted.add("default")  # a rule candidate re-decides the default's models
    return [m for m in known if m.name in wanted]


# --- caches ---------------------------------------------------------------------------------


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def recipe_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that change the cached pixels (what a preprocess command must repeat)."""
    return [o for o in overrides if _key(o).split(".", 1)[0] in RECIPE_KEYS]


def sibling_name(name: str, recipe_hash: str) -> str:
    """Where a cohort preprocessed with a non-default recipe lives (evaluate's own convention)."""
    from pipeline.apply.cohort import recipe_cache_name

    return recipe_cache_name(name, recipe_hash)


def cache_hash(directory: Path) -> str | None:
    if not is_complete(directory):
        return None
    return json.loads((directory / PROVENANCE).read_text(encoding="utf-8"))["recipe_hash"]


@dataclass(frozen=True)
class Recipe:
    """A preprocessing recipe and, per cohort, the cache name that holds it (``None``: none)."""

    hash: str
    overrides: tuple[str, ...]
    caches: dict[str, str | None]

    def missing_commands(self, default_hash: str) -> list[str]:
        """The preprocess commands that build this recipe's missing caches."""
        commands = []
        for data, name in self.caches.items():
            if name is None:
                target = data if self.hash == default_hash else sibling_name(data, self.hash)
                parts = ["python -m pipeline.preprocess", f"data={data}", f"data.name={target}"]
                commands.append(" ".join([*parts, *self.overrides]))
        return commands


def find_recipe(cache_root: Path, overrides: Sequence[str], cohorts: Sequence[str]) -> Recipe:
    """The recipe ``pipeline.train`` would use with ``overrides``, and its caches."""
    recipe_only = recipe_overrides(overrides)
    h = recipe_hash(compose("train", recipe_only))
    caches: dict[str, str | None] = {}
    for data in cohorts:
        names = (data, sibling_name(data, h))
        caches[data] = next((n for n in names if cache_hash(cohort_dir(cache_root, n)) == h), None)
    return Recipe(h, tuple(recipe_only), caches)


def write_subset_cache(
    source: PreprocessedCohort, subjects: Sequence[str], directory: Path, note: dict[str, Any]
) -> PreprocessedCohort:
    """A cache of ``source`` restricted to ``subjects`` (all their sessions), reused if it exists.

    The layout and crash contract of :mod:`pipeline.cache`: the provenance file goes first and
    comes back last, carrying the source's recipe and hash (the pixels are the same) and a
    ``subset_of`` note. The rejection table and QC montage stay with the source.
    """
    note = {"source": str(source.directory), **note}
    if is_complete(directory):
        existing = json.loads((directory / PROVENANCE).read_text(encoding="utf-8"))
        if existing.get("subset_of") == note:
            return load_cohort(directory, expected_hash=source.recipe_hash)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / PROVENANCE).unlink(missing_ok=True)
    rows = np.flatnonzero(source.manifest["subject_id"].isin(set(subjects)).to_numpy())
    with atomic_path(directory / IMAGES, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(source.images[rows]))
    manifest = source.manifest.iloc[rows].copy()
    manifest["row"] = np.arange(len(manifest))
    write_csv(directory / MANIFEST, manifest)
    provenance = dict(source.provenance)
    provenance.update(
        data_name=directory.name,
        counts={"rows": len(manifest), "labels": manifest["label"].value_counts().to_dict()},
        subset_of=note,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_json(directory / PROVENANCE, provenance)
    return load_cohort(directory, expected_hash=source.recipe_hash)


# --- one evaluation setting -------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One (split, seed): where each recipe's training cohort is, and what to evaluate on.

    ``train`` and ``test`` give, per recipe hash, ``(paths.cache, data group, data.name)``.
    """

    split: str
    seed: int
    folder: Path
    train: dict[str, tuple[Path, str, str]]
    test: dict[str, tuple[Path, str, str]]


def heldout_setting(cache_root: Path, seed: int, out: Path, recipes: list[Recipe]) -> Setting:
    train = {r.hash: (cache_root, TRAIN_DATA, r.caches[TRAIN_DATA]) for r in recipes}
    test = {r.hash: (cache_root, HELDOUT_DATA, r.caches[HELDOUT_DATA]) for r in recipes}
    return Setting("heldout", seed, out / "heldout" / f"seed{seed}", train, test)  # type: ignore[arg-type]


def within_setting(
    cache_root: Path, seed: int, out: Path, recipes: list[Recipe], test_fraction: float
) -> Setting:
    """Subset caches of every recipe for one stratified subject split of ``demo_dev``.

    The split is drawn once, on the default recipe's cache (the first recipe), so every recipe
    trains and is scored on the same subjects.
    """
    from pipeline.train.splits import make_split, subject_labels

    classes = [str(c) for c in compose("train").data.classes]
    sources = {
        r.hash: load_cohort(cohort_dir(cache_root, str(r.caches[TRAIN_DATA])), r.hash)
        for r in recipes
    }
    manifest = sources[recipes[0].hash].manifest
    labels = manifest["label"].map(classes.index).to_numpy()
    per_subject = subject_labels(manifest["subject_id"].astype(str), labels)
    split = make_split(per_subject, classes, val_fraction=test_fraction, seed=seed)
    roles = {
        role: split.loc[split["role"] == role, "subject_id"].tolist() for role in ("train", "val")
    }
    caches = out / "caches"
    train, test = {}, {}
    for h, source in sources.items():
        for role, target in (("train", train), ("val", test)):
            part = "train" if role == "train" else "test"
            name = f"{source.directory.name}__within{seed}_{part}"
            note = {"split_seed": seed, "test_fraction": test_fraction, "part": part}
            write_subset_cache(source, roles[role], cohort_dir(caches, name), note)
            target[h] = (caches, TRAIN_DATA, name)
    return Setting("within", seed, out / "within" / f"seed{seed}", train, test)


# --- methods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """A method's decisions on the setting's evaluation rows (in the reference cohort's order)."""

    probs: np.ndarray
    predicted: np.ndarray
    seconds: float
    source: str = ""


def _has_training_state(run_dir: Path) -> bool:
    places = [run_dir / "checkpoints", *run_dir.glob("fold_*/checkpoints")]
    return any(p.is_dir() and any(p.iterdir()) for p in places)


def _saved_seconds(run_dir: Path) -> float:
    path = run_dir / "bench_seconds.json"
    return float(json.loads(path.read_text())["seconds"]) if path.is_file() else float("nan")


def with_rule(default_run: Path, run_dir: Path, method: Method) -> Path:
    """The default run's best.pt with the decision rule of ``method`` (``decision=<name>``), as
    training would have stored it (a rule without parameters needs no fitting)."""
    import dataclasses

    from hydra.utils import instantiate

    from pipeline.checkpoint import load_checkpoint, save_checkpoint

    rule_name = method.overrides[0].partition("=")[2]
    rule = instantiate(compose("train", [f"decision={rule_name}"]).decision)
    ckpt = load_checkpoint(default_run / "checkpoints" / "best.pt")
    best = run_dir / "checkpoints" / "best.pt"
    best.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(best, dataclasses.replace(ckpt, decision=rule))


def run_pipeline_train(
    method: Method, setting: Setting, recipe: Recipe, extra: Sequence[str], env: dict[str, str]
) -> Path:
    """``python -m pipeline.train`` for ``method`` (skipped when its best.pt exists)."""
    run_dir = setting.folder / method.name
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        print(f"  {method.name}: reusing {best}", flush=True)
        return best
    cache_root, data, name = setting.train[recipe.hash]
    command = [
        sys.executable,
        "-m",
        "pipeline.train",
        f"data={data}",
        f"data.name={name}",
        f"paths.cache={cache_root}",
        f"seed={setting.seed}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *method.overrides,
        *extra,
    ]
    if _has_training_state(run_dir):
        command.append("train.resume=true")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"  {method.name}: {shlex.join(command[1:])}", flush=True)
    started = time.perf_counter()
    with open(run_dir / "console.log", "a", encoding="utf-8") as console:
        done = subprocess.run(command, stdout=console, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (run_dir / "console.log").read_text(encoding="utf-8").splitlines()[-15:]
        raise RuntimeError(f"{method.name} failed ({done.returncode}):\n" + "\n".join(tail))
    write_json(run_dir / "bench_seconds.json", {"seconds": seconds})
    return best


def plain_cnn(method: Method, setting: Setting, recipe: Recipe, extra: Sequence[str]) -> Path:
    """The plain CNN: every training subject, no validation, the last epoch, saved as best.pt."""
    import logging
    import warnings

    import lightning as L
    import torch
    from hydra.utils import instantiate

    from pipeline.checkpoint import Checkpoint, FoldEntry, build_model, save_checkpoint
    from pipeline.decision import ArgmaxRule
    from pipeline.models import input_channels, sized_model_config
    from pipeline.provenance import package_versions
    from pipeline.train.fold import class_weight

    run_dir = setting.folder / method.name
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        print(f"  {method.name}: reusing {best}", flush=True)
        return best
    cache_root, _, name = setting.train[recipe.hash]
    cfg = compose("train", [f"data.name={name}", f"seed={setting.seed}", *method.overrides, *extra])
    cohort = load_cohort(cohort_dir(cache_root, name), expected_hash=recipe.hash)
    classes = [str(c) for c in cfg.data.classes]
    labels = cohort.manifest["label"].map(classes.index).to_numpy()
    rows = np.arange(len(cohort))
    network = sized_model_config(
        to_container(cfg.model.net),
        input_channels(str(cfg.data.slice_mode), int(cohort.images.shape[1])),
        len(classes),
    )
    epochs = int(cfg.trainer.max_epochs)
    # Lightning's start-up banners and torch's LeafSpec deprecation (as pipeline.train filters).
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    print(f"  {method.name}: {epochs} epochs on {len(rows)} rows (in-process)", flush=True)
    started = time.perf_counter()
    L.seed_everything(setting.seed, workers=True, verbose=False)
    weights = class_weight("balanced", labels, classes)  # as pipeline.train weighs its loss
    module = instantiate(
        cfg.model,
        net=build_model(network),
        classes=classes,
        slice_mode=str(cfg.data.slice_mode),
        class_weight=weights,
        augment=instantiate(cfg.augment, _convert_="all"),
        seed=setting.seed,
        _convert_="all",
    )
    datamodule = instantiate(
        cfg.datamodule,
        images_path=cohort.directory / IMAGES,
        labels=labels,
        train_rows=rows,
        val_rows=rows[:1],  # the loader wants one; limit_val_batches=0 never runs it
        num_workers=0,
        seed=setting.seed,
        _convert_="all",
    )
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=0,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        deterministic=not torch.cuda.is_available(),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    subjects = tuple(sorted(cohort.manifest["subject_id"].astype(str).unique()))
    entry = FoldEntry(
        state_dict={k: v.detach().cpu() for k, v in module.net.state_dict().items()},
        train_subjects=subjects,
        val_subjects=(),
        best_epoch=epochs - 1,
        epochs_trained=epochs,
    )
    checkpoint = Checkpoint(
        classes=tuple(classes),
        network=network,
        slice_mode=str(cfg.data.slice_mode),
        recipe=cohort.recipe,
        recipe_hash=cohort.recipe_hash,
        folds=(entry,),
        decision=ArgmaxRule(),
        train_config=to_container(cfg),
        data_name=name,
        versions=package_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_checkpoint(best, checkpoint)
    write_json(run_dir / "bench_seconds.json", {"seconds": time.perf_counter() - started})
    return best


def apply_to_test(best: Path, setting: Setting, recipe: Recipe, keys: pd.DataFrame) -> Scored:
    """The checkpoint on the setting's evaluation cohort through the pipeline's apply path."""
    from pipeline.apply import apply_checkpoint, check_overlap

    cache_root, data, name = setting.test[recipe.hash]
    cfg = compose(
        "evaluate",
        [f"checkpoint={best}", f"paths.cache={cache_root}", f"data={data}", f"data.name={name}"],
    )

    def admit(ckpt: Any, cohort: PreprocessedCohort) -> None:
        check_overlap(cohort.manifest["subject_id"], ckpt)  # raises on any leaked subject

    applied = apply_checkpoint(cfg, log=lambda _: None, admit=admit)
    table = applied.table.set_index(["subject_id", "session_id"])
    index = pd.MultiIndex.from_frame(keys[["subject_id", "session_id"]])
    missing = index.difference(table.index)
    if len(missing):
        raise RuntimeError(
            f"{best}: {len(missing)} evaluation row(s) not scored: {list(missing)[:5]}"
        )
    table = table.loc[index]
    classes = applied.classes
    probs = table[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    predicted = table["predicted"].map(classes.index).to_numpy()
    return Scored(probs, predicted, _saved_seconds(best.parent.parent), str(best))


def fit_baseline(
    kind: str, seed: int, train: PreprocessedCohort, test: PreprocessedCohort, classes: list[str]
) -> Scored:
    """Age-only or PCA + logistic regression, fitted on every training row (class-balanced)."""
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = train.manifest["label"].map(classes.index).to_numpy()

    def features(cohort: PreprocessedCohort) -> np.ndarray:
        if kind == "age_lr":
            return pd.to_numeric(cohort.manifest["age"], errors="coerce").to_numpy()[:, None]
        return np.asarray(cohort.images, dtype=np.float32).reshape(len(cohort), -1)

    steps: list[Any] = [SimpleImputer(strategy="median"), StandardScaler()]
    if kind == "pca_lr":
        steps = [StandardScaler(), PCA(n_components=min(50, len(y) - 1), random_state=seed)]
    model = make_pipeline(*steps, LogisticRegression(max_iter=5000, class_weight="balanced"))
    started = time.perf_counter()
    model.fit(features(train), y)
    seconds = time.perf_counter() - started
    probs = model.predict_proba(features(test))
    return Scored(probs, probs.argmax(axis=1), seconds, kind)


# --- scores and tables ------------------------------------------------------------------------


def score(
    scored: Scored,
    reference: Scored,
    y: np.ndarray,
    subjects: Sequence[str],
    classes: list[str],
    resamples: int,
) -> dict[str, Any]:
    """Balanced accuracy, its paired interval against the reference, sensitivities, macro AUC."""
    from pipeline.evaluate.bootstrap import paired_difference_interval
    from pipeline.evaluate.metrics import compute_metrics

    metrics = compute_metrics(y, scored.probs, classes, y_pred=scored.predicted)
    base = compute_metrics(y, reference.probs, classes, y_pred=reference.predicted)
    low, high = paired_difference_interval(
        subjects, y, scored.predicted, reference.predicted, len(classes), resamples
    )
    return {
        "balanced_accuracy": metrics["balanced_accuracy"],
        "difference_vs_pca_lr": metrics["balanced_accuracy"] - base["balanced_accuracy"],
        "difference_interval": [low, high],
        "sensitivity": {c: metrics["per_class"][c]["sensitivity"] for c in classes},
        "auc_macro": metrics["auc_macro"],
        "confusion_matrix": metrics["confusion_matrix"],
        "train_seconds": scored.seconds,
        "n_eval": len(y),
        "source": scored.source,
    }


def _num(value: float, fmt: str = ".3f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, fmt)


def runs_table(results: list[dict[str, Any]], classes: list[str]) -> str:
    head = ["split", "seed", "method", "n", "bal acc", "vs PCA+LR [95% CI]"]
    head += [f"sens {c}" for c in classes] + ["macro AUC", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        low, high = r["difference_interval"]
        diff = (
            "(reference)"
            if r["method"] == BASELINE
            else f"{r['difference_vs_pca_lr']:+.3f} [{_num(low, '+.3f')}, {_num(high, '+.3f')}]"
        )
        cells = [r["split"], str(r["seed"]), r["method"], str(r["n_eval"])]
        cells += [_num(r["balanced_accuracy"]), diff]
        cells += [_num(r["sensitivity"][c], ".2f") for c in classes]
        cells += [_num(r["auc_macro"]), _num(r["train_seconds"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(results: list[dict[str, Any]], focus: str) -> list[dict[str, Any]]:
    """Per split and method over seeds: mean balanced accuracy, lowest ``focus`` sensitivity,
    and how many seeds' intervals against PCA + LR lie above 0."""
    rows = []
    for (split, method), group in pd.DataFrame(results).groupby(["split", "method"], sort=False):
        lows = [interval[0] for interval in group["difference_interval"]]
        rows.append(
            {
                "split": split,
                "method": method,
                "seeds": len(group),
                "mean_balanced_accuracy": float(group["balanced_accuracy"].mean()),
                f"min_{focus}_sensitivity": float(min(s[focus] for s in group["sensitivity"])),
                "seeds_above_pca_lr": None
                if method == BASELINE
                else int(sum(low > 0 for low in lows if np.isfinite(low))),
            }
        )
    return rows


def summary_table(summary: list[dict[str, Any]], focus: str) -> str:
    head = ["split", "method", "seeds", "mean bal acc", f"min {focus} sens", "seeds CI > PCA+LR"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        above = s["seeds_above_pca_lr"]
        cells = [s["split"], s["method"], str(s["seeds"]), _num(s["mean_balanced_accuracy"])]
        cells += [_num(s[f"min_{focus}_sensitivity"], ".2f")]
        cells += ["(reference)" if above is None else f"{above} of {s['seeds']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Benchmark:
    """Everything one invocation shares."""

    args: argparse.Namespace
    out: Path
    classes: list[str]
    env: dict[str, str]
    recipes: dict[str, Recipe] = field(default_factory=dict)  # method name -> recipe
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def default(self) -> Recipe:
        return self.recipes[BASELINE]


def check_caches(bench: Benchmark, chosen: list[Method]) -> list[Method]:
    """Each method's recipe and caches; methods without them are skipped with the command."""
    cache_root = Path(bench.args.cache)
    cohorts = [TRAIN_DATA] + ([HELDOUT_DATA] if "heldout" in bench.args.split else [])
    default_hash = find_recipe(cache_root, (), cohorts).hash
    runnable = []
    for method in chosen:
        extra = bench.args.extra if method.kind in TRAINED else ()
        recipe = find_recipe(cache_root, [*method.overrides, *extra], cohorts)
        commands = recipe.missing_commands(default_hash)
        if commands:
            bench.skipped[method.name] = "no cache; build it with: " + " && ".join(commands)
            print(f"{method.name}: skipped, no cache of its recipe {recipe.hash}. Build it with:")
            print("\n".join(f"  {c}" for c in commands))
            if method.name == BASELINE:
                raise SystemExit(2)  # the reference every interval needs
            continue
        bench.recipes[method.name] = recipe
        runnable.append(method)
    return runnable


def evaluation_reference(setting: Setting, recipe: Recipe) -> PreprocessedCohort:
    cache_root, _, name = setting.test[recipe.hash]
    return load_cohort(cohort_dir(cache_root, name), expected_hash=recipe.hash)


def run_setting(bench: Benchmark, setting: Setting, chosen: list[Method]) -> list[dict[str, Any]]:
    """Train (or reuse) and score every method on one (split, seed)."""
    print(f"\n[{setting.split}, seed {setting.seed}]", flush=True)
    default = bench.default
    train_root, _, train_name = setting.train[default.hash]
    train = load_cohort(cohort_dir(train_root, train_name), expected_hash=default.hash)
    test = evaluation_reference(setting, default)
    y = test.manifest["label"].map(bench.classes.index).to_numpy()
    subjects = test.manifest["subject_id"].astype(str).tolist()
    scored: dict[str, Scored] = {}
    for method in chosen:
        recipe = bench.recipes[method.name]
        if method.kind in BASELINES:
            scored[method.name] = fit_baseline(
                method.kind, setting.seed, train, test, bench.classes
            )
            continue
        if method.kind == "train":
            best = run_pipeline_train(method, setting, recipe, bench.args.extra, bench.env)
        elif method.kind == "rule":
            best = with_rule(setting.folder / "default", setting.folder / method.name, method)
        else:
            best = plain_cnn(method, setting, recipe, bench.args.extra)
        scored[method.name] = apply_to_test(best, setting, recipe, test.manifest)
    reference = scored[BASELINE]
    results = []
    for name, s in scored.items():
        r = score(s, reference, y, subjects, bench.classes, bench.args.resamples)
        results.append({"split": setting.split, "seed": setting.seed, "method": name, **r})
        print(
            f"  {name:<18} bal acc {r['balanced_accuracy']:.3f}  vs PCA+LR "
            f"{r['difference_vs_pca_lr']:+.3f} [{_num(r['difference_interval'][0], '+.3f')}, "
            f"{_num(r['difference_interval'][1], '+.3f')}]",
            flush=True,
        )
    return results


def settings(bench: Benchmark) -> list[Setting]:
    recipes = [bench.default] + [r for r in bench.recipes.values() if r.hash != bench.default.hash]
    unique = list({r.hash: r for r in recipes}.values())
    cache_root = Path(bench.args.cache)
    out = []
    for split in bench.args.split:
        for seed in bench.args.seeds:
            if split == "heldout":
                out.append(heldout_setting(cache_root, seed, bench.out, unique))
            else:
                out.append(
                    within_setting(cache_root, seed, bench.out, unique, bench.args.test_fraction)
                )
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument(
        "--methods", nargs="+", help="run only these (default: all; pca_lr always runs)"
    )
    parser.add_argument(
        "--candidate",
        action="append",
        type=parse_candidate,
        default=[],
        metavar='NAME="OVERRIDES"',
        help="a candidate recipe: pipeline.train overrides, space-separated (repeatable)",
    )
    parser.add_argument(
        "--extra",
        type=shlex.split,
        default=[],
        help='overrides appended to every trained method, e.g. "trainer.max_epochs=3"',
    )
    parser.add_argument("--cache", default="cache", help="paths.cache (default: cache)")
    parser.add_argument("--out", type=Path, help="output folder; an existing one is resumed")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="within split")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, help="torch/BLAS threads per process")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    candidates = dict(CANDIDATES)
    candidates.update(dict(args.candidate))
    env = dict(os.environ)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = args.out or Path("runs") / "bench_quality" / time.strftime("%Y%m%d_%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    classes = [str(c) for c in compose("train").data.classes]
    bench = Benchmark(args, out, classes, env)
    chosen = check_caches(bench, methods(candidates, args.methods))
    results = [r for s in settings(bench) for r in run_setting(bench, s, chosen)]
    focus = "MCI" if "MCI" in classes else classes[len(classes) // 2]
    summary = summarize(results, focus)
    text = "\n\n".join(
        [
            "### Quality benchmark: every split, seed and method",
            runs_table(results, classes),
            "### Over seeds",
            summary_table(summary, focus),
        ]
    )
    if bench.skipped:
        text += "\n\nSkipped: " + "; ".join(f"{k}: {v}" for k, v in bench.skipped.items())
    print("\n" + text)
    write_text(out / "tables.md", text + "\n")
    recipes = {
        name: {"hash": r.hash, "overrides": list(r.overrides)} for name, r in bench.recipes.items()
    }
    write_strict_json(
        out / "results.json",
        {
            "command": shlex.join([sys.executable, *sys.argv]),
            "methods": {m.name: list(m.overrides) for m in chosen},
            "extra": list(args.extra),
            "recipes": recipes,
            "classes": classes,
            "runs": results,
            "summary": summary,
            "skipped": bench.skipped,
        },
    )
    print(f"\nWritten: {out / 'tables.md'}, {out / 'results.json'}")


if __name__ == "__main__":
    main()

"""The held-out cohort a checkpoint is applied to: its cache, built with the checkpoint's recipe.

Shared by ``evaluate`` and ``predict``. A model only means something on pixels made exactly the
way its training pixels were, so the cache is used only when its recipe hash equals the
checkpoint's; otherwise the cohort is preprocessed again with the checkpoint's stored recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.apply.errors import LeakageError
from pipeline.cache import (
    PROVENANCE,
    CacheError,
    PreprocessedCohort,
    cohort_dir,
    is_complete,
    load_cohort,
    read_provenance,
    recorded_source,
)
from pipeline.checkpoint import Checkpoint
from pipeline.config import RECIPE_KEYS, to_container


def recipe_cache_name(name: str, recipe_hash: str) -> str:
    """Cache folder name for ``name`` built with a recipe other than the one already cached.

    When ``${paths.cache}/${data.name}`` exists with another recipe (say for another model),
    it is left alone and the checkpoint's recipe gets its own folder beside it.
    """
    return f"{name}__pp-{recipe_hash}"


def _cached_hash(directory: Path) -> str | None:
    """The recipe hash of a complete cache, or ``None``."""
    if not is_complete(directory):
        return None
    return read_provenance(directory).get("recipe_hash")


def build_config(cfg: DictConfig, ckpt: Checkpoint, name: str) -> DictConfig:
    """The config that preprocesses ``cfg.data`` into cache ``name`` with the checkpoint's recipe.

    The labels table is validated against the model's classes plus any other ``data.classes``:
    a case labelled with a class the model does not know is then kept in the cache and reported
    as not scored, instead of stopping the whole cohort.
    """
    data = to_container(cfg.data)
    data["name"] = name
    model_classes = list(ckpt.classes)
    data["classes"] = model_classes + [
        str(c) for c in data.get("classes") or () if str(c) not in model_classes
    ]
    recipe = {key: ckpt.recipe[key] for key in RECIPE_KEYS}
    return OmegaConf.create(
        {
            "paths": to_container(cfg.paths),
            "data": data,
            **recipe,
            # The run options (conf/preprocess_run/, composed by evaluate and predict); a shard
            # or merge key is never set here, so PreprocessOptions' defaults apply to those.
            "preprocess": to_container(cfg.get("preprocess") or {}),
        }
    )


def _other_source(directory: Path, root: str | None) -> Path | None:
    """The data root a cache records, when ``root`` is an existing folder and a different one.

    Guards against a cache name reused for another cohort: evaluating it would score the wrong
    subjects without a word.
    """
    if not root or not Path(root).is_dir():
        return None
    recorded = recorded_source(directory)
    return None if recorded is None or recorded == Path(root).resolve() else recorded


def prepare_cohort(
    cfg: DictConfig, ckpt: Checkpoint, log: Callable[[str], None] = print
) -> PreprocessedCohort:
    """Open the held-out cache made with the checkpoint's recipe, preprocessing it if needed.

    Looks in ``${paths.cache}/${data.name}`` and then in its recipe-named sibling
    (:func:`recipe_cache_name`); reuses the first complete cache whose hash matches (and that was
    made from ``data.root``, when the cache records its root and ``data.root`` exists).
    Otherwise it runs the preprocess stage on ``data.root`` (into ``data.name`` when that folder
    is free, unfinished or of the same recipe, else into the sibling). ``preprocess.force=true``
    always preprocesses (incrementally: unchanged subjects are not decoded again).
    """
    expected = ckpt.recipe_hash
    cache_root = Path(str(cfg.paths.cache))
    name = str(cfg.data.name)
    root = OmegaConf.select(cfg, "data.root", default=None, throw_on_missing=False)
    plain = cohort_dir(cache_root, name)
    sibling = cohort_dir(cache_root, recipe_cache_name(name, expected))
    force = bool(OmegaConf.select(cfg, "preprocess.force", default=False))
    for candidate in () if force else (plain, sibling):
        if _cached_hash(candidate) != expected:
            continue
        recorded = _other_source(candidate, root)
        if recorded is None:
            log(f"Using the preprocessed cohort {candidate} (recipe {expected}).")
            return load_cohort(candidate, expected_hash=expected)
        raise CacheError(
            f"The cache {candidate} holds cohort {name!r} preprocessed from {recorded}, not from "
            f"data.root={root}. Pass another data.name for this cohort (or drop data.root to "
            "evaluate the cached one)."
        )

    other = _cached_hash(plain)
    target = sibling if other is not None and other != expected else plain
    if root is None or not Path(str(root)).is_dir():
        raise CacheError(
            f"No cache of cohort {name!r} made with this model's preprocessing recipe {expected} "
            f"under {cache_root}, and data.root={root} is not a folder to make one from. "
            "Pass data.root=DIR (and data.labels=FILE to evaluate)."
        )
    if target == sibling:
        log(
            f"{plain} was preprocessed with recipe {other}; this model needs {expected}. "
            f"Preprocessing {root} into {target} (the existing cache is kept)."
        )
    else:
        log(f"Preprocessing {root} into {target} with the checkpoint's recipe {expected}.")
    # Imported here: the preprocess stage is heavy and not needed when a cache is reused.
    from pipeline.preprocess.run import preprocess_cohort

    built = Path(preprocess_cohort(build_config(cfg, ckpt, target.name)))
    if not (built / PROVENANCE).exists():
        raise CacheError(f"Preprocessing did not finish a cache at {built}")
    return load_cohort(built, expected_hash=expected)


def check_overlap(
    subject_ids: Iterable[str], ckpt: Checkpoint, allow_overlap: bool = False
) -> list[str]:
    """Subjects of the cohort that the checkpoint trained or validated on (sorted).

    Raises :class:`LeakageError` listing them unless ``allow_overlap``: metrics on subjects a
    model has seen are optimistic and must never pass for an external validation.
    """
    overlap = sorted(set(map(str, subject_ids)) & ckpt.subjects_seen())
    if overlap and not allow_overlap:
        raise LeakageError(
            f"{len(overlap)} held-out subject(s) were used to train or validate this model: "
            f"{', '.join(overlap)}.\nMetrics on them would be optimistic. Remove them from the "
            "held-out cohort, or pass evaluate.allow_overlap=true to evaluate anyway (the report "
            "then says so)."
        )
    return overlap

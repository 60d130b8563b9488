"""The trained-model file: the contract between ``train`` and ``evaluate``/``predict``.

``<run>/checkpoints/best.pt`` holds one :class:`Checkpoint`; each trained model in it (one for a
plain run, k for ``split.folds=k``) is a :class:`FoldEntry`. The dataclasses are the contract:
:func:`save_checkpoint` and :func:`load_checkpoint` are the only code that writes and reads the
file, :func:`save_fold_entry` and :func:`load_fold_entry` the only code for a finished fold's
``fold_result.pt``. On disk both are plain dicts of tensors, strings, numbers, lists and dicts
(:meth:`Checkpoint.to_dict`), so they load with ``torch.load(weights_only=True)``: no pickled
code runs on load. A file of another format version is refused with a message that says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from pipeline.decision import ArgmaxRule, DecisionRule, rule_from_dict
from pipeline.utils.atomic import atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported by the functions that read and write the file: a command that stops at a
# config error (a checkpoint that does not exist) answers without importing it.

#: Version 1 (until this redesign) kept the network config under ``model`` and had no decision
#: rule; version 2 is the dataclass layout below.
FORMAT_VERSION = 2
BEST_PT = "best.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of ours."""


@dataclass(frozen=True)
class FoldEntry:
    """One trained model of a checkpoint and the subjects it saw.

    Attributes:
        state_dict: the network's weights (``network`` of the checkpoint builds the module).
        train_subjects: sorted ids of the subjects it trained on.
        val_subjects: sorted ids of the fold's validation subjects (they fit the decision rule,
            and choose the epoch under ``callbacks=early_stopping``).
        best_epoch: 0-based epoch of these weights (the kept one: the last epoch by default,
            the best validation score under ``callbacks=early_stopping``).
        epochs_trained: epochs run before training stopped.
        val_metrics: validation metrics at ``best_epoch`` (``val_bal_acc``, ``val_auc``, ...).
    """

    state_dict: dict[str, torch.Tensor] = field(repr=False)
    train_subjects: tuple[str, ...]
    val_subjects: tuple[str, ...]
    best_epoch: int
    epochs_trained: int
    val_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (``weights_only``-loadable)."""
        return {
            "state_dict": {k: v.contiguous() for k, v in self.state_dict.items()},
            "train_subjects": list(self.train_subjects),
            "val_subjects": list(self.val_subjects),
            "best_epoch": int(self.best_epoch),
            "epochs_trained": int(self.epochs_trained),
            "val_metrics": {str(k): float(v) for k, v in self.val_metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "fold entry") -> FoldEntry:
        """The entry :meth:`to_dict` wrote; :class:`CheckpointError` naming what is missing."""
        _require(data, [f.name for f in dataclasses.fields(cls)], source)
        return cls(
            state_dict=dict(data["state_dict"]),
            train_subjects=tuple(map(str, data["train_subjects"])),
            val_subjects=tuple(map(str, data["val_subjects"])),
            best_epoch=int(data["best_epoch"]),
            epochs_trained=int(data["epochs_trained"]),
            val_metrics={str(k): float(v) for k, v in data["val_metrics"].items()},
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the weights and subject lists (for summary.json and logs)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs_trained": self.epochs_trained,
            "val_metrics": dict(self.val_metrics),
            "n_train_subjects": len(self.train_subjects),
            "n_val_subjects": len(self.val_subjects),
        }


@dataclass(frozen=True)
class Checkpoint:
    """Everything evaluate and predict need to apply trained models to a new cohort.

    Attributes:
        classes: output order of the models (``data.classes``).
        network: the sized network config (``_target_`` + kwargs) every fold is built from.
        slice_mode: ``channels`` (S slices as S channels) or ``slices`` (one slice a sample,
            subject-level soft vote).
        recipe: the ``slices``/``series``/``normalize`` preprocessing recipe of the training cache.
        recipe_hash: :func:`pipeline.config.recipe_hash` of ``recipe``.
        folds: the trained models, one :class:`FoldEntry` each.
        decision: the rule applied to the fold ensemble's probabilities.
        train_config: the resolved training config.
        data_name: the cache it was trained on.
        versions: package versions.
        created: ISO-8601 time.
        shuffle_labels: trained with permuted labels (the leakage check): not a usable model.
    """

    classes: tuple[str, ...]
    network: dict[str, Any]
    slice_mode: str
    recipe: dict[str, Any]
    recipe_hash: str
    folds: tuple[FoldEntry, ...]
    decision: DecisionRule = field(default_factory=ArgmaxRule)
    train_config: dict[str, Any] = field(default_factory=dict, repr=False)
    data_name: str = ""
    versions: dict[str, str] = field(default_factory=dict, repr=False)
    created: str = ""
    shuffle_labels: bool = False

    def __post_init__(self) -> None:
        if not self.folds:
            raise CheckpointError("a checkpoint needs at least one trained model (folds)")

    def subjects_seen(self) -> set[str]:
        """Every subject the models saw in training or validation, across folds."""
        seen: set[str] = set()
        for fold in self.folds:
            seen.update(fold.train_subjects)
            seen.update(fold.val_subjects)
        return seen

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: plain types only (``weights_only``-loadable)."""
        return {
            "format_version": FORMAT_VERSION,
            "classes": list(self.classes),
            "network": dict(self.network),
            "slice_mode": self.slice_mode,
            "recipe": dict(self.recipe),
            "recipe_hash": self.recipe_hash,
            "folds": [fold.to_dict() for fold in self.folds],
            "decision": self.decision.to_dict(),
            "train_config": dict(self.train_config),
            "data_name": self.data_name,
            "versions": {str(k): str(v) for k, v in self.versions.items()},
            "created": self.created,
            "shuffle_labels": bool(self.shuffle_labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> Checkpoint:
        """The checkpoint :meth:`to_dict` wrote; :class:`CheckpointError` for anything else."""
        _require(data, ["format_version"], source)
        version = data["format_version"]
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has checkpoint format {version}; this code reads format "
                f"{FORMAT_VERSION}. It was written by an older pipeline.train: train the model "
                "again with this version (its run folder's config.yaml holds the settings)."
            )
        names = [f.name for f in dataclasses.fields(cls)]
        _require(data, names, source)
        if not data["folds"]:
            raise CheckpointError(f"{source} holds no trained model (empty 'folds')")
        try:
            decision = rule_from_dict(data["decision"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
        return cls(
            classes=tuple(map(str, data["classes"])),
            network=dict(data["network"]),
            slice_mode=str(data["slice_mode"]),
            recipe=dict(data["recipe"]),
            recipe_hash=str(data["recipe_hash"]),
            folds=tuple(
                FoldEntry.from_dict(f, f"{source}: fold {i}") for i, f in enumerate(data["folds"])
            ),
            decision=decision,
            train_config=dict(data["train_config"]),
            data_name=str(data["data_name"]),
            versions={str(k): str(v) for k, v in data["versions"].items()},
            created=str(data["created"]),
            shuffle_labels=bool(data["shuffle_labels"]),
        )


def _require(data: Mapping[str, Any], keys: Sequence[str], source: str) -> None:
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{source} is not a pipeline checkpoint (got {type(data).__name__})")
    missing = [k for k in keys if k not in data]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}; it was not written by pipeline.train")


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from exc


def _torch_save(path: str | Path, data: dict[str, Any]) -> Path:
    import torch

    with atomic_path(path, suffix=".pt") as tmp:  # a crash never leaves a truncated file
        torch.save(data, tmp)
    return Path(path)


def checkpoint_file(path: str | Path) -> Path:
    """The file ``checkpoint=`` names: a train run folder means its ``checkpoints/best.pt``."""
    p = Path(path)
    return p / "checkpoints" / BEST_PT if p.is_dir() else p


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically."""
    return _torch_save(path, checkpoint.to_dict())


def existing_checkpoint(path: str | Path) -> Path:
    """:func:`checkpoint_file` of ``path``; :class:`CheckpointError` when there is none."""
    p = checkpoint_file(path)
    if not p.is_file():
        raise CheckpointError(
            f"No checkpoint at {path}. Pass checkpoint=<run>/checkpoints/best.pt "
            "(the path printed at the end of `python -m pipeline.train`)."
        )
    return p


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint (a file, or a train run folder) on the CPU with ``weights_only=True``."""
    p = existing_checkpoint(path)
    return Checkpoint.from_dict(_torch_load(p), str(p))


def save_fold_entry(path: str | Path, entry: FoldEntry) -> Path:
    """Write a finished fold's entry (``fold_result.pt``) atomically."""
    return _torch_save(path, entry.to_dict())


def load_fold_entry(path: str | Path) -> FoldEntry:
    """Read what :func:`save_fold_entry` wrote."""
    p = Path(path)
    return FoldEntry.from_dict(_torch_load(p), str(p))


def build_model(network: Mapping[str, Any]) -> nn.Module:
    """Instantiate a network from its config (``_target_`` + kwargs)."""
    return instantiate(dict(network), _convert_="all")


def build_models(checkpoint: Checkpoint, device: str | torch.device = "cpu") -> list[nn.Module]:
    """One network per fold, weights loaded, in eval mode on ``device``."""
    models = []
    for fold in checkpoint.folds:
        model = build_model(checkpoint.network)
        model.load_state_dict(fold.state_dict)
        models.append(model.to(device).eval())
    return models

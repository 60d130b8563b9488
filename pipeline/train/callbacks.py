"""The Lightning callbacks of a fold: those ``conf/callbacks`` configures, and the interruption
notice every run gets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from pipeline.train.errors import TrainError

log = logging.getLogger(__name__)


def build_callbacks(configs: Mapping[str, Any], checkpoint_dir: Path) -> list[Callback]:
    """Instantiate ``conf/callbacks`` in order; a ``dirpath: null`` becomes ``checkpoint_dir``."""
    callbacks = []
    for config in configs.values():
        extra = {"dirpath": str(checkpoint_dir)} if config.get("dirpath", ...) is None else {}
        callbacks.append(instantiate(config, **extra, _convert_="all"))
    return callbacks


@dataclass(frozen=True)
class CheckpointCallbacks:
    """The ModelCheckpoints a run relies on: the state to resume from (always) and, when the
    config has a monitored one, the best model by its metric."""

    last: ModelCheckpoint
    best: ModelCheckpoint | None = None

    @property
    def best_path(self) -> Path | None:
        """Where ``best`` writes (its ``filename`` has no metric placeholders)."""
        return _file_of(self.best) if self.best is not None else None

    @property
    def last_path(self) -> Path:
        """Where ``last`` writes (the file ``train.resume=true`` continues from)."""
        return _file_of(self.last)

    @property
    def model_path(self) -> Path:
        """The checkpoint whose weights the fold keeps: the best one, else the last epoch's."""
        return self.best_path or self.last_path

    @property
    def monitor(self) -> str | None:
        """The metric that chooses the model, or ``None`` when the last epoch is kept."""
        return str(self.best.monitor) if self.best is not None else None


def _file_of(callback: ModelCheckpoint) -> Path:
    return Path(str(callback.dirpath)) / f"{callback.filename}{callback.FILE_EXTENSION}"


def checkpoint_callbacks(callbacks: list[Callback]) -> CheckpointCallbacks:
    """The unmonitored ModelCheckpoint of ``callbacks`` (exactly one) and the monitored one
    (at most one)."""
    checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    monitored = [c for c in checkpoints if c.monitor]
    unmonitored = [c for c in checkpoints if not c.monitor]
    if len(monitored) > 1 or len(unmonitored) != 1:
        raise TrainError(
            "conf/callbacks needs exactly one ModelCheckpoint without a monitor (the last "
            "epoch's state: what train.resume=true continues from, and the model kept when "
            "nothing else chooses) and at most one with a monitor (the best model, which "
            f"best.pt then keeps); found {len(unmonitored)} and {len(monitored)}."
        )
    return CheckpointCallbacks(last=unmonitored[0], best=monitored[0] if monitored else None)


class InterruptNotice(L.Callback):
    """On Ctrl-C or a crash, says what was kept and the command that resumes the run.

    ``ModelCheckpoint`` writes ``last.ckpt`` atomically at the end of every epoch, so an
    interruption loses at most the current epoch; resuming from an epoch boundary (rather than
    saving a mid-epoch state here) keeps the resumed run identical to an uninterrupted one.
    """

    def __init__(self, last_checkpoint: str | Path, resume_command: str) -> None:
        super().__init__()
        self.last_checkpoint = Path(last_checkpoint)
        self.resume_command = resume_command

    @rank_zero_only
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, TrainError):
            return  # a problem with the data or settings: resuming would meet it again
        what = (
            "Interrupted"
            if isinstance(exception, KeyboardInterrupt)
            else f"Stopped by {type(exception).__name__}"
        )
        if self.last_checkpoint.is_file():
            kept = f"{self.last_checkpoint} holds the state after the last finished epoch"
        else:
            kept = "no epoch had finished, so a resume starts this fold from the beginning"
        log.warning(
            "%s during epoch %d; %s. Resume with:\n  %s",
            what,
            trainer.current_epoch,
            kept,
            self.resume_command,
        )

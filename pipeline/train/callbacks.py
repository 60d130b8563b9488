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
    """The two ModelCheckpoints a run relies on: the best model, and the state to resume from."""

    best: ModelCheckpoint
    last: ModelCheckpoint

    @property
    def best_path(self) -> Path:
        """Where ``best`` writes (its ``filename`` has no metric placeholders)."""
        return _file_of(self.best)

    @property
    def last_path(self) -> Path:
        """Where ``last`` writes (the file ``train.resume=true`` continues from)."""
        return _file_of(self.last)

    @property
    def monitor(self) -> str:
        return str(self.best.monitor)


def _file_of(callback: ModelCheckpoint) -> Path:
    return Path(str(callback.dirpath)) / f"{callback.filename}{callback.FILE_EXTENSION}"


def checkpoint_callbacks(callbacks: list[Callback]) -> CheckpointCallbacks:
    """The monitored and the unmonitored ModelCheckpoint of ``callbacks`` (one of each)."""
    checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    monitored = [c for c in checkpoints if c.monitor]
    unmonitored = [c for c in checkpoints if not c.monitor]
    if len(monitored) != 1 or len(unmonitored) != 1:
        raise TrainError(
            "conf/callbacks needs exactly one ModelCheckpoint with a monitor (the model best.pt "
            "keeps) and one without (the state train.resume=true continues from); found "
            f"{len(monitored)} and {len(unmonitored)}."
        )
    return CheckpointCallbacks(best=monitored[0], last=unmonitored[0])


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

"""Lightning callbacks of a training run: the per-epoch history and the interruption notice."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_only

from pipeline.train.errors import TrainError
from pipeline.utils.atomic import write_csv

log = logging.getLogger(__name__)


def _csv_name(metric: str) -> str:
    return metric.replace("/", "_").replace("-", "_").lower()


class EpochHistory(L.Callback):
    """Writes one row per finished epoch to ``path`` (CSV): losses, metrics, learning rate.

    It runs before the checkpoint callbacks at the end of a training epoch (after validation), so
    ``last.ckpt`` always carries the history up to its own epoch and a resumed run continues it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for key, value in sorted(trainer.callback_metrics.items()):
            number = float(value.item() if isinstance(value, torch.Tensor) else value)
            # LearningRateMonitor logs "lr-<Optimizer>" (the rate at the epoch's start)
            row["lr" if key.startswith("lr-") else _csv_name(key)] = number
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self._write()

    @rank_zero_only
    def _write(self) -> None:
        frame = pd.DataFrame(self.rows)
        frame["epoch"] = frame["epoch"].astype(int)
        write_csv(self.path, frame)

    def best_row(self, monitor: str, mode: str = "max") -> dict[str, float] | None:
        """The first epoch with the best value of ``monitor`` (as logged, e.g. ``val/bal_acc``)."""
        column = _csv_name(monitor)
        scored = [r for r in self.rows if column in r and not math.isnan(r[column])]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda r: r[column])

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class InterruptNotice(L.Callback):
    """On Ctrl-C or a crash, says what was kept and the command that resumes the run.

    ``ModelCheckpoint`` writes ``last.ckpt`` atomically at the end of every epoch, so an
    interruption loses at most the current epoch; resuming from an epoch boundary (rather than
    saving a mid-epoch state here) keeps the resumed run identical to an uninterrupted one.
    """

    def __init__(self, last_checkpoint: str | Path, resume_command: str) -> None:
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

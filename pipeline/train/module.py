"""The Lightning module: loss, batch augmentation, optimizer and schedule, validation metrics.

Everything it is built from is a ``conf/`` object (lightning-hydra-template layout): the
network (``model.net``), the optimizer, the learning-rate schedule and the loss are
``_partial_`` callables from ``conf/optimizer``, ``conf/scheduler`` and ``conf/loss``; the module
never chooses a class by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

from pipeline.inference import SLICE_MODES, subject_logits_to_probs
from pipeline.train.augment import BatchAugment, batch_generator, mixed_seed
from pipeline.train.data import Batch
from pipeline.train.errors import NonFiniteLossError

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., Any]
LossFactory = Callable[..., nn.Module]


def call_with_known(factory: Callable[..., Any], *args: Any, **offered: Any) -> Any:
    """``factory(*args, **kw)`` with the ``offered`` keywords its signature accepts.

    Schedules differ in what they need to know about the run (OneCycleLR: ``total_steps``;
    ConstantLR: nothing), so the module offers what it knows and each takes its share.
    """
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(*args, **offered)
    return factory(*args, **{k: v for k, v in offered.items() if k in params})


class StageClassifier(L.LightningModule):
    """Trains ``net`` on cache rows ``(B, S, H, W)`` in either slice mode.

    ``channels``: the S slices are the input channels. ``slices``: every slice is a 1-channel
    training sample with its row's label; validation scores the row (subject session) by the soft
    vote of its slices, exactly as :func:`pipeline.inference.subject_logits_to_probs` does in
    evaluate. The monitored metric is validation balanced accuracy (``val/bal_acc``, mean recall).

    Args:
        net: the network (its ``state_dict`` is what ``best.pt`` stores).
        optimizer: called with the module's parameters (``conf/optimizer``).
        scheduler: called with the optimizer and, where it accepts them, ``total_steps`` and
            ``epochs`` of the run; stepped every batch. ``None``: a constant learning rate.
        loss: called with ``weight=`` the per-class weights (``conf/loss``).
        classes: class names, in output order.
        slice_mode: ``channels`` or ``slices``.
        class_weight: per-class loss weights (``None``: equal).
        augment: batch augmentation applied to training batches only.
        seed: base seed of the per-batch augmentation generator.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: LossFactory = nn.CrossEntropyLoss,
        *,
        classes: Sequence[str],
        slice_mode: str = "channels",
        class_weight: Sequence[float] | None = None,
        augment: BatchAugment | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if slice_mode not in SLICE_MODES:
            raise ValueError(f"data.slice_mode must be one of {SLICE_MODES}, got {slice_mode!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "loss", "augment"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        weights = (
            None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        )
        self.criterion = loss(weight=weights)
        self.classes = list(classes)
        self.slice_mode = slice_mode
        self.augment = augment if augment else None
        self.seed = int(seed)
        k = len(self.classes)
        self.train_bal_acc = MulticlassAccuracy(num_classes=k, average="macro")
        self.val_metrics = MetricCollection(
            {
                "bal_acc": MulticlassAccuracy(num_classes=k, average="macro"),
                "acc": MulticlassAccuracy(num_classes=k, average="micro"),
                "auc": MulticlassAUROC(num_classes=k),
            },
            prefix="val/",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)`` of cache rows ``(B, S, H, W)``."""
        return subject_logits_to_probs(self.net, x, self.slice_mode)

    def _samples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.slice_mode == "slices":
            b, s, h, w = x.shape
            return x.reshape(b * s, 1, h, w), y.repeat_interleave(s)
        return x, y

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        x, y = batch["image"], batch["label"]
        # Every random draw of a step (augmentation, dropout) comes from (seed, epoch, batch,
        # rank): Lightning checkpoints hold no RNG state, and this way a run resumed from
        # last.ckpt repeats exactly what the uninterrupted run would have done.
        keys = (self.seed, self.current_epoch, batch_idx, self.global_rank)
        torch.manual_seed(mixed_seed(*keys, 1))
        if self.augment is not None:
            x = self.augment(x, batch_generator(x.device, *keys))
        x, y = self._samples(x, y)
        if len(y) < 2:
            # BatchNorm cannot normalise a lone sample (a last batch of one); the order changes
            # every epoch, so that sample is seen in other epochs.
            return None
        logits = self.net(x)
        loss = self.criterion(logits, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss became {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (0-based). Lower model.optimizer.lr (now {self._lr()}), "
                "keep trainer.gradient_clip_val set, "
                "or check the cache for extreme pixel values."
            )
        self.train_bal_acc(logits.detach(), y)
        self.log(
            "train/loss",
            loss,
            on_epoch=True,
            on_step=False,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,
        )
        self.log(
            "train/bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, batch_size=len(y)
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch["image"], batch["label"]
        probs = self(x).float()
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-7)), y)
        self.val_metrics.update(probs, y)
        self.log(
            "val/loss",
            loss,
            on_epoch=True,
            on_step=False,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=True,
        )
        self.log_dict(
            self.val_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y)
        )

    def on_train_epoch_end(self) -> None:
        # The rate the epoch ended with, one value per epoch in metrics.csv.
        self.log("lr", self._lr(), on_epoch=True, on_step=False, sync_dist=False)

    def _lr(self) -> float:
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        return float(optimizers[0].param_groups[0]["lr"]) if optimizers else float("nan")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = call_with_known(
            self.scheduler_factory,
            optimizer,
            total_steps=total,
            epochs=max(1, self.trainer.max_epochs or 1),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

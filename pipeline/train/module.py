"""The Lightning module: loss, batch augmentation, optimiser and schedule, validation metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

from pipeline.inference import SLICE_MODES, subject_logits_to_probs
from pipeline.train.augment import BatchAugment, batch_generator, mixed_seed
from pipeline.train.data import Batch
from pipeline.train.errors import NonFiniteLossError

SCHEDULERS = ("cosine", "onecycle", "none")


class StageClassifier(L.LightningModule):
    """Trains ``net`` on cache rows ``(B, S, H, W)`` in either slice mode.

    ``channels``: the S slices are the input channels. ``slices``: every slice is a 1-channel
    training sample with its row's label; validation scores the row (subject session) by the soft
    vote of its slices, exactly as :func:`pipeline.inference.subject_logits_to_probs` does in
    evaluate. The monitored metric is validation balanced accuracy (``val/bal_acc``, mean recall).

    Args:
        net: the network (its ``state_dict`` is what ``best.pt`` stores).
        classes: class names, in output order.
        slice_mode: ``channels`` or ``slices``.
        lr, weight_decay: AdamW settings.
        scheduler: ``cosine`` (linear warm-up, cosine decay, per step), ``onecycle`` or ``none``.
        warmup_epochs: warm-up length of ``cosine``.
        class_weights: per-class loss weights (None: unweighted).
        label_smoothing: cross-entropy label smoothing.
        augment: batch augmentation applied to training batches only.
        seed: base seed of the per-batch augmentation generator.
    """

    def __init__(
        self,
        net: nn.Module,
        classes: Sequence[str],
        slice_mode: str = "channels",
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        scheduler: str = "cosine",
        warmup_epochs: float = 1.0,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        augment: BatchAugment | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if slice_mode not in SLICE_MODES:
            raise ValueError(f"data.slice_mode must be one of {SLICE_MODES}, got {slice_mode!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"train.scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.save_hyperparameters(ignore=["net", "augment"])
        self.net = net
        self.classes = list(classes)
        self.slice_mode = slice_mode
        self.augment = augment if augment else None
        self.seed = int(seed)
        weights = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        )
        self.register_buffer("class_weights", weights, persistent=False)
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
        loss = F.cross_entropy(
            logits, y, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing
        )
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"The training loss became {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (0-based). Lower train.lr (now {self.hparams.lr}), "
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

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if hp.scheduler == "onecycle":
            scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=hp.lr, total_steps=total
            )
        else:
            steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
            warmup = min(total - 1, math.ceil(hp.warmup_epochs * steps_per_epoch))
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(1, total - warmup)
            )
            if warmup > 0:
                ramp = torch.optim.lr_scheduler.LinearLR(
                    optimizer, start_factor=0.1, total_iters=warmup
                )
                scheduler = torch.optim.lr_scheduler.SequentialLR(
                    optimizer, [ramp, cosine], milestones=[warmup]
                )
            else:
                scheduler = cosine
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

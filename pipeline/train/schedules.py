"""Learning-rate schedules that torch has no single class for, as ``conf/scheduler`` factories.

The module calls a scheduler config (``_partial_: true``) with the optimizer and whichever of
``total_steps`` and ``epochs`` the callable accepts; schedules step once per batch.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    epochs: int,
    warmup_epochs: float = 1.0,
    start_factor: float = 0.1,
) -> LRScheduler:
    """Linear warm-up from ``start_factor`` x lr over ``warmup_epochs``, then cosine decay to 0.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        total_steps: optimizer steps in the whole run (Lightning's estimate).
        epochs: epochs in the whole run (``trainer.max_epochs``), to convert ``warmup_epochs``.
        warmup_epochs: length of the warm-up; 0 = cosine from the first step.
        start_factor: learning rate at the first step, as a fraction of the configured one.
    """
    steps_per_epoch = total_steps / max(1, epochs)
    warmup = min(total_steps - 1, math.ceil(warmup_epochs * steps_per_epoch))
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    if warmup <= 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])

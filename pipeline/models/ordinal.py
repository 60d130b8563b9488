"""Ordinal heads: class probabilities for ordered stages (CN < MCI < AD) from any backbone.

A softmax head treats the K stages as unordered: nothing stops it from learning that MCI is the
least likely class everywhere, which is what it does on small cohorts (MCI sensitivity 0.00 in 3
of 5 folds of a real 235-subject cohort). An ordinal head spends its capacity on one ordered
direction of disease and cut points along it, so the middle stage owns an interval of that
direction by construction.

Both heads wrap a backbone network and return **log-probabilities** ``(B, K)``. That keeps the
rest of the pipeline unchanged: ``softmax(log p) = p`` (what inference and validation compute),
and cross-entropy on ``log p`` is the negative log-likelihood of the ordinal model (what training
minimises, class weights included).

- :class:`CumulativeLinkHead`: the proportional-odds (cumulative logit) model of McCullagh (1980),
  ``P(y <= k | x) = sigmoid(theta_k - f(x))``: the backbone gives one score ``f(x)``, the head
  holds ``K - 1`` increasing cut points ``theta``.
- :class:`CornHead`: CORN (Shi, Cao and Raschka, 2023), ``K - 1`` conditional binary tasks
  ``P(y > k | y > k - 1, x) = sigmoid(l_k(x))``; the negative log-likelihood of the implied
  distribution is exactly CORN's loss summed over its tasks.

Example:
    >>> import torch
    >>> from pipeline.models import SimpleCNN
    >>> head = CumulativeLinkHead(SimpleCNN(in_channels=3, num_classes=1), num_classes=3)
    >>> head(torch.zeros(2, 3, 32, 32)).exp().sum(dim=1)  # doctest: +SKIP
    tensor([1.0000, 1.0000], grad_fn=<SumBackward1>)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CornHead", "CumulativeLinkHead"]


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"an ordinal head needs at least 2 classes, got {num_classes}")


def _check_outputs(scores: torch.Tensor, expected: int, head: str) -> None:
    if scores.ndim != 2 or scores.shape[1] != expected:
        raise ValueError(
            f"{head} expects its backbone to return (B, {expected}) scores, got "
            f"{tuple(scores.shape)}; build the backbone with {expected} output(s)"
        )


class CumulativeLinkHead(nn.Module):
    """Proportional-odds head: one backbone score, ``K - 1`` learned, ordered cut points.

    Args:
        backbone: a network returning ``(B, 1)`` scores (built with
            :meth:`backbone_outputs` outputs).
        num_classes: K, the number of ordered classes.

    Returns (forward): log-probabilities ``(B, K)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        # theta_1 and the log-free gaps to the next cut points (softplus keeps them increasing);
        # initialised evenly on [-1, 1] so every class starts with some probability.
        start = torch.linspace(-1.0, 1.0, num_classes - 1)
        gaps = torch.diff(start)
        self.first_cut = nn.Parameter(start[:1].clone())
        self.raw_gaps = nn.Parameter(torch.log(torch.expm1(gaps)) if len(gaps) else gaps)

    @staticmethod
    def backbone_outputs(num_classes: int) -> int:
        """Outputs the backbone needs for ``num_classes`` classes: one score."""
        _check_classes(num_classes)
        return 1

    def cut_points(self) -> torch.Tensor:
        """The increasing thresholds ``(K - 1,)`` on the score axis."""
        later = self.first_cut + torch.cumsum(F.softplus(self.raw_gaps), dim=0)
        return torch.cat([self.first_cut, later])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.backbone(x)
        _check_outputs(score, 1, type(self).__name__)
        theta = self.cut_points()  # (K-1,)
        upper = theta - score  # (B, K-1): P(y <= k) = sigmoid(upper_k)
        first = F.logsigmoid(upper[:, :1])
        last = F.logsigmoid(-upper[:, -1:])
        # log(sigmoid(a) - sigmoid(b)) for a > b, without cancellation:
        # = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(-(a - b)))
        a, b = upper[:, 1:], upper[:, :-1]
        middle = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-(a - b)))
        return torch.cat([first, middle, last], dim=1)


class CornHead(nn.Module):
    """CORN head: ``K - 1`` conditional "beyond stage k" logits from the backbone.

    Args:
        backbone: a network returning ``(B, K - 1)`` logits.
        num_classes: K, the number of ordered classes.

    Returns (forward): log-probabilities ``(B, K)``, with
    ``log P(y = k) = log P(y > k - 1) + logsigmoid(-l_k)`` and ``log P(y > k) = sum_{j<=k}
    logsigmoid(l_j)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.backbone = backbone
        self.num_classes = int(num_classes)

    @staticmethod
    def backbone_outputs(num_classes: int) -> int:
        """Outputs the backbone needs for ``num_classes`` classes: one per cut."""
        _check_classes(num_classes)
        return num_classes - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.backbone(x)
        _check_outputs(logits, self.num_classes - 1, type(self).__name__)
        beyond = torch.cumsum(F.logsigmoid(logits), dim=1)  # log P(y > k), (B, K-1)
        reached = torch.cat([torch.zeros_like(beyond[:, :1]), beyond], dim=1)  # log P(y > k-1)
        stop = torch.cat([F.logsigmoid(-logits), torch.zeros_like(logits[:, :1])], dim=1)
        return reached + stop

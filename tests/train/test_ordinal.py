"""Ordinal heads (pipeline/models/ordinal.py): valid distributions, the right likelihoods, and a
round trip through training, the checkpoint and evaluation's model builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.checkpoint import build_models, load_checkpoint
from pipeline.inference import predict_probabilities
from pipeline.models import CornHead, CumulativeLinkHead, SimpleCNN, network_config
from pipeline.train import train


class Fixed(nn.Module):
    """A backbone that returns given scores, whatever the input."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores


@pytest.mark.parametrize("head", [CumulativeLinkHead, CornHead])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_heads_give_log_probabilities(head, k) -> None:
    torch.manual_seed(0)
    model = head(SimpleCNN(2, head.backbone_outputs(k), channels=[4, 8]), num_classes=k)
    out = model(torch.randn(6, 2, 16, 16) * 10)
    assert out.shape == (6, k)
    assert torch.all(out <= 0) and torch.all(torch.isfinite(out))
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(6), atol=1e-5, rtol=0)
    F.cross_entropy(out, torch.arange(6) % k).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cumulative_link_is_proportional_odds() -> None:
    score = torch.tensor([[-3.0], [0.0], [0.4], [6.0]])
    head = CumulativeLinkHead(Fixed(score), num_classes=3)
    theta = head.cut_points().detach()
    assert theta[0] < theta[1]
    probs = head(torch.zeros(4, 1)).exp().detach()
    cdf = torch.sigmoid(theta[None, :] - score)  # P(y <= k)
    expected = torch.cat([cdf[:, :1], cdf[:, 1:] - cdf[:, :-1], 1 - cdf[:, -1:]], dim=1)
    torch.testing.assert_close(probs, expected)
    # a higher disease score moves probability towards the later stages, monotonically
    assert probs[:, 0].tolist() == sorted(probs[:, 0].tolist(), reverse=True)
    assert probs[:, 2].tolist() == sorted(probs[:, 2].tolist())
    # extreme scores stay finite in log space
    far = CumulativeLinkHead(Fixed(torch.tensor([[-200.0], [200.0]])), num_classes=3)
    assert torch.all(torch.isfinite(far(torch.zeros(2, 1))))


def test_corn_likelihood_is_the_corn_loss() -> None:
    """Cross-entropy on CornHead's output = CORN's binary losses over each sample's tasks."""
    torch.manual_seed(1)
    logits = torch.randn(8, 3)
    y = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    head = CornHead(Fixed(logits), num_classes=4)
    nll = F.cross_entropy(head(torch.zeros(8, 1)), y, reduction="none")
    corn = torch.zeros(8)
    for task in range(3):  # task k: P(y > k | y > k - 1), on the samples with y > k - 1
        in_task = y >= task
        target = (y > task).float()
        bce = F.binary_cross_entropy_with_logits(logits[:, task], target, reduction="none")
        corn += torch.where(in_task, bce, torch.zeros_like(bce))
    torch.testing.assert_close(nll, corn)


def test_network_config_wraps_the_sized_backbone() -> None:
    net = {"_target_": "pipeline.models.SimpleCNN", "in_channels": None, "num_classes": None}
    assert network_config(net, None, 3, 3) == {**net, "in_channels": 3, "num_classes": 3}
    assert network_config(net, {}, 3, 3)["num_classes"] == 3
    clm = network_config(net, {"_target_": "pipeline.models.CumulativeLinkHead"}, 3, 3)
    assert clm["num_classes"] == 3 and clm["backbone"]["num_classes"] == 1
    corn = network_config(net, {"_target_": "pipeline.models.CornHead"}, 1, 4)
    assert corn["backbone"] == {**net, "in_channels": 1, "num_classes": 3}
    with pytest.raises(ValueError, match="at least 2 classes"):
        network_config(net, {"_target_": "pipeline.models.CornHead"}, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["cumulative_link", "corn"])
def test_ordinal_head_round_trips_through_the_checkpoint(
    tmp_path, train_cfg, fake_cache, head
) -> None:
    cfg = train_cfg(f"head={head}", "trainer.max_epochs=2")
    cohort = fake_cache(cfg, n_subjects=30)
    result = train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(result.checkpoint)
    target = {"cumulative_link": "CumulativeLinkHead", "corn": "CornHead"}[head]
    assert ckpt.network["_target_"] == f"pipeline.models.{target}"
    assert ckpt.network["backbone"]["_target_"] == "pipeline.models.SimpleCNN"
    (model,) = build_models(ckpt)
    images = np.load(cohort / "images.npy")[:6]
    probs = predict_probabilities(model, images, "channels", device="cpu")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the weights in best.pt are the last epoch's Lightning checkpoint, exactly
    lightning = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, lightning["state_dict"][f"net.{name}"])

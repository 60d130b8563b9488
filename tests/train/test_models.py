"""Every conf/model config composes, is sized to the cohort, builds and runs a forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.checkpoint import build_model
from pipeline.config import CONF_DIR, compose, to_container
from pipeline.models import SimpleCNN, input_channels, sized_model_config

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
BIG = {"densenet121", "resnet50", "seresnet50", "efficientnet_b0"}


def test_expected_models_are_configured() -> None:
    assert {
        "simple_cnn",
        "densenet121",
        "resnet18",
        "resnet50",
        "efficientnet_b0",
        "seresnet50",
    } <= set(MODELS)


CASES = [
    pytest.param(m, "channels", marks=pytest.mark.slow) if m in BIG else (m, "channels")
    for m in MODELS
] + [(m, "slices") for m in MODELS if m not in BIG]


@pytest.mark.parametrize(("name", "slice_mode"), CASES)
def test_model_config_builds_and_runs(name: str, slice_mode: str) -> None:
    cfg = compose("train", [f"model={name}", f"data.slice_mode={slice_mode}"])
    config = sized_model_config(to_container(cfg.model.net), input_channels(slice_mode, 3), 3)
    assert "pretrained" not in config or config["pretrained"] is False
    model = build_model(config).eval()
    channels = 3 if slice_mode == "channels" else 1
    with torch.no_grad():
        out = model(torch.randn(2, channels, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_sizing_fills_only_null_arguments_and_refuses_conflicts() -> None:
    base = {"_target_": "pipeline.models.SimpleCNN", "in_channels": None, "num_classes": None}
    assert sized_model_config(base, 3, 4) == {**base, "in_channels": 3, "num_classes": 4}
    assert sized_model_config({**base, "in_channels": 3}, 3, 4)["in_channels"] == 3
    with pytest.raises(ValueError, match=r"model.in_channels=1 but this cohort needs 3"):
        sized_model_config({**base, "in_channels": 1}, 3, 4)
    with pytest.raises(ValueError, match="has none of"):
        sized_model_config({"_target_": "torch.nn.Identity"}, 3, 4)
    with pytest.raises(ValueError, match="slice_mode"):
        input_channels("volume", 3)


def test_simple_cnn_is_a_stack_of_conv_bn_relu_pool_blocks() -> None:
    model = SimpleCNN(in_channels=3, num_classes=3, channels=(8, 16))
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("Conv2d") == 2 and kinds.count("BatchNorm2d") == 2
    assert kinds.count("MaxPool2d") == 2 and "AdaptiveAvgPool2d" in kinds
    assert model(torch.randn(2, 3, 32, 40)).shape == (2, 3)
    with pytest.raises(ValueError):
        SimpleCNN(3, 3, channels=())

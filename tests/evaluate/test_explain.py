"""Grad-CAM and occlusion maps: target layer search, shapes, both slice modes, localisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pipeline.checkpoint import build_model
from pipeline.evaluate.explain import (
    find_target_layer,
    gradcam_extractors,
    gradcam_map,
    occlusion_map,
    select_cases,
)


class TopLeftModel(nn.Module):
    """Calls MCI in proportion to the brightness of the top-left quadrant; ignores the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        nn.init.constant_(self.conv.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        h, w = feat.shape[-2:]
        score = feat[..., : h // 2, : w // 2].mean(dim=(1, 2, 3))
        zero = torch.zeros_like(score)
        return torch.stack([zero, score, zero], dim=1)


def test_target_layer_is_the_last_spatial_feature_map(fakes) -> None:
    from monai.networks.nets import resnet18

    net = build_model(fakes.conv_net())
    assert find_target_layer(net, torch.zeros(1, 3, 32, 32)) == "5"  # last ReLU before pooling
    dense = build_model(fakes.monai_densenet())
    assert find_target_layer(dense, torch.zeros(1, 3, 32, 32)) == "class_layers.relu"
    resnet = resnet18(spatial_dims=2, n_input_channels=3, num_classes=3)
    assert find_target_layer(resnet, torch.zeros(1, 3, 64, 64)) == "layer4"


def test_a_model_without_spatial_maps_asks_for_a_layer() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    with pytest.raises(ValueError, match="target_layer"):
        find_target_layer(flat, torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("slice_mode", ["channels", "slices"])
def test_gradcam_maps_cover_every_slice_for_an_ensemble(fakes, slice_mode) -> None:
    in_channels = 3 if slice_mode == "channels" else 1
    torch.manual_seed(0)
    models = [build_model(fakes.monai_densenet(in_channels)).eval() for _ in range(2)]
    image = torch.randn(3, 32, 32)
    cams = gradcam_extractors(models, "class_layers.relu")
    cam = gradcam_map(cams, image, slice_mode, class_idx=1)
    assert cam.shape == (3, 32, 32)
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
    assert cam.max() > cam.min()
    if slice_mode == "channels":  # one image, one map shared by its slices
        np.testing.assert_array_equal(cam[0], cam[2])


def test_unknown_target_layer_is_a_clear_error(fakes) -> None:
    with pytest.raises(ValueError, match="not a layer"):
        gradcam_extractors([build_model(fakes.conv_net())], "features.nope")


def test_occlusion_finds_the_region_the_model_uses() -> None:
    image = torch.zeros(3, 32, 32)
    image[:, :16, :16] = 0.5  # bright top-left: predicted MCI (p = 0.69, not saturated)
    drop = occlusion_map([TopLeftModel().eval()], image, "channels", class_idx=1, mask_size=8)
    assert drop.shape == (32, 32)
    inside, outside = drop[2:14, 2:14].mean(), drop[18:, 18:].mean()
    assert inside > 0.02 and abs(outside) < 1e-5


def test_occlusion_in_slice_mode_runs_on_the_subject(fakes) -> None:
    models = [build_model(fakes.conv_net(in_channels=1)).eval()]
    drop = occlusion_map(models, torch.randn(3, 32, 32), "slices", class_idx=0, mask_size=16)
    assert drop.shape == (32, 32) and np.isfinite(drop).all()


def test_cases_are_the_most_confident_right_and_wrong_per_class() -> None:
    table = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c", "d", "e"],
            "session_id": [""] * 5,
            "label": ["CN", "CN", "CN", "AD", "AD"],
            "predicted": ["CN", "CN", "AD", "AD", "AD"],
            "prob_CN": [0.6, 0.9, 0.2, 0.1, 0.3],
            "prob_AD": [0.4, 0.1, 0.8, 0.9, 0.7],
        },
        index=[10, 11, 12, 13, 14],
    )
    chosen = select_cases(table, ["CN", "AD"], per_class=1)
    assert chosen["subject_id"].tolist() == ["b", "c", "d"]
    assert chosen.index.tolist() == [11, 12, 13]  # rows of the image array are kept
    assert len(select_cases(table, ["CN", "AD"], per_class=2)) == 5


def test_explain_cases_reads_the_settings(fakes) -> None:
    from pipeline.evaluate.explain import explain_cases

    images = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    cases = pd.DataFrame(
        {"subject_id": ["b"], "session_id": [""], "label": ["AD"], "predicted": ["MCI"],
         "prob_CN": [0.2], "prob_MCI": [0.5], "prob_AD": [0.3]},
        index=[2],
    )  # fmt: skip
    models = [build_model(fakes.conv_net()).eval()]
    settings = {"gradcam": False, "occlusion_mode": 0, "occlusion_mask": 8}  # constant 0 patches
    (e,) = explain_cases(models, images, cases, fakes.CLASSES, "channels", settings)
    assert e.gradcam is None and e.occlusion.shape == (32, 32)
    np.testing.assert_array_equal(e.image, images[2])
    assert not e.correct and e.probability == 0.5

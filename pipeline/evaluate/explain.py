"""Where the model looks: Grad-CAM and occlusion sensitivity maps (``monai.visualize``).

Both are computed for the class the ensemble predicts, on the subject's cached slices:

- **Grad-CAM** on a target layer (the last spatial feature map, found automatically, or
  ``evaluate.explain.target_layer``). With ``slice_mode=channels`` the network sees the slices as
  one image, so one map covers all of them; with ``slices`` each slice gets its own map. For a
  k-fold ensemble the per-model maps (each scaled to [0, 1]) are averaged.
- **Occlusion sensitivity**: how much the ensemble's probability of the predicted class drops
  when a patch is hidden (in every slice at once). Positive = the region supports the prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.visualize import GradCAM, OcclusionSensitivity
from torch import nn

from pipeline.apply.table import prob_column
from pipeline.inference import subject_logits_to_probs


@dataclass(frozen=True)
class Explanation:
    """The maps of one explained case, ready to draw."""

    subject_id: str
    session_id: str
    label: str
    predicted: str
    probability: float  # ensemble probability of the predicted class
    image: np.ndarray  # (S, H, W) cached slices
    gradcam: np.ndarray | None  # (S, H, W) in [0, 1]
    occlusion: np.ndarray | None  # (H, W), drop of the predicted class's probability

    @property
    def correct(self) -> bool:
        return self.label == self.predicted


class EnsembleProbabilities(nn.Module):
    """Models and slice mode as one module: ``(B, S, H, W)`` -> mean probabilities ``(B, K)``."""

    def __init__(self, models: Sequence[nn.Module], slice_mode: str) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.slice_mode = slice_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [subject_logits_to_probs(m, x, self.slice_mode) for m in self.models]
        return torch.stack(probs).mean(dim=0)


def model_input(image: torch.Tensor, slice_mode: str) -> torch.Tensor:
    """The network input for one subject ``(S, H, W)``: ``(1, S, H, W)`` or ``(S, 1, H, W)``."""
    return image[None] if slice_mode == "channels" else image[:, None]


def find_target_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the module producing the network's last spatial feature map (Grad-CAM's target).

    Runs ``example`` once and takes the module that finishes last with a ``(B, C, H, W)`` output
    with ``H, W > 1``: the final block of a CNN (``layer4`` of a ResNet, ``class_layers.relu`` of
    a DenseNet), just before global pooling. Modules called more than once per forward pass are
    skipped (their hooks would mix up calls).
    """
    finished: list[str] = []
    calls: dict[str, int] = {}
    spatial: set[str] = set()
    handles = []

    def hook(name: str):
        def _record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            finished.append(name)
            if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[2:]) > 1:
                spatial.add(name)

        return _record

    for name, module in model.named_modules():
        if name:  # the root's output is the logits
            handles.append(module.register_forward_hook(hook(name)))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example)
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    for name in reversed(finished):
        if name in spatial and calls[name] == 1:
            return name
    raise ValueError(
        f"{type(model).__name__} has no module with a spatial (B, C, H, W) output; "
        "set evaluate.explain.target_layer to a layer name"
    )


def _unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a batch to [0, 1] (high = important); a flat map becomes 0."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(dim=1).values.reshape(-1, *[1] * (maps.ndim - 1))
    span = (flat.max(dim=1).values.reshape(-1, *[1] * (maps.ndim - 1)) - low).clamp_min(1e-12)
    return (maps - low) / span


def gradcam_extractors(models: Sequence[nn.Module], target_layer: str) -> list[GradCAM]:
    """One MONAI Grad-CAM per model (each registers hooks on its model once, so build them once)."""
    for model in models:
        if target_layer not in dict(model.named_modules()):
            raise ValueError(
                f"evaluate.explain.target_layer={target_layer!r} is not a layer of "
                f"{type(model).__name__}"
            )
    return [
        GradCAM(nn_module=m, target_layers=target_layer, postprocessing=_unit_scale) for m in models
    ]


def gradcam_map(
    cams: Sequence[GradCAM], image: torch.Tensor, slice_mode: str, class_idx: int
) -> np.ndarray:
    """Grad-CAM ``(S, H, W)`` in [0, 1] for ``class_idx``, averaged over the models of ``cams``."""
    x = model_input(image, slice_mode)
    maps = [cam(x, class_idx=class_idx).detach()[:, 0] for cam in cams]
    combined = _unit_scale(torch.stack(maps).mean(dim=0))  # (1 or S, H, W)
    return combined.expand(image.shape[0], -1, -1).cpu().numpy().astype(np.float32)


def occlusion_map(
    models: Sequence[nn.Module],
    image: torch.Tensor,
    slice_mode: str,
    class_idx: int,
    mask_size: int = 32,
    overlap: float = 0.5,
    n_batch: int = 32,
    mode: str | float = "gaussian",
) -> np.ndarray:
    """Drop of the ensemble's probability of ``class_idx`` when each region is hidden ``(H, W)``."""
    predictor = EnsembleProbabilities(models, slice_mode).eval()
    x = image[None]  # (1, S, H, W): the subject, every slice occluded at the same place
    occlusion = OcclusionSensitivity(
        nn_module=predictor,
        mask_size=mask_size,
        n_batch=n_batch,
        verbose=False,
        mode=mode,
        overlap=overlap,
        activate=False,  # the predictor already returns probabilities
    )
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI 1.6 indexes tensors with lists internally; torch warns about it on every patch.
        warnings.filterwarnings(
            "ignore", message="Using a non-tuple sequence", category=UserWarning
        )
        base = float(predictor(x)[0, class_idx])
        occluded, _ = occlusion(x)
    return (base - occluded[0, class_idx]).cpu().numpy().astype(np.float32)


def select_cases(table: pd.DataFrame, classes: Sequence[str], per_class: int) -> pd.DataFrame:
    """Up to ``per_class`` right and ``per_class`` wrong cases per true class, most confident first.

    Returns the chosen rows of ``table`` (labelled rows only) in class order, right before wrong.
    """
    chosen = []
    confidence = table[[prob_column(name) for name in classes]].max(axis=1)
    ranked = table.assign(_confidence=confidence)
    for name in classes:
        of_class = ranked[ranked["label"] == name]
        for right in (True, False):
            rows = of_class[(of_class["predicted"] == name) == right]
            rows = rows.sort_values(
                ["_confidence", "subject_id", "session_id"], ascending=[False, True, True]
            )
            chosen.append(rows.head(per_class))
    if not chosen:
        return table.iloc[0:0]
    return pd.concat(chosen).drop(columns="_confidence")


def explain_cases(
    models: Sequence[nn.Module],
    images: np.ndarray,
    cases: pd.DataFrame,
    classes: Sequence[str],
    slice_mode: str,
    settings: dict[str, Any],
    device: torch.device | str = "cpu",
) -> list[Explanation]:
    """Grad-CAM and/or occlusion maps for each row of ``cases`` (its index = row in ``images``)."""
    classes = list(classes)
    device = torch.device(device)
    target_layer = settings.get("target_layer")
    mode = settings.get("occlusion_mode", "gaussian")
    mode = float(mode) if isinstance(mode, int | float) else str(mode)  # MONAI: float = constant
    cams: list[GradCAM] | None = None
    explanations = []
    for row, case in cases.iterrows():
        image = torch.from_numpy(np.array(images[int(row)], dtype=np.float32)).to(device)
        class_idx = classes.index(case["predicted"])
        gradcam = occlusion = None
        if settings.get("gradcam", True):
            if cams is None:
                if target_layer is None:
                    target_layer = find_target_layer(models[0], model_input(image, slice_mode))
                cams = gradcam_extractors(models, target_layer)
            gradcam = gradcam_map(cams, image, slice_mode, class_idx)
        if settings.get("occlusion", True):
            size = min(int(settings.get("occlusion_mask", 32)), *image.shape[1:])
            occlusion = occlusion_map(
                models,
                image,
                slice_mode,
                class_idx,
                mask_size=size,
                overlap=float(settings.get("occlusion_overlap", 0.5)),
                n_batch=int(settings.get("occlusion_batch", 32)),
                mode=mode,
            )
        explanations.append(
            Explanation(
                subject_id=str(case["subject_id"]),
                session_id=str(case["session_id"]),
                label=str(case["label"]),
                predicted=str(case["predicted"]),
                probability=float(case[prob_column(case["predicted"])]),
                image=image.cpu().numpy(),
                gradcam=gradcam,
                occlusion=occlusion,
            )
        )
    return explanations

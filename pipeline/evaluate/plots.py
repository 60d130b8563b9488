"""The report's pictures: confusion matrices, ROC curves, reliability diagram, explanation overlays.

Figures are built with matplotlib's object API (``Figure``, no pyplot state machine), so drawing
needs no GUI backend and never changes the backend of a notebook that imports this module. Every
file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from pipeline.evaluate.explain import Explanation
from pipeline.utils.atomic import atomic_path

DPI = 110
#: Explanation maps: a slice panel about 1.4x the cached image's pixels, not more. Each map is
#: also embedded in report.html, which should stay small enough to mail.
EXPLANATION_DPI = 80


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def plot_confusion_matrix(
    cm: np.ndarray, classes: Sequence[str], path: str | Path, normalized: bool = False
) -> Path:
    """Counts (or row-normalized rates) with true classes as rows, predictions as columns."""
    cm = np.asarray(cm, dtype=np.float64)
    fig = Figure(figsize=(1.4 * len(classes) + 2.2, 1.2 * len(classes) + 1.8))
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay(confusion_matrix=cm, display_labels=list(classes))
    display.plot(
        ax=ax,
        cmap="Blues",
        colorbar=False,
        values_format=".2f" if normalized else ".0f",
        im_kw={"vmin": 0, "vmax": 1} if normalized else None,
    )
    for text, value in zip(display.text_.ravel(), cm.ravel(), strict=True):
        if np.isnan(value):  # a class absent from the cohort has no row to normalize
            text.set_text("n/a")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title("Confusion matrix (row-normalized)" if normalized else "Confusion matrix (counts)")
    return save_figure(fig, path)


def plot_roc_curves(
    y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path
) -> Path:
    """One-vs-rest ROC curve per class; a class without both outcomes is listed as undefined."""
    y_true = np.asarray(y_true)
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.add_subplot()
    for c, name in enumerate(classes):
        positive = y_true == c
        if positive.any() and not positive.all():
            RocCurveDisplay.from_predictions(positive, probs[:, c], name=name, ax=ax)
        else:
            ax.plot(
                [],
                [],
                " ",
                label=f"{name} (AUC undefined: no {'negatives' if positive.all() else 'cases'})",
            )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("Sensitivity (true positive rate)")
    ax.set_title("ROC curves, one class vs the rest")
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def plot_reliability_diagram(table: pd.DataFrame, ece: float, path: str | Path) -> Path:
    """Accuracy against confidence per bin, with the case count per bin underneath."""
    fig = Figure(figsize=(5.2, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = table["bin_upper"] - table["bin_lower"]
    centres = table["bin_lower"] + width / 2
    filled = table["count"] > 0
    top.bar(
        centres[filled],
        table["accuracy"][filled],
        width=width[filled],
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="Accuracy",
    )
    top.plot(
        centres[filled], table["confidence"][filled], "o", color="tab:red", label="Mean confidence"
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="Perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("Accuracy")
    top.set_title(f"Reliability diagram (ECE = {ece:.3f})")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centres, table["count"], width=width, color="grey", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("Confidence (probability of the predicted class)")
    bottom.set_ylabel("Cases")
    return save_figure(fig, path)


def plot_explanation(explanation: Explanation, path: str | Path) -> Path:
    """Rows: the slices, Grad-CAM over them, occlusion sensitivity over them; one column a slice."""
    e = explanation
    rows = [("Slice", None)]
    if e.gradcam is not None:
        rows.append(("Grad-CAM", e.gradcam))
    if e.occlusion is not None:
        rows.append(("Occlusion", np.broadcast_to(e.occlusion, e.image.shape)))
    n_slices = e.image.shape[0]
    fig = Figure(figsize=(2.3 * n_slices + 0.6, 2.3 * len(rows) + 0.6))
    axes = np.asarray(fig.subplots(len(rows), n_slices, squeeze=False))
    limit = float(np.abs(e.occlusion).max()) if e.occlusion is not None else 0.0
    limit = limit if limit > 0 else 1.0
    for r, (title, overlay) in enumerate(rows):
        for s in range(n_slices):
            ax = axes[r, s]
            ax.imshow(e.image[s], cmap="gray")
            # Opacity follows the map's strength, so unimportant regions show the plain slice.
            if title == "Grad-CAM":
                alpha = 0.65 * np.clip(overlay[s], 0, 1)
                ax.imshow(overlay[s], cmap="jet", alpha=alpha, vmin=0, vmax=1)
            elif title == "Occlusion":
                alpha = 0.75 * np.clip(np.abs(overlay[s]) / limit, 0, 1)
                ax.imshow(overlay[s], cmap="RdBu_r", alpha=alpha, vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(title)
            if r == 0:
                ax.set_title(f"slice {s + 1}", fontsize="small")
    session = f" / {e.session_id}" if e.session_id else ""
    verdict = "right" if e.correct else "wrong"
    fig.suptitle(
        f"{e.subject_id}{session}: true {e.label}, predicted {e.predicted} "
        f"(p = {e.probability:.2f}, {verdict})",
        fontsize="medium",
    )
    return save_figure(fig, path, dpi=EXPLANATION_DPI)

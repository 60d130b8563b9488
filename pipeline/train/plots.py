"""The training-curves picture of a run folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from pipeline.utils.atomic import atomic_path

PANELS = (("loss", "cross-entropy loss"), ("bal_acc", "balanced accuracy"))


def plot_training_curves(
    history: pd.DataFrame, path: str | Path, best_epochs: dict[int, int] | None = None
) -> Path:
    """Loss and balanced accuracy per epoch (train and validation; one line per fold).

    ``history`` is the per-epoch metrics table (``epoch``, ``train_loss``, ``val_loss``,
    ``train_bal_acc``, ``val_bal_acc``, optional ``fold``). ``best_epochs`` marks the epoch each
    fold's checkpoint was taken from.
    """
    frame = history.copy()
    if "fold" not in frame.columns:
        frame["fold"] = 0
    folds = sorted(frame["fold"].unique())
    # The object API (no pyplot): no global backend switch, so notebooks keep inline figures.
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, len(PANELS))
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, title) in zip(axes, PANELS, strict=True):
        for i, fold in enumerate(folds):
            part = frame[frame["fold"] == fold].sort_values("epoch")
            suffix = f" (fold {fold})" if len(folds) > 1 else ""
            colour = colours[i % len(colours)]
            for split, style in (("train", "--"), ("val", "-")):
                column = f"{split}_{metric}"
                if column in part:
                    ax.plot(
                        part["epoch"], part[column], style, color=colour, label=f"{split}{suffix}"
                    )
            best = (best_epochs or {}).get(int(fold))
            column = f"val_{metric}"
            if best is not None and column in part and (part["epoch"] == best).any():
                value = part.loc[part["epoch"] == best, column].iloc[0]
                ax.plot([best], [value], "o", color=colour, markersize=7)
        ax.set_title(title + (" (dot: saved model)" if best_epochs else ""))
        ax.set_xlabel("epoch (0-based)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return Path(path)

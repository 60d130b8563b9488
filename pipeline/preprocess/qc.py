"""The QC montage: a sample of subjects, their chosen slices side by side, for a person to check.

Each panel is titled with the subject id (from the folder name, never a header value), the
session and label, and the slice's position along the stack axis in mm, so a glance shows that
mid-brain slices were taken and that the crop and intensity scaling look right.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.utils.atomic import atomic_path


def sample_rows(manifest: pd.DataFrame, n: int) -> list[int]:
    """Up to ``n`` row indices, spread over the labels (round-robin) and evenly within each.

    Deterministic: the same manifest gives the same sample.
    """
    if n <= 0 or manifest.empty:
        return []
    groups = [rows.to_numpy() for _, rows in manifest.groupby("label", sort=True)["row"]]
    per_group = [
        g[np.unique(np.linspace(0, len(g) - 1, min(len(g), n)).round().astype(int))] for g in groups
    ]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(g) for g in per_group):
        chosen.extend(int(g[depth]) for g in per_group if depth < len(g))
        depth += 1
    return sorted(chosen[:n])


def write_qc_montage(
    path: str | Path, images: np.ndarray, manifest: pd.DataFrame, n_samples: int = 12
) -> Path | None:
    """Draw the montage of up to ``n_samples`` subjects into ``path`` (PNG, written atomically).

    Returns ``None`` (and writes nothing) when there is nothing to show.
    """
    rows = sample_rows(manifest, n_samples)
    if not rows:
        return None
    n_slices = images.shape[1]
    per_line = 2 if len(rows) > 6 else 1  # two subjects side by side keeps the page compact
    lines = -(-len(rows) // per_line)
    fig, axes = plt.subplots(
        lines,
        n_slices * per_line,
        figsize=(1.9 * n_slices * per_line, 2.1 * lines),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.axis("off")
    by_row = manifest.set_index("row")
    for k, row in enumerate(rows):
        meta = by_row.loc[row]
        positions = str(meta["slice_positions_mm"]).split(";")
        name = str(meta["subject_id"]) + (f" {meta['session_id']}" if meta["session_id"] else "")
        label = f" [{meta['label']}]" if meta["label"] else ""
        pixels = np.asarray(images[row])
        # One display window per subject, so a chain that z-scores still shows well.
        low, high = np.percentile(pixels, [0.5, 99.5])
        for s in range(n_slices):
            ax = axes[k // per_line, (k % per_line) * n_slices + s]
            ax.imshow(pixels[s], cmap="gray", vmin=low, vmax=max(high, low + 1e-6))
            position = f"{float(positions[s]):.1f} mm" if s < len(positions) else ""
            title = f"{name}{label}\n{position}" if s == 0 else f"\n{position}"
            ax.set_title(title, fontsize=7, loc="left" if s == 0 else "center")
    fig.suptitle(f"QC: chosen slices of {len(rows)} of {len(manifest)} subjects", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)

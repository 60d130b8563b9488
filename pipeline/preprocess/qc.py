"""The QC montage: a sample of subjects, their chosen slices side by side, for a person to check.

Each panel is titled with the subject id (from the folder name, never a header value), the
session and label (and "resliced from sagittal" for a volume acquired in another plane), and the
slice's position along the stack axis in mm, so a glance shows that mid-brain slices were taken
and that the crop and intensity scaling look right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pipeline.utils.atomic import atomic_path


def sample_rows(manifest: pd.DataFrame, n: int) -> list[int]:
    """Up to ``n`` row indices, as even over the labels as they allow, spread within each label.

    Deterministic: the same manifest gives the same sample.
    """
    if n <= 0 or manifest.empty:
        return []
    groups = [rows.to_numpy() for _, rows in manifest.groupby("label", sort=True)["row"]]
    quota = -(-n // len(groups))
    picks = [g[np.linspace(0, len(g) - 1, min(len(g), quota)).round().astype(int)] for g in groups]
    chosen = [int(g[depth]) for depth in range(quota) for g in picks if depth < len(g)][:n]
    if len(chosen) < n:  # small classes left room: fill it evenly from the other rows
        rest = np.setdiff1d(manifest["row"].to_numpy(), chosen)
        more = n - len(chosen)
        chosen += [
            int(r)
            for r in rest[np.linspace(0, len(rest) - 1, min(more, len(rest))).round().astype(int)]
        ]
    return sorted(set(chosen))


def montage(images: np.ndarray, rows: list[int], per_line: int, gap: int = 4) -> np.ndarray:
    """Tile the slices of ``rows`` into one 2-D picture, ``per_line`` subjects to a line.

    Each subject gets its own display window (0.5th to 99.5th percentile mapped to 0..1), so a
    chain that z-scores instead of scaling to 0..1 still shows well. Gaps are mid-grey.
    """
    n_slices, height, width = images.shape[1:]
    lines = -(-len(rows) // per_line)
    tile_w = n_slices * (width + gap)
    canvas = np.full((lines * (height + gap), per_line * tile_w + gap), 0.5, np.float32)
    for k, row in enumerate(rows):
        pixels = np.asarray(images[row], dtype=np.float32)
        low, high = np.percentile(pixels, [0.5, 99.5])
        pixels = np.clip((pixels - low) / max(high - low, 1e-6), 0.0, 1.0)
        top, left = (k // per_line) * (height + gap), (k % per_line) * tile_w + gap
        for s in range(n_slices):
            x = left + s * (width + gap)
            canvas[top : top + height, x : x + width] = pixels[s]
    return canvas


def _is_true(value: object) -> bool:
    """A manifest flag, whether a bool (in memory) or text (read back from CSV)."""
    return str(value).strip().lower() in ("true", "1")


#: Vertical room for the title above the tiles, in pixels.
TITLE_PX = 22


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels (a fixed bitmap font where FreeType is absent)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def write_qc_montage(
    path: str | Path, images: np.ndarray, manifest: pd.DataFrame, n_samples: int = 12
) -> Path | None:
    """Draw the montage of up to ``n_samples`` subjects into ``path`` (PNG, written atomically).

    The slices are shown at their own pixel size (no resampling) with text drawn straight onto
    the picture by Pillow: a few milliseconds, so it is redrawn on every run at no cost.
    Returns ``None`` (and writes nothing) when there is nothing to show.
    """
    rows = sample_rows(manifest, n_samples)
    if not rows:
        return None
    n_slices, height, width = images.shape[1:]
    per_line = 2 if len(rows) > 6 else 1  # two subjects side by side keeps the page compact
    gap = max(4, height // 8)
    canvas = montage(images, rows, per_line, gap)
    picture = Image.new("L", (canvas.shape[1], canvas.shape[0] + TITLE_PX), 255)
    picture.paste(Image.fromarray((canvas * 255).round().astype(np.uint8)), (0, TITLE_PX))
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = _font(max(9, min(14, width // 10)))
    by_row = manifest.set_index("row")

    def label(x: int, y: int, text: str, anchor: str) -> None:
        box = draw.textbbox((x, y), text, font=font, anchor=anchor)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(0, 0, 0))
        draw.text((x, y), text, font=font, fill=(255, 255, 0), anchor=anchor)

    for k, row in enumerate(rows):
        meta = by_row.loc[row]
        top = TITLE_PX + (k // per_line) * (height + gap)
        left = (k % per_line) * n_slices * (width + gap) + gap
        name = str(meta["subject_id"]) + (f" {meta['session_id']}" if meta["session_id"] else "")
        tag = f" [{meta['label']}]" if meta["label"] else ""
        if _is_true(meta.get("resliced", False)):
            tag += f" resliced from {meta.get('acquired_plane') or 'another plane'}"
        label(left + 2, top + 2, f"{name}{tag}", "la")
        for s, position in enumerate(str(meta["slice_positions_mm"]).split(";")[:n_slices]):
            label(left + s * (width + gap) + 2, top + height - 2, f"{float(position):.1f} mm", "ld")
    draw.text(
        (gap, TITLE_PX // 2),
        f"QC: chosen slices of {len(rows)} of {len(manifest)} subjects",
        font=_font(13),
        fill=(0, 0, 0),
        anchor="lm",
    )
    with atomic_path(path, suffix=".png") as tmp:
        # Fast PNG compression: the montage is redrawn on every run; size matters less.
        picture.save(tmp, format="PNG", compress_level=1)
    return Path(path)

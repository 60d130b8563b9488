"""What a run folder, cache or checkpoint records about how it was made."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from pipeline.utils.atomic import write_text

#: Distributions whose versions change results; recorded in caches, checkpoints and reports.
KEY_PACKAGES = (
    "adstage-pipeline",
    "torch",
    "monai",
    "pydicom",
    "pylibjpeg",
    "nibabel",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "hydra-core",
    "omegaconf",
    "lightning",
    "nilearn",
)


def package_versions() -> dict[str, str]:
    """Python and key package versions, as plain strings (safe for ``weights_only`` pickles)."""
    versions = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def pip_freeze() -> str:
    """The full ``pip freeze`` of the running interpreter (falls back to importlib metadata)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze", "--all"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        if out.strip():
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    dists = sorted(
        (d.metadata["Name"] or "?", d.version) for d in importlib.metadata.distributions()
    )
    return "".join(f"{name}=={version}\n" for name, version in dists)


def write_pip_freeze(folder: str | Path) -> Path:
    """Write ``pip_freeze.txt`` into ``folder`` and return its path."""
    path = Path(folder) / "pip_freeze.txt"
    write_text(path, pip_freeze())
    return path

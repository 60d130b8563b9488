"""What a run folder, cache or checkpoint records about how it was made."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

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
    """The installed distributions as ``pip freeze`` lists them: ``name==version``, and
    ``-e <location>`` for an editable install.

    Read from the installed metadata (PEP 610's ``direct_url.json`` for editables) instead of
    running ``pip freeze``: the same list in a tenth of the time, which is most of the time a
    "nothing to do" run takes.
    """
    lines = []
    for dist in importlib.metadata.distributions():
        metadata = dist.metadata  # parsed on each access: once here, not for name and version
        name = metadata["Name"] or "?"
        lines.append(_editable_location(dist, metadata) or f"{name}=={metadata['Version']}")
    return "".join(f"{line}\n" for line in sorted(set(lines), key=str.lower))


def _editable_location(dist: importlib.metadata.Distribution, metadata: Any) -> str | None:
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if not direct.get("dir_info", {}).get("editable"):
        return None
    url = str(direct.get("url", ""))
    return f"-e {url.removeprefix('file://')}  # {metadata['Name']}=={metadata['Version']}"


def write_pip_freeze(folder: str | Path) -> Path:
    """Write ``pip_freeze.txt`` into ``folder`` and return its path."""
    path = Path(folder) / "pip_freeze.txt"
    write_text(path, pip_freeze())
    return path

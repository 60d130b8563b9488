"""Import MONAI without the optional packages that only MONAI features we never use need.

Why: ``import monai`` (and so the import of any MONAI submodule) runs MONAI's ``__init__``,
which imports every submodule, and they import their optional dependencies eagerly through
``monai.utils.optional_import``:

- matplotlib's ``pyplot`` (``monai.utils.jupyter_utils``, ``monai.visualize``);
- ``scipy.signal`` and ``scipy.sparse`` (``monai.data.ultrasound_confidence_map``,
  ``monai.networks.nets.dints``), ``scipy.optimize`` and ``scipy.spatial`` (the panoptic
  quality and surface distance metrics);
- scikit-learn's metrics (``monai.metrics.embedding_collapse``);
- tensorboard (``monai.visualize.img2tensorboard``, the tensorboard handlers), requests
  (``monai.apps`` downloads), jsonschema (``monai.bundle`` validation) and psutil
  (``monai.config.deviceconfig``).

MONAI is built to run without them (each is an optional extra: the features that need one
raise when used), and the pipeline's MONAI code (transforms, networks, Grad-CAM, occlusion
sensitivity) uses none of those features; ``scipy.ndimage``, which MONAI's transforms use,
stays.
:func:`import_monai` therefore imports MONAI as if these packages were not installed, unless
they are imported already. Measured with ``python -X importtime`` on the 2-core machine, after
torch: ``import monai.transforms`` 4.27 s, 2.29 s without the first three; 1.87-2.01 s
against 1.15-1.16 s without the others too (two runs each, numpy, pandas and pydicom loaded
first, as in the preprocess command).

Afterwards the packages import normally (the report's figures use matplotlib, the metrics
scikit-learn); only MONAI's own handles to them stay empty. A MONAI transform put in a
recipe that needs one of them (``UltrasoundConfidenceMapTransform`` needs ``scipy.signal``)
says that the package is missing: set ``PIPELINE_MONAI_EXTRAS=1`` to import MONAI whole.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: What MONAI imports only for features the pipeline never uses (see the module docstring).
OPTIONAL_PACKAGES = (
    "matplotlib",
    "scipy.signal",
    "scipy.sparse",
    "scipy.optimize",
    "scipy.spatial",
    "sklearn",
    "tensorboard",
    "requests",
    "jsonschema",
    "psutil",
)
#: Set to 1 to import MONAI with all of its optional packages.
EXTRAS_VARIABLE = "PIPELINE_MONAI_EXTRAS"


class _Hidden(importlib.abc.MetaPathFinder):
    """An import finder that answers "not installed" for ``names`` and their submodules."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.prefixes = tuple(f"{name}." for name in names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname in self.names or fullname.startswith(self.prefixes):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def import_monai() -> ModuleType:
    """``monai``, imported (once) without :data:`OPTIONAL_PACKAGES` that are not loaded yet.

    Example:
        >>> monai = import_monai()
        >>> import matplotlib  # imports as usual afterwards
    """
    if "monai" in sys.modules:
        return sys.modules["monai"]
    hidden = [name for name in OPTIONAL_PACKAGES if name not in sys.modules]
    if os.environ.get(EXTRAS_VARIABLE, "") == "1" or not hidden:
        return importlib.import_module("monai")
    finder = _Hidden(hidden)
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("monai")
    finally:
        sys.meta_path.remove(finder)

"""MONAI imported without its optional packages: they stay out, then import as usual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.utils.monai_import import EXTRAS_VARIABLE

_PROBE = """
import importlib, importlib.util, json, sys
from pipeline.utils.monai_import import OPTIONAL_PACKAGES, import_monai
import_monai()
loaded = [name for name in OPTIONAL_PACKAGES if name in sys.modules]
import torch
from monai.transforms import CropForeground, Resize
image = torch.zeros(1, 20, 20); image[0, 5:15, 6:12] = 1.0
shape = list(CropForeground()(Resize((40, 40))(image)).shape)
import matplotlib.pyplot, scipy.signal, sklearn.metrics  # importable as usual afterwards
installed = [name for name in OPTIONAL_PACKAGES if importlib.util.find_spec(name)]
for name in installed:
    importlib.import_module(name)
print(json.dumps({"loaded": loaded, "installed": installed, "shape": shape}))
"""


def _probe(repo_root: Path, extras: bool) -> dict:
    env = {key: value for key, value in os.environ.items() if key != EXTRAS_VARIABLE}
    if extras:
        env[EXTRAS_VARIABLE] = "1"
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("extras", [False, True])
def test_monai_without_its_optional_packages(repo_root: Path, extras: bool) -> None:
    probe = _probe(repo_root, extras)
    assert probe["shape"] == [1, 20, 12]  # MONAI's transforms work either way
    # Whole, MONAI loads every one that is installed (some come only with the dev extra).
    assert probe["loaded"] == (probe["installed"] if extras else [])
    assert {"matplotlib", "scipy.signal", "sklearn"} <= set(probe["installed"])

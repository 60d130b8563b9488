"""Strict JSON for metrics and summaries: NaN and infinity are written as ``null``."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from pipeline.utils.atomic import write_text


def jsonable(obj: Any) -> Any:
    """Plain JSON types, with NaN/inf written as ``null`` (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def write_strict_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` atomically as strict JSON (``allow_nan=False`` proves no NaN slipped in)."""
    write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")

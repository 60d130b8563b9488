"""Where the Hydra configs live, and the parts of a config that define a preprocessed cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: ``conf/`` at the repository root; every entry point passes it to ``@hydra.main``.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

#: Top-level config keys that change the pixels in a cache. Their hash names the cache's recipe:
#: train refuses a cache built with another recipe, evaluate rebuilds the held-out cohort with
#: exactly the recipe stored in the checkpoint.
RECIPE_KEYS = ("slices", "series", "normalize")


def compose(
    config_name: str, overrides: Sequence[str] = (), *, return_hydra_config: bool = False
) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as ``python -m`` would see it
    (for tests, benchmarks and notebooks; the entry points use ``@hydra.main``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(
            config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )


def to_container(cfg: Any) -> Any:
    """Resolve interpolations and return plain dicts/lists (JSON- and pickle-safe)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def recipe_config(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The preprocessing recipe (``slices``, ``series``, ``normalize``) as a plain dict."""
    missing = [k for k in RECIPE_KEYS if k not in cfg]
    if missing:
        raise KeyError(f"config lacks preprocessing section(s) {missing}")
    # Select before resolving: a composed config may carry unresolvable Hydra runtime keys.
    return {k: to_container(cfg[k]) for k in RECIPE_KEYS}


def config_hash(obj: Any, length: int = 16) -> str:
    """A stable short SHA-256 of a config (key order does not matter)."""
    text = json.dumps(to_container(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def recipe_hash(cfg: DictConfig | dict[str, Any]) -> str:
    """Hash of :func:`recipe_config`; stored in caches and checkpoints."""
    return config_hash(recipe_config(cfg))

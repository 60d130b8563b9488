"""Scale-out: split a cohort's subjects into shards that run as independent jobs.

``preprocess.shard=i/n`` processes every n-th subject (sorted by id) from the i-th and stops
after saving their per-subject results (:mod:`pipeline.preprocess.results`) and a small record
``shards/shard-i-of-n.json``; ``preprocess.merge=true`` then assembles the cache from all the
results. Round-robin keeps the shards balanced and their union is every subject. The jobs only
share the cache folder (a shared filesystem on a cluster); Hydra's submitit launcher runs them
on SLURM (``pip install hydra-submitit-launcher``)::

    python -m pipeline.preprocess -m hydra/launcher=submitit_slurm \\
        preprocess.shard=0/4,1/4,2/4,3/4 data.root=... data.labels=... data.name=...
    python -m pipeline.preprocess preprocess.merge=true data.root=... data.labels=... data.name=...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pipeline.utils.atomic import write_json

SHARDS_DIR = "shards"

T = TypeVar("T")


def parse_shard(value: Any) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` or ``""`` -> ``None``.

    Raises ``ValueError`` with the accepted form otherwise.
    """
    if value is None or str(value).strip() in ("", "null", "None"):
        return None
    try:
        i, n = (int(part) for part in str(value).split("/"))
    except ValueError:
        raise ValueError(
            f"preprocess.shard={value!r}: expected 'i/n', e.g. 0/4 for the first of four"
        ) from None
    if not 0 <= i < n:
        raise ValueError(f"preprocess.shard={value!r}: need 0 <= i < n")
    return i, n


def select_shard(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """Every n-th item from the i-th (all of them when ``shard`` is ``None``)."""
    if shard is None:
        return list(items)
    i, n = shard
    return list(items[i::n])


def write_shard_record(
    cohort_dir: Path,
    shard: tuple[int, int],
    processed: Iterable[str],
    timings: Mapping[str, float],
) -> Path:
    """``shards/shard-i-of-n.json``: which subjects this job processed, and how long it took."""
    i, n = shard
    path = Path(cohort_dir) / SHARDS_DIR / f"shard-{i}-of-{n}.json"
    write_json(
        path,
        {
            "shard": f"{i}/{n}",
            "processed": sorted(processed),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return path

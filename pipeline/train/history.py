"""A fold's per-epoch table, read from the CSV logger ``conf/logger`` configures.

Lightning's ``CSVLogger`` writes ``<fold>/logs/csv/version_<n>/metrics.csv``: one row per
``log_metrics`` call (training and validation metrics of one epoch arrive in separate rows), a
new ``version_<n>`` for each (re)start of the fold. :func:`epoch_table` turns those into one row
per epoch, the later version winning for an epoch both hold (a resumed run repeats the epoch the
interruption cut short), with the metric names written for a CSV header (``val/bal_acc`` ->
``val_bal_acc``). Rows without an epoch (a logger call outside a training epoch) are dropped.

:func:`selection` reads the same table to say how optimistic the kept epoch's validation score
is (summary.json's ``selection``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from lightning.pytorch.loggers import CSVLogger, Logger

from pipeline.train.errors import TrainError

METRICS_FILE = "metrics.csv"


def csv_logger_dir(loggers: list[Logger]) -> Path:
    """The folder holding the CSV logger's ``version_<n>`` folders."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.root_dir)
    raise TrainError(
        "conf/logger has no lightning.pytorch.loggers.CSVLogger; training reads its per-epoch "
        "metrics (metrics.csv, the best epoch's validation scores) from it."
    )


def _version(path: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", path.parent.name)
    return int(match.group(1)) if match else -1


def column_name(metric: str) -> str:
    """``val/bal_acc`` -> ``val_bal_acc``: the metric as a CSV column."""
    return metric.replace("/", "_").replace("-", "_").lower()


def epoch_table(logger_dir: Path) -> pd.DataFrame:
    """One row per epoch (``epoch`` first, then the metrics in name order)."""
    frames = []
    for path in sorted(logger_dir.glob(f"version_*/{METRICS_FILE}"), key=_version):
        rows = pd.read_csv(path)
        if "epoch" not in rows or rows.empty:
            continue
        rows = rows.dropna(subset=["epoch"]).drop(columns=["step"], errors="ignore")
        # one row per epoch: the first value of each metric among the epoch's rows
        frames.append(rows.groupby("epoch", sort=True).first().reset_index())
    if not frames:
        return pd.DataFrame(columns=["epoch"])
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates("epoch", keep="last").sort_values("epoch")
    table["epoch"] = table["epoch"].astype(int)
    table = table.rename(columns=column_name)
    metrics = sorted(c for c in table.columns if c != "epoch")
    return table[["epoch", *metrics]].reset_index(drop=True)


@dataclass(frozen=True)
class Selection:
    """How the kept epoch's validation score compares with what its rule should expect.

    Attributes:
        kept_epoch: the epoch whose weights the fold keeps.
        selected: the validation score of that epoch (what a log would report).
        expected: the validation curve smoothed around that epoch (a centred running mean over
            ``window`` epochs, shorter at the ends): what the same rule should expect, with the
            epoch-to-epoch noise averaged out.
        optimism: ``selected - expected``. A best-epoch pick keeps the epoch whose noise was
            most favourable, so its optimism is positive; keeping the last epoch has none on
            average.
        best_epoch, best: the epoch with the highest validation score, and that score (what a
            best-epoch pick would have kept and claimed).
        best_expected: the smoothed curve at ``best_epoch`` (``best - best_expected`` is the
            optimism a best-epoch pick would have had).
    """

    kept_epoch: int
    selected: float
    expected: float
    optimism: float
    best_epoch: int
    best: float
    best_expected: float

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def selection(
    history: pd.DataFrame, kept_epoch: int, metric: str = "val_bal_acc", window: int = 5
) -> Selection | None:
    """The :class:`Selection` of ``kept_epoch`` on ``history``'s ``metric`` column (``None``
    when the fold logged no such metric)."""
    if metric not in history or history[metric].notna().sum() == 0:
        return None
    curve = history[["epoch", metric]].dropna().set_index("epoch")[metric].sort_index()
    smoothed = curve.rolling(window, center=True, min_periods=1).mean()
    kept = kept_epoch if kept_epoch in curve.index else int(curve.index[-1])
    selected, expected = float(curve.loc[kept]), float(smoothed.loc[kept])
    best_epoch = int(curve.idxmax())
    return Selection(
        kept_epoch=int(kept),
        selected=selected,
        expected=expected,
        optimism=selected - expected,
        best_epoch=best_epoch,
        best=float(curve.max()),
        best_expected=float(smoothed.loc[best_epoch]),
    )

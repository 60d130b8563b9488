"""The train stage: ``python -m pipeline.train data.name=NAME`` (configured by ``conf/train.yaml``).

Reads the preprocessed cohort ``${paths.cache}/${data.name}`` (refusing one built with another
preprocessing recipe), splits it by subject with label stratification, trains one model per fold
with Lightning, and writes ``<run>/checkpoints/best.pt`` (:mod:`pipeline.checkpoint`) plus the
split, per-epoch metrics, curves and provenance into the run folder (:mod:`pipeline.train.run`).

From Python (notebooks, tests)::

    from pipeline.train import train
    result = train(cfg, run_dir)   # cfg composed from conf/train.yaml
    result.checkpoint              # Path to best.pt
"""

from pipeline.train.errors import NonFiniteLossError, SplitError, TrainError

__all__ = ["NonFiniteLossError", "SplitError", "TrainError", "TrainResult", "train"]


def __getattr__(name: str) -> object:
    # ``train`` and ``TrainResult`` load on first use (PEP 562): ``python -m pipeline.train``
    # imports this package first, and its --help must not wait for torch and Lightning.
    if name in ("train", "TrainResult"):
        from pipeline.train import run

        return getattr(run, name)
    raise AttributeError(f"module 'pipeline.train' has no attribute {name!r}")

"""Every primary config in conf/ composes and resolves, every option of every config group it
uses composes, and the overrides the README, the issues and the config headers document work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.config import CONF_DIR, compose, recipe_hash

CONF = Path(CONF_DIR)
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))

#: What a primary config needs on the command line before it resolves (its ``???`` values).
REQUIRED = {
    "evaluate": ["checkpoint=runs/train/x/checkpoints/best.pt"],
    "predict": [
        "checkpoint=runs/train/x/checkpoints/best.pt",
        "data.root=/scans",
        "data.name=clinic",
    ],
}

#: What a group option needs before it resolves.
OPTION_REQUIRED = {("data", "custom"): ["data.root=/scans", "data.name=mine"]}

#: Documented overrides (README / issues / config headers), per primary config.
DOCUMENTED = {
    "preprocess": [
        ["data.root=/scans/adni", "data.labels=/scans/labels.csv", "data.name=adni"],
        ["data=custom", "data.root=/scans/adni", "data.labels=/scans/labels.tsv", "data.name=adni"],
        ["data=demo_heldout"],
        ["slices.expected=null"],
        ["slices.mode=brain", "slices.count=3", "slices.offset=1"],
        ["normalize.size=96"],
        ["data.classes=[CN,AD]"],
        ["paths.cache=/tmp/cache"],
        ["preprocess.workers=4", "preprocess.shard=0/4"],
        ["preprocess.merge=true"],
    ],
    "train": [
        ["data.name=adni"],
        ["data=demo_dev", "split.folds=5"],
        ["data.slice_mode=slices"],
        ["train.shuffle_labels=true"],
        ["train.resume=true", "hydra.run.dir=runs/train/mine"],
        ["seed=7"],
    ],
    "evaluate": [
        ["data.root=/scans/b", "data.labels=/scans/b.csv", "data.name=site_b"],
        ["data=demo_heldout"],
    ],
    "predict": [[]],
    "synthetic": [
        ["cohorts.dev.n_subjects=60", "force=true"],
        ["anatomy.ventricle_mm_per_severity=6"],
        ["cohorts.heldout.site.noise_sd=[0.05,0.08]"],
        ["synthetic_site@cohorts.heldout.site=site_a", "cohorts.heldout.site.id_prefix=C"],
        ["out=/tmp/demo", "seed=3", "workers=1", "progress=false"],
    ],
}


def resolved(cfg: DictConfig) -> dict:
    """Every value resolved (fails on a broken interpolation or a value still ``???``)."""
    body = {k: v for k, v in cfg.items() if k != "hydra"}
    return OmegaConf.to_container(OmegaConf.create(body), resolve=True, throw_on_missing=True)


def group_options(name: str) -> list[tuple[str, str]]:
    """``(group[@package], option)`` for every option of every group in ``name``'s defaults."""
    defaults = yaml.safe_load((CONF / f"{name}.yaml").read_text(encoding="utf-8"))["defaults"]
    pairs = []
    for entry in defaults:
        if not isinstance(entry, dict):
            continue  # _self_
        (key,) = entry
        group = key.split("@")[0]
        if group == "hydra":
            continue
        pairs += [(key, p.stem) for p in sorted((CONF / group).glob("*.yaml"))]
    return pairs


def test_every_entry_point_has_a_primary_config() -> None:
    assert {"preprocess", "train", "evaluate", "predict", "synthetic"} <= set(PRIMARY)


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes_and_resolves(name: str) -> None:
    cfg = compose(name, REQUIRED.get(name, []), return_hydra_config=True)
    resolved(cfg)
    # Hydra never changes the working directory, and runs go under paths.runs
    assert cfg.hydra.job.chdir is False
    assert OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"].startswith("${paths.runs}")


@pytest.mark.parametrize(
    ("name", "key", "option"),
    [(name, key, option) for name in PRIMARY for key, option in group_options(name)],
)
def test_every_group_option_composes(name: str, key: str, option: str) -> None:
    extra = OPTION_REQUIRED.get((key, option), [])
    cfg = compose(name, [*REQUIRED.get(name, []), f"{key}={option}", *extra])
    resolved(cfg)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [(name, o) for name, sets in DOCUMENTED.items() for o in sets],
    ids=lambda v: v if isinstance(v, str) else " ".join(v) or "defaults",
)
def test_documented_overrides_apply(name: str, overrides: list[str]) -> None:
    cfg = compose(name, [*REQUIRED.get(name, []), *overrides])
    values = resolved(cfg)
    for override in overrides:
        key, value = override.split("=", 1)
        if "@" in key or "/" in key or key in ("data", "hydra.run.dir"):
            continue  # a group choice, checked by composing
        node = OmegaConf.select(OmegaConf.create(values), key)
        expected = yaml.safe_load(value)
        if isinstance(expected, str) and not isinstance(node, str):
            expected = yaml.safe_load(f"[{value}]")[0]
        assert node == expected, f"{override} did not land: {key} = {node!r}"


def test_custom_data_group_takes_the_cli_contract() -> None:
    cfg = compose(
        "preprocess", ["data=custom", "data.root=/r", "data.labels=/l.csv", "data.name=mine"]
    )
    assert (cfg.data.root, cfg.data.labels, cfg.data.name) == ("/r", "/l.csv", "mine")
    assert list(cfg.data.classes) == ["CN", "MCI", "AD"]
    assert cfg.slices.expected == 44
    assert cfg.paths.cache == "cache"


def test_demo_data_configs_point_where_the_generator_writes() -> None:
    from pipeline.synthetic import LABELS
    from pipeline.synthetic.cohort import DICOM_DIR

    synthetic = compose("synthetic", [])
    out = Path(synthetic.out)
    for data, cohort in (("demo_dev", "dev"), ("demo_heldout", "heldout")):
        cfg = compose("preprocess", [f"data={data}"])
        assert cohort in synthetic.cohorts
        assert Path(cfg.data.root) == out / cohort / DICOM_DIR
        assert Path(cfg.data.labels) == out / cohort / LABELS
        assert cfg.data.name == data


def test_preprocessing_recipe_is_shared_by_the_stages_that_carry_it() -> None:
    hashes = {
        name: recipe_hash(compose(name, REQUIRED.get(name, []))) for name in ("preprocess", "train")
    }
    assert len(set(hashes.values())) == 1, hashes
    changed = recipe_hash(compose("preprocess", ["normalize.size=96"]))
    assert changed != hashes["preprocess"]


@pytest.mark.parametrize("overrides", DOCUMENTED["synthetic"] + [[]], ids=str)
def test_synthetic_config_builds_valid_cohort_plans(overrides: list[str]) -> None:
    from pipeline.synthetic.__main__ import plans_from_config

    plans = plans_from_config(compose("synthetic", overrides))
    assert [p.out_dir.name for p in plans] == ["dev", "heldout"]
    assert len({p.site.id_prefix for p in plans}) == 2
    dev = plans[0]
    assert (
        sum(1 for t in dev.tasks if not t.defect)
        == compose("synthetic", overrides).cohorts.dev.n_subjects
    )


def test_synthetic_refuses_colliding_subject_ids() -> None:
    from pipeline.synthetic.__main__ import plans_from_config

    cfg = compose("synthetic", ["synthetic_site@cohorts.heldout.site=site_a"])
    with pytest.raises(ValueError, match="id prefix"):
        plans_from_config(cfg)

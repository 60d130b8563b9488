"""``python -m pipeline.synthetic``: write the demo cohorts (conf/synthetic.yaml).

A cohort whose folder already holds a stamp with the same settings hash is left alone, so a
rerun is instant; ``force=true`` regenerates it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import CONF_DIR, to_container
from pipeline.synthetic.cohort import CohortPlan, plan_cohort, read_stamp, run_plans

log = logging.getLogger(__name__)


def plans_from_config(cfg: DictConfig) -> list[CohortPlan]:
    """One :class:`CohortPlan` per entry of ``cfg.cohorts``."""
    plans = []
    for name, cohort in cfg.cohorts.items():
        plans.append(
            plan_cohort(
                Path(cfg.out) / str(name),
                n_subjects=int(cohort.n_subjects),
                seed=int(cfg.seed),
                site=to_container(cohort.site),
                class_mix=to_container(cohort.class_mix),
                anatomy=to_container(cfg.anatomy),
                defects=to_container(cohort.get("defects") or {}),
            )
        )
    prefixes = [p.site.id_prefix for p in plans]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(
            f"cohorts share a subject id prefix ({prefixes}); give each site its own "
            "id_prefix so subject ids never collide"
        )
    return plans


def summary(plans: list[CohortPlan]) -> str:
    """A small table: subjects per class and deliberate defects of each cohort."""
    classes = sorted(
        {c for p in plans for c in p.class_mix},
        key=lambda c: (
            list(plans[0].model.classes).index(c) if c in plans[0].model.classes else 99,
            c,
        ),
    )
    head = f"{'cohort':<10}{'site':<6}{'usable':>8}" + "".join(f"{c:>6}" for c in classes)
    lines = [head + f"{'defects':>9}  folder"]
    for plan in plans:
        stamp = read_stamp(plan.out_dir) or {}
        counts = stamp.get("counts", {})
        per_class = counts.get("per_class", {})
        lines.append(
            f"{plan.out_dir.name:<10}{plan.site.name:<6}{counts.get('usable', 0):>8}"
            + "".join(f"{per_class.get(c, 0):>6}" for c in classes)
            + f"{sum(plan.defects.values()):>9}  {plan.out_dir}"
        )
    return "\n".join(lines)


def out_of_date(plans: list[CohortPlan], force: bool = False) -> list[CohortPlan]:
    """The plans whose folder is missing or was made with other settings (all with ``force``)."""
    todo = []
    for plan in plans:
        stamp = read_stamp(plan.out_dir)
        if not force and stamp and stamp.get("settings_hash") == plan.settings_hash():
            log.info(
                "%s is up to date (settings %s); force=true regenerates it",
                plan.out_dir,
                plan.settings_hash(),
            )
        else:
            todo.append(plan)
    return todo


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="synthetic")
def main(cfg: DictConfig) -> None:
    """Generate every configured cohort that is missing or out of date."""
    plans = plans_from_config(cfg)
    todo = out_of_date(plans, force=bool(cfg.force))
    started = time.perf_counter()
    if todo:
        n = sum(len(p.tasks) for p in todo)
        log.info(
            "generating %d cohort(s), %d subjects, with %d worker(s)", len(todo), n, cfg.workers
        )
        run_plans(todo, workers=int(cfg.workers), progress=bool(cfg.progress))
    print(summary(plans))
    print(f"made {len(todo)} of {len(plans)} cohort(s) in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

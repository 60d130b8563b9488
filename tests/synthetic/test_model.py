"""The generative model: overlapping severities, an age confound, and a disease signal that is
real and spatial (ventricles in the middle, cortex and sulci at the rim)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.synthetic import anatomy_model, site_profile
from pipeline.synthetic.atlas import load_atlas
from pipeline.synthetic.geometry import axial_stack
from pipeline.synthetic.render import render
from pipeline.synthetic.subject import Person, draw_anatomy, draw_person


def test_severity_is_ordered_but_overlapping_and_age_differs() -> None:
    model = anatomy_model()
    rng = np.random.default_rng(0)
    draws = {c: [draw_person(rng, c, model) for _ in range(1500)] for c in model.classes}
    severity = {c: np.array([p.severity for p in d]) for c, d in draws.items()}
    ages = {c: np.array([p.age for p in d]) for c, d in draws.items()}
    assert severity["CN"].mean() < severity["MCI"].mean() < severity["AD"].mean()
    # ambiguous subjects exist: an MCI milder than many CN, an AD milder than many MCI
    assert (severity["MCI"] < np.percentile(severity["CN"], 90)).mean() > 0.05
    assert (severity["AD"] < np.percentile(severity["MCI"], 90)).mean() > 0.05
    assert all(((s >= 0) & (s <= 1)).all() for s in severity.values())
    assert ages["AD"].mean() > ages["CN"].mean()
    assert all(((a >= 55) & (a <= 92)).all() for a in ages.values())
    males = np.mean([p.sex == "M" for d in draws.values() for p in d])
    assert 0.45 < males < 0.55


def test_age_and_disease_both_enlarge_the_ventricles() -> None:
    atlas, model, site = load_atlas(), anatomy_model(), site_profile("A")
    rng = np.random.default_rng(1)

    def mean_expansion(age: float, severity: float) -> float:
        person = Person(sex="F", age=age, severity=severity)
        return float(
            np.mean(
                [
                    draw_anatomy(rng, person, model, site, atlas).ventricle_expansion_mm
                    for _ in range(300)
                ]
            )
        )

    young, old = mean_expansion(62, 0.3), mean_expansion(84, 0.3)  # clear of the clip at 0
    assert old - young == pytest.approx(model.ventricle_mm_per_decade * 2.2, abs=0.3)
    assert mean_expansion(73, 0.8) - mean_expansion(73, 0.0) == pytest.approx(
        model.ventricle_mm_per_severity * 0.8, abs=0.4
    )


def _dark_fractions(anatomy) -> tuple[float, float]:
    """Fraction of CSF-dark pixels in the central and the outer part of the brain, on three
    axial slices through the lateral ventricles."""
    atlas = load_atlas()
    centre = anatomy.pose.template_to_patient(np.array([0.0, -17.0, 15.0]))
    geo = axial_stack(
        centre=centre, n_slices=3, spacing_mm=4.0, thickness_mm=4.0, rows=96, cols=96, pixel_mm=2.0
    )
    images = render(atlas, anatomy, geo).images
    dark = images < 0.5 * (anatomy.contrast_csf + anatomy.contrast_gm)
    rr, cc = np.mgrid[:96, :96]
    radius = np.hypot(rr - 47.5, cc - 47.5)
    central = (radius < 18)[None].repeat(3, 0)  # within 36 mm of the centre: the ventricles
    ring = ((radius > 25) & (radius < 38))[None].repeat(3, 0)  # the cortex, inside the skull
    return float(dark[central].mean()), float(dark[ring].mean())


def test_disease_signal_is_spatial() -> None:
    atlas, model, site = load_atlas(), anatomy_model(), site_profile("A")
    person = Person(sex="M", age=72.0, severity=0.0)
    base = draw_anatomy(np.random.default_rng(2), person, model, site, atlas)
    base = dataclasses.replace(
        base, ventricle_expansion_mm=0.0, cortical_thinning_mm=0.0, regional_thinning_mm=0.0
    )
    c0, r0 = _dark_fractions(base)
    c1, _ = _dark_fractions(dataclasses.replace(base, ventricle_expansion_mm=4.0))
    c2, r2 = _dark_fractions(dataclasses.replace(base, ventricle_expansion_mm=8.0))
    # bigger ventricles: more CSF in the middle, the rim barely changes
    assert c0 < c1 < c2
    assert c2 - c0 > 0.05
    assert abs(r2 - r0) < 0.5 * (c2 - c0)
    # thinner cortex and wider sulci: more CSF at the rim
    ct, rt = _dark_fractions(
        dataclasses.replace(base, cortical_thinning_mm=1.5, regional_thinning_mm=1.5)
    )
    assert rt - r0 > 0.03
    assert rt - r0 > ct - c0

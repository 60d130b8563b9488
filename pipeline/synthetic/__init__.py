"""The demo cohort generator: realistic synthetic brain-MRI DICOM cohorts for CN / MCI / AD.

``python -m pipeline.synthetic`` writes the two default cohorts (conf/synthetic.yaml); tests and
notebooks call :func:`generate_cohort`::

    from pipeline.synthetic import generate_cohort

    root = generate_cohort(tmp_path / "cohort", n_subjects=12, seed=0)          # site A
    root = generate_cohort(tmp_path / "b", n_subjects=6, seed=0, site="B",
                           matrix=[[96, 96]], p_localizer=1.0)                      # any knob

Each cohort folder holds ``dicom/<subject_id>/...`` (the raw export), ``labels.csv``,
``truth.csv`` (what the generator knows: severities, pose, slice geometry, the made-up header
identities; for tests only, the pipeline never reads it) and ``cohort.json`` (settings hash and
counts). data/README.md describes the generative model and its measured difficulty.

Modules, one job each: :mod:`~pipeline.synthetic.atlas` (template-derived volumes),
:mod:`~pipeline.synthetic.profiles` (the knobs), :mod:`~pipeline.synthetic.subject` (one
subject's draw), :mod:`~pipeline.synthetic.geometry` (pose and slice planes),
:mod:`~pipeline.synthetic.render` (anatomy on the slice planes), :mod:`~pipeline.synthetic.scanner`
(bias, noise, stored values), :mod:`~pipeline.synthetic.export` (DICOM files and folder mess),
:mod:`~pipeline.synthetic.cohort` (ids, labels, pool, crash-safe folder).
"""

from pipeline.synthetic.cohort import (
    DEFAULT_CLASS_MIX,
    LABELS,
    STAMP,
    TRUTH,
    class_counts,
    generate_cohort,
    read_stamp,
)
from pipeline.synthetic.profiles import AnatomyModel, SiteProfile, anatomy_model, site_profile
from pipeline.synthetic.subject import DEFECTS, identity_columns

__all__ = [
    "DEFAULT_CLASS_MIX",
    "DEFECTS",
    "LABELS",
    "STAMP",
    "TRUTH",
    "AnatomyModel",
    "SiteProfile",
    "anatomy_model",
    "class_counts",
    "generate_cohort",
    "identity_columns",
    "read_stamp",
    "site_profile",
]

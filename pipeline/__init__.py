"""From raw brain MRI (DICOM or NIfTI) to a validated CN / MCI / AD stage classifier.

Stages, each a Hydra app configured from ``conf/``:

- ``python -m pipeline.synthetic``  -- the built-in demo cohorts (``synthetic/``)
- ``python -m pipeline.preprocess`` -- DICOM/NIfTI -> cached mid-brain slices (``preprocess/``)
- ``python -m pipeline.train``      -- cached slices -> checkpoint (``train/``)
- ``python -m pipeline.evaluate``   -- checkpoint + held-out cohort -> report (``evaluate/``)
- ``python -m pipeline.predict``    -- checkpoint + unlabeled cohort -> predictions (``predict.py``)

The files that pass between stages are defined in :mod:`pipeline.cache` (preprocessed cohort)
and :mod:`pipeline.checkpoint` (trained model).
"""

__version__ = "0.1.0"

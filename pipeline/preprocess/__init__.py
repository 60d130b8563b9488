"""Preprocess stage: DICOM/NIfTI cohort -> cached, normalized mid-brain slices.

``python -m pipeline.preprocess`` (:mod:`.__main__`) and :func:`pipeline.preprocess.run.
preprocess_cohort` (used by evaluate/predict too). The modules, in the order data meets them:

- reading (files -> :class:`~.stack.SliceStack` of the output plane): :mod:`.ingest` and its
  helpers (:mod:`.discover`, :mod:`.dicom_headers`, :mod:`.sessions`, :mod:`.options`), one
  reader per format behind :mod:`.volume` (:mod:`.dicom_volume` with :mod:`.pixels`,
  :mod:`.nifti`), then the format-free :mod:`.series_select` and :mod:`.geometry`;
- :mod:`.slices`: which slices to keep; :mod:`.transforms`: the MONAI normalization chain;
- :mod:`.subject`: one subject end to end, in a worker; :mod:`.results`: its saved result;
- :mod:`.run`: the cohort (labels, workers, shards, incremental reruns); :mod:`.writer` and
  :mod:`.qc`: the cache files and the QC montage.
"""

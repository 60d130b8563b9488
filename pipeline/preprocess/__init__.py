"""Preprocess stage: DICOM/NIfTI cohort -> cached, normalized mid-brain slices."""

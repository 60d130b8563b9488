"""Evaluate stage: a checkpoint on a held-out cohort -> metrics, pictures and a report page.

``python -m pipeline.evaluate`` (conf/evaluate.yaml) runs :func:`pipeline.evaluate.run.evaluate`.
Modules: ``cohort`` (cache with the checkpoint's recipe, leakage guard), ``predictions``,
``metrics``, ``bootstrap``, ``calibration``, ``explain`` (Grad-CAM, occlusion), ``plots``,
``outputs`` (JSON/CSV), ``report`` (HTML, console), ``run`` (the whole flow).
"""

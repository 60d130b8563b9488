"""Registration libraries for ``slices.mode=template``, measured on subjects whose pose is known.

    .venv/bin/python benchmarks/bench_template.py [--subjects 6]

Writes demo-generator subjects (site A's 2D axial series, and the same heads as 1.5 mm
sagittal 3D volumes), reads each stack through the preprocess stage, registers the MNI152
template to it with every candidate that is importable, and compares where each puts the
template's brain centre with where the generator put it (``HeadPose.position``: the template
point it maps there; the generator's smooth random deformation adds a few mm either way):

- SimpleITK (the project's choice, :mod:`pipeline.preprocess.template`);
- dipy ``AffineRegistration`` (mutual information, the same two levels);
- ANTsPy ``registration(type_of_transform="Affine")``.

dipy and ANTsPy are not project dependencies (ANTsPy's release pins older numpy and scipy);
install them elsewhere and put them on ``PYTHONPATH`` to include them. Prints seconds per
subject and the error in mm (3D distance, and along the slice normal, which is what picks
the slice).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.preprocess.geometry import LPS_TO_RAS  # noqa: E402
from pipeline.preprocess.ingest import IngestContext, scan_subject  # noqa: E402
from pipeline.preprocess.template import DEFAULT_POINT_MM, register, to_sitk  # noqa: E402

SAGITTAL = {
    "acquisition": "sagittal_3d",
    "n_slices": 110,
    "slice_spacing_mm": [1.5, 1.5],
    "thickness_fraction": [1.0, 1.0],
    "matrix": [[160, 160]],
    "fov_mm": [240.0, 240.0],
    "stack_offset_mm": 30.0,
}
SERIES = {"modality": "MR", "description_exclude": "(?i)localizer", "plane": "axial"}


def simpleitk(volume: np.ndarray, affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    transform = register(to_sitk(volume, affine, order="kji"))
    lps = LPS_TO_RAS[:3, :3] @ point
    return LPS_TO_RAS[:3, :3] @ np.asarray(transform.TransformPoint(lps.tolist()))


def dipy(volume: np.ndarray, affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    from dipy.align.imaffine import (
        AffineRegistration,
        MutualInformationMetric,
        transform_centers_of_mass,
    )
    from dipy.align.transforms import AffineTransform3D
    from nilearn.datasets import load_mni152_template

    template = load_mni152_template(resolution=2)
    static, static_affine = np.asarray(template.get_fdata(), np.float32), template.affine
    start = transform_centers_of_mass(static, static_affine, volume, affine)
    method = AffineRegistration(
        MutualInformationMetric(32, 0.25),
        level_iters=[100, 50],
        sigmas=[2.0, 1.0],
        factors=[4, 2],
        verbosity=0,
    )
    found = method.optimize(
        static,
        volume,
        AffineTransform3D(),
        None,
        static_affine,
        affine,
        starting_affine=start.affine,
    )
    return (found.affine @ np.r_[point, 1.0])[:3]


def antspy(volume: np.ndarray, affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    import ants
    from nilearn.datasets import load_mni152_template

    def image(array: np.ndarray, ras: np.ndarray, order: str):
        reference = to_sitk(array, ras, order)
        data = array if order == "ijk" else np.transpose(array, (2, 1, 0))
        direction = np.asarray(reference.GetDirection()).reshape(3, 3)
        return ants.from_numpy(
            np.ascontiguousarray(data, np.float32),
            origin=list(reference.GetOrigin()),
            spacing=list(reference.GetSpacing()),
            direction=direction,
        )

    template = load_mni152_template(resolution=2)
    fixed = image(np.asarray(template.get_fdata(), np.float32), template.affine, "ijk")
    found = ants.registration(
        fixed=fixed,
        moving=image(volume, affine, "kji"),
        type_of_transform="Affine",
        aff_metric="mattes",
    )
    transform = ants.read_transform(found["fwdtransforms"][0])
    lps = LPS_TO_RAS[:3, :3] @ point
    return LPS_TO_RAS[:3, :3] @ np.asarray(transform.apply_to_point(lps.tolist()))


#: name -> (module to import, function)
CANDIDATES = {
    "SimpleITK": ("SimpleITK", simpleitk),
    "dipy": ("dipy", dipy),
    "ANTsPy": ("ants", antspy),
}


def cohort_stacks(root: Path, truth) -> list[tuple]:
    context = IngestContext.from_recipe(root, {"series": SERIES, "slices": {"expected": None}})
    out = []
    for row in truth.itertuples():
        [stack] = scan_subject(row.subject_id, root / row.subject_id, context).stacks
        centre_lps = np.array([float(v) for v in row.translation_mm.split(";")])
        out.append((stack, LPS_TO_RAS[:3, :3] @ centre_lps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    args = parser.parse_args()
    import pandas as pd

    from pipeline.synthetic import generate_cohort

    point = np.asarray(DEFAULT_POINT_MM)
    usable = {}
    for name, (module, fn) in CANDIDATES.items():
        try:
            importlib.import_module(module)
            usable[name] = fn
        except ImportError:
            print(f"{name}: not importable, skipped")
    print(
        "| input | library | seconds per subject | error mm (3D), mean / max | along the "
        "normal, mean / max |"
    )
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, settings in (("2D axial, 44 x 4 mm", {}), ("3D sagittal, 1.5 mm", SAGITTAL)):
            out = generate_cohort(
                Path(tmp) / kind.split(",")[0].replace(" ", "_"),
                n_subjects=args.subjects,
                seed=3,
                workers=2,
                p_localizer=0.0,
                **settings,
            )
            stacks = cohort_stacks(out / "dicom", pd.read_csv(out / "truth.csv"))
            for name, fn in usable.items():
                errors, along, start = [], [], time.perf_counter()
                for stack, truth in stacks:
                    found = fn(stack.read(range(stack.n_slices)), stack.affine, point)
                    normal = np.cross(stack.affine[:3, 1], stack.affine[:3, 2])
                    normal /= np.linalg.norm(normal)
                    errors.append(float(np.linalg.norm(found - truth)))
                    along.append(abs(float((found - truth) @ normal)))
                seconds = (time.perf_counter() - start) / len(stacks)
                print(
                    f"| {kind} | {name} | {seconds:.2f} | {np.mean(errors):.1f} / "
                    f"{np.max(errors):.1f} | {np.mean(along):.1f} / {np.max(along):.1f} |"
                )


if __name__ == "__main__":
    main()

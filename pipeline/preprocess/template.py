"""``slices.mode=template``: the slices through a fixed point of the MNI152 template.

The middle of a stack is not the middle of the brain when the field of view is placed
otherwise (a sagittal FOV takes in the neck; an axial slab is placed by hand). This mode finds,
for every subject, the slice through the same anatomical point: nilearn's bundled MNI152
template (2 mm, offline) is registered to the subject's volume with an affine transform, the
point ``slices.template_point_mm`` (MNI mm, RAS) is carried into the subject, and the block of
``slices.count`` slices is centred on the slice through it (fractional index along the stack,
like ``slices.mode=brain``). The subject's own slices are kept: nothing is resampled, so a 2D
and a 3D input are handled alike (a 2D stack registers on its thick slices).

Registration: SimpleITK (ITK's ``ImageRegistrationMethod``), a centre-of-mass initialisation,
then a 12-parameter affine transform by Mattes mutual information at two coarse levels
(shrink 4 and 2, i.e. 8 and 4 mm, after binning the subject to about 2 mm), one thread and a
fixed sampling seed, so a rerun gives the same slices.

Why SimpleITK: ``benchmarks/bench_template.py`` measured it against dipy's
``AffineRegistration`` and ANTsPy's ``registration(type_of_transform="Affine")`` on demo
subjects whose true head pose is known, in one run (3 subjects each, a loaded 2-core machine;
error of the template's brain centre along the slice normal, mean / max):

=====================  ===========  ==================  ==================
input                  library      seconds / subject   error (mm)
=====================  ===========  ==================  ==================
2D axial, 44 x 4 mm    SimpleITK    4.4                 0.8 / 1.8
2D axial, 44 x 4 mm    dipy         23.0                2.8 / 4.3
2D axial, 44 x 4 mm    ANTsPy       8.1                 2.3 / 3.7
3D sagittal, 1.5 mm    SimpleITK    3.9                 0.8 / 1.8
3D sagittal, 1.5 mm    dipy         13.5                3.9 / 4.1
3D sagittal, 1.5 mm    ANTsPy       9.5                 0.9 / 1.8
=====================  ===========  ==================  ==================

SimpleITK is the fastest and at least as accurate, and it is one wheel with no dependency of
its own; ANTsPy's release would downgrade numpy and scipy, and dipy brings a dozen packages
(pydantic, h5py, trx-python...).

Off by default; it decodes every slice of the stack and costs seconds per subject.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from pipeline.preprocess.geometry import LPS_TO_RAS

#: Default ``slices.template_point_mm``: the centre of the MNI152 brain mask's bounding box
#: (the point the demo generator centres its stacks on).
DEFAULT_POINT_MM = (0.0, -17.0, 5.0)

#: Registration levels: shrink factors and smoothing sigmas (voxels of the 2 mm template).
SHRINK = (4, 2)
SMOOTH = (2.0, 1.0)
SAMPLING = 0.1
ITERATIONS = 100
SEED = 20261202
#: The subject is first binned to about the template's voxel size (mm), averaging voxels.
WORKING_MM = 2.0


class TemplateError(RuntimeError):
    """The registration to the template failed (the message says why)."""


@functools.lru_cache(maxsize=1)
def _template() -> object:
    """nilearn's MNI152 T1 template (2 mm) as a SimpleITK image in LPS."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=2)
    return to_sitk(np.asarray(image.get_fdata(), dtype=np.float32), image.affine, order="ijk")


def to_sitk(array: np.ndarray, affine_ras: np.ndarray, order: str) -> object:
    """A SimpleITK image of ``array`` placed by its RAS ``affine``.

    ``order="ijk"``: array axes are the affine's (NIfTI); ``"kji"``: reversed (a stack's
    ``(slices, rows, cols)`` read with the stack affine, whose columns are slice, row, col).
    ITK wants an orthonormal direction: a sheared affine is replaced by its nearest rotation.
    """
    import SimpleITK as sitk

    lps = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)  # the same flip both ways
    # SimpleITK's index (x, y, z) runs along the array's last axis first.
    itk_axes = [2, 1, 0] if order == "kji" else [0, 1, 2]
    data = array if order == "kji" else np.transpose(array, (2, 1, 0))
    matrix = lps[:3, :3][:, itk_axes]
    spacing = np.linalg.norm(matrix, axis=0)
    u, _, vt = np.linalg.svd(matrix / spacing)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=np.float32))
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in (u @ vt).ravel()])
    return image


def register(subject: object) -> object:
    """The affine transform taking template points (LPS) to ``subject`` points (LPS)."""
    import SimpleITK as sitk

    fixed = _template()
    factors = [max(1, round(WORKING_MM / s)) for s in subject.GetSpacing()]  # type: ignore[attr-defined]
    subject = sitk.BinShrink(subject, factors)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # reproducible sampling and sums
    try:
        initial = sitk.CenteredTransformInitializer(
            fixed,
            subject,
            sitk.AffineTransform(3),
            sitk.CenteredTransformInitializerFilter.MOMENTS,
        )
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(SAMPLING, SEED)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-3, numberOfIterations=ITERATIONS, relaxationFactor=0.6
        )
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel(list(SHRINK))
        method.SetSmoothingSigmasPerLevel(list(SMOOTH))
        method.SetInitialTransform(initial, inPlace=False)
        return method.Execute(fixed, subject)
    except RuntimeError as err:  # ITK raises RuntimeError with its own message
        raise TemplateError(f"registration to the MNI152 template failed: {err}") from err
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def template_center_index(
    volume: np.ndarray,
    affine: np.ndarray,
    positions_mm: np.ndarray,
    point_mm: Sequence[float] = DEFAULT_POINT_MM,
) -> float:
    """Fractional stack index of the slice through MNI ``point_mm`` in this subject.

    ``volume`` is the whole stack ``(slices, rows, cols)``, ``affine`` its RAS affine (the
    stack's), ``positions_mm`` its slice positions along the slice normal.
    """
    transform = register(to_sitk(volume, affine, order="kji"))
    point_lps = LPS_TO_RAS[:3, :3] @ np.asarray(point_mm, dtype=np.float64)
    subject_ras = LPS_TO_RAS[:3, :3] @ np.asarray(transform.TransformPoint(point_lps.tolist()))
    normal = np.cross(affine[:3, 1], affine[:3, 2])
    normal /= np.linalg.norm(normal)
    origins = affine[:3, 3] + np.arange(len(positions_mm))[:, None] * affine[:3, 0]
    if np.mean(np.diff(origins @ normal)) < 0:
        normal = -normal  # the sign that makes positions increase, as the stack's do
    position = float(subject_ras @ normal - origins[0] @ normal + positions_mm[0])
    return float(np.interp(position, positions_mm, np.arange(len(positions_mm))))

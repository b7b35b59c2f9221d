"""Kept for imports written before the curvature registry: everything lives in :mod:`influence_core.curvatures`."""

from influence_core.curvatures import Curvature, build_curvature  # noqa: F401
from influence_core.curvatures.diagonal import DiagonalCurvature  # noqa: F401
from influence_core.curvatures.exact import ExactCurvature, exact_hessian  # noqa: F401
from influence_core.curvatures.identity import IdentityCurvature  # noqa: F401
from influence_core.curvatures.kronecker import KroneckerCurvature  # noqa: F401
from influence_core.curvatures.laplace_fit import as_sequential, fit_laplace  # noqa: F401

"""The ``em-bbse`` and ``kdey`` solvers of llmsurgeon: maximum-likelihood mixture estimates.

``em-bbse`` runs EM on calibrated posteriors; ``kdey`` runs it on kernel
density estimates of the posteriors of each domain.
"""

from __future__ import annotations

from .calibration import BCTSCalibrator
from .kde import KDEyOptions, KDEySolver, kde_log_densities, kde_mixture
from .solver import EMOptions, EMSolver, em_priors

__all__ = [
    "BCTSCalibrator",
    "EMOptions",
    "EMSolver",
    "KDEyOptions",
    "KDEySolver",
    "em_priors",
    "kde_log_densities",
    "kde_mixture",
]

"""The ``em-bbse`` solver of llmsurgeon: maximum likelihood by EM on calibrated posteriors."""

from __future__ import annotations

from .calibration import BCTSCalibrator
from .solver import EMOptions, EMSolver, em_priors

__all__ = ["BCTSCalibrator", "EMOptions", "EMSolver", "em_priors"]

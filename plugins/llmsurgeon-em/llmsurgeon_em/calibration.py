"""Bias-corrected temperature scaling (BCTS) of predicted probabilities.

The implementation lives in :mod:`llmsurgeon_core.calibrators`, which every
classifier's calibration shares; this module re-exports it for the solver.
"""

from __future__ import annotations

from llmsurgeon_core.calibrators import BCTSCalibrator, softmax

__all__ = ["BCTSCalibrator", "softmax"]

"""The ``cvxpy`` solver of llmsurgeon: weighted, regularized least squares on the simplex."""

from __future__ import annotations

from .solver import CvxpyOptions, CvxpySolver

__all__ = ["CvxpyOptions", "CvxpySolver"]

"""The ``nnls`` solver of llmsurgeon: least squares on the probability simplex."""

from __future__ import annotations

from .solver import NNLSOptions, NNLSSolver, solve_simplex_least_squares

__all__ = ["NNLSOptions", "NNLSSolver", "solve_simplex_least_squares"]

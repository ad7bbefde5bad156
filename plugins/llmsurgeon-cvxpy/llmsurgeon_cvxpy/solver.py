"""Least squares on the probability simplex, solved as a convex program with CVXPY.

The solver minimizes

    ||W (C.T @ pi - p_bar)||_2**2 + ridge * ||pi - pi_0||_2**2

subject to ``pi >= 0`` and ``sum(pi) == 1``. ``W`` is the identity, or with
``weighting: covariance`` the pseudo-inverse square root of the covariance of
``C.T @ pi - p_bar``, which makes the loss a generalized least-squares one.
``pi_0`` is the uniform mixture, the reference priors or a given mixture.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmsurgeon_core import ComponentOptions, ReferencePredictions, Solver, SolveResult
from llmsurgeon_core.solving import check_solver_inputs

__all__ = ["CvxpyOptions", "CvxpySolver", "residual_covariance"]

logger = logging.getLogger(__name__)

# Statuses after which the solution is used; any other status raises.
ACCEPTED_STATUSES = ("optimal", "optimal_inaccurate")


class CvxpyOptions(ComponentOptions):
    """Options of the ``cvxpy`` solver."""

    solver: str | None = Field(
        None,
        description=(
            "Name of an installed CVXPY solver, for example CLARABEL, OSQP, SCS or ECOS "
            "(case-insensitive). The default is CLARABEL when it is installed, otherwise "
            "CVXPY's own choice."
        ),
    )
    weighting: Literal["none", "covariance"] = Field(
        "none",
        description=(
            "'covariance' weights the residual by the pseudo-inverse square root of its "
            "covariance: that of p_bar from the samples and, when reference predictions are "
            "given, that of C.T @ pi from the reference chunks, evaluated at an unweighted "
            "first solve. 'none' is ordinary least squares."
        ),
    )
    ridge: float = Field(
        0.0,
        ge=0,
        description=(
            "Weight of the Tikhonov term ||pi - pi_0||**2 that pulls the estimate towards "
            "ridge_target. 0 turns it off."
        ),
    )
    ridge_target: Literal["uniform", "reference"] | list[float] = Field(
        "uniform",
        description=(
            "pi_0 of the ridge term: 'uniform', 'reference' (the reference corpus's domain "
            "shares) or a list of K non-negative shares, which is normalized to sum to 1."
        ),
    )
    covariance_floor: float = Field(
        1e-9,
        gt=0,
        lt=1,
        description=(
            "Eigenvalues of the residual covariance below this fraction of the largest are "
            "treated as zero when it is inverted."
        ),
    )
    solver_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments passed to cvxpy.Problem.solve, such as tolerances.",
    )


class CvxpySolver(Solver):
    """Mixture estimate by weighted, regularized least squares on the simplex."""

    Options = CvxpyOptions

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Estimate the mixture from ``p_bar = sample_probs.mean(axis=0)``.

        Raises:
            ValueError: if an array has the wrong shape or a non-finite value,
                ``ridge_target`` has the wrong length, or the solver named in
                the options is not installed.
            RuntimeError: if the CVXPY solver ends with a status other than
                optimal or optimal_inaccurate.
        """
        confusion, sample_probs, reference_priors, reference = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference
        )
        options: CvxpyOptions = self.options  # type: ignore[assignment]
        k = confusion.shape[0]
        p_bar = sample_probs.mean(axis=0)
        target = self._ridge_target(reference_priors, k)
        solver_name = _pick_solver(options.solver)

        weight = np.eye(k)
        mixture, info = _solve_program(confusion, p_bar, weight, options, target, solver_name)
        if options.weighting == "covariance":
            covariance = residual_covariance(sample_probs, mixture, reference)
            weight = inverse_square_root(covariance, options.covariance_floor)
            mixture, info = _solve_program(confusion, p_bar, weight, options, target, solver_name)
        info.update(
            weighting=options.weighting,
            ridge=options.ridge,
            residual_norm=float(np.linalg.norm(confusion.T @ mixture - p_bar)),
        )
        return SolveResult(mixture=mixture, info=info)

    def _ridge_target(self, reference_priors: np.ndarray, k: int) -> np.ndarray:
        target = self.options.ridge_target  # type: ignore[attr-defined]
        if target == "uniform":
            return np.full(k, 1.0 / k)
        if target == "reference":
            vector = np.clip(reference_priors, 0.0, None)
        else:
            vector = np.asarray(target, dtype=float)
            if vector.shape != (k,) or np.any(vector < 0) or not np.isfinite(vector).all():
                raise ValueError(
                    f"ridge_target must list {k} non-negative shares, one per domain, "
                    f"got {list(target)}"
                )
        total = vector.sum()
        return vector / total if total > 0 else np.full(k, 1.0 / k)


def _pick_solver(requested: str | None) -> str | None:
    import cvxpy

    installed = cvxpy.installed_solvers()
    if requested is None:
        return "CLARABEL" if "CLARABEL" in installed else None
    name = requested.upper()
    if name not in installed:
        raise ValueError(
            f"CVXPY solver {requested!r} is not installed; installed: {', '.join(installed)}"
        )
    return name


def _solve_program(
    confusion: np.ndarray,
    p_bar: np.ndarray,
    weight: np.ndarray,
    options: CvxpyOptions,
    target: np.ndarray,
    solver_name: str | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    import cvxpy

    k = confusion.shape[0]
    pi = cvxpy.Variable(k, nonneg=True)
    loss = cvxpy.sum_squares(weight @ (confusion.T @ pi - p_bar))
    if options.ridge > 0:
        loss = loss + options.ridge * cvxpy.sum_squares(pi - target)
    problem = cvxpy.Problem(cvxpy.Minimize(loss), [cvxpy.sum(pi) == 1])
    try:
        problem.solve(solver=solver_name, **options.solver_options)
    except cvxpy.error.SolverError as error:
        raise RuntimeError(
            f"CVXPY solver {solver_name or 'default'} failed ({error}); choose another "
            "one with the solver option"
        ) from error
    if problem.status not in ACCEPTED_STATUSES or pi.value is None:
        raise RuntimeError(
            f"CVXPY solver {problem.solver_stats.solver_name} ended with status "
            f"{problem.status!r}; choose another one with the solver option"
        )
    if problem.status != "optimal":
        logger.warning("CVXPY solver ended with status %r", problem.status)
    mixture = np.clip(np.asarray(pi.value, dtype=float), 0.0, None)
    total = mixture.sum()
    mixture = mixture / total if total > 0 else np.full(k, 1.0 / k)
    stats = problem.solver_stats
    info = {
        "status": problem.status,
        "cvxpy_solver": stats.solver_name,
        "iterations": stats.num_iters,
        "objective": float(problem.value),
    }
    return mixture, info


def residual_covariance(
    sample_probs: np.ndarray, mixture: np.ndarray, reference: ReferencePredictions | None
) -> np.ndarray:
    """Return the ``(K, K)`` covariance of ``C.T @ pi - p_bar`` at ``pi = mixture``.

    ``p_bar`` is a mean of ``n`` samples, so its covariance is the samples'
    covariance over ``n``. Row ``i`` of ``C`` is a mean of the ``N_i``
    reference chunks of domain ``i``, so ``C.T @ pi`` adds
    ``sum_i pi_i**2 cov_i / N_i``. The two are independent.
    """
    n, k = sample_probs.shape
    covariance = np.cov(sample_probs, rowvar=False).reshape(k, k) / n if n > 1 else np.zeros((k, k))
    if reference is not None:
        for i in range(k):
            rows = reference.probs[reference.labels == i]
            if len(rows) > 1 and mixture[i] > 0:
                covariance += mixture[i] ** 2 * np.cov(rows, rowvar=False).reshape(k, k) / len(rows)
    return covariance


def inverse_square_root(covariance: np.ndarray, floor: float) -> np.ndarray:
    """Return the pseudo-inverse square root of a symmetric PSD matrix.

    Eigenvalues below ``floor`` times the largest are dropped. Rows of
    probabilities sum to 1, so the covariance always has the ones vector in
    its null space, and the dropped direction carries no residual. A zero
    covariance (one sample, no reference) returns the identity.
    """
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    largest = values.max(initial=0.0)
    if largest <= 0:
        return np.eye(len(covariance))
    keep = values > floor * largest
    return (vectors[:, keep] / np.sqrt(values[keep])) @ vectors[:, keep].T

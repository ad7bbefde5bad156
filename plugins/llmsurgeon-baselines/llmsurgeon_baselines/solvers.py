"""Baseline mixture solvers from the quantification and label-shift literature.

- ``cc``, classify and count: the share of samples whose top class is each domain.
- ``pcc``, probabilistic classify and count: ``p_bar`` itself.
- ``bbse``, black-box shift estimation with hard predictions (Lipton, Wang and
  Smola, "Detecting and Correcting for Label Shift with Black Box Predictors",
  ICML 2018): solve ``C_hard.T @ pi = mu`` with ``mu`` the share of samples
  predicted as each domain, then project onto the simplex.
- ``rlls``, regularized learning under label shift (Azizzadenesheli et al.,
  ICLR 2019): a ridge-regularized solve for the importance weights ``w = 1 +
  theta``, shrunk towards the reference priors.

CC and PCC ignore the confusion matrix, so they are biased whenever the
classifier errs; they are here to be compared against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from llmsurgeon_core import ComponentOptions, ReferencePredictions, Solver, SolveResult
from llmsurgeon_core.solving import check_solver_inputs, hard_confusion, project_to_simplex

__all__ = [
    "ClassifyAndCountSolver",
    "HardBBSESolver",
    "ProbabilisticClassifyAndCountSolver",
    "RLLSSolver",
]


def _predicted_shares(sample_probs: np.ndarray) -> np.ndarray:
    k = sample_probs.shape[1]
    counts = np.bincount(sample_probs.argmax(axis=1), minlength=k)
    return counts / counts.sum()


class ClassifyAndCountSolver(Solver):
    """Classify and count: the share of samples whose top class is each domain."""

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Return the top-class shares; ``confusion`` and the priors are only validated."""
        _, sample_probs, _, _ = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference
        )
        return SolveResult(_predicted_shares(sample_probs), {"method": "classify-and-count"})


class ProbabilisticClassifyAndCountSolver(Solver):
    """Probabilistic classify and count: the mean predicted distribution ``p_bar``."""

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Return ``p_bar`` clipped at zero and renormalized.

        Rows that do not sum to 1 are not renormalized one by one, so the result
        is the simplex point nearest in direction to ``p_bar``.
        """
        _, sample_probs, _, _ = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference
        )
        p_bar = np.clip(sample_probs.mean(axis=0), 0.0, None)
        k = p_bar.size
        mixture = p_bar / p_bar.sum() if p_bar.sum() > 0 else np.full(k, 1.0 / k)
        return SolveResult(mixture, {"method": "probabilistic-classify-and-count"})


class HardBBSESolver(Solver):
    """Black-box shift estimation on hard predictions (Lipton et al. 2018)."""

    requires_reference = True

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Solve ``C_hard.T @ pi = mu`` by minimum-norm least squares, then project.

        ``C_hard`` is built from the top classes of the reference predictions,
        so the soft ``confusion`` is only validated.

        Raises:
            ValueError: if an array has the wrong shape or a non-finite value,
                or ``reference`` is missing.
        """
        _, sample_probs, _, reference = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference, require_reference=True
        )
        k = sample_probs.shape[1]
        matrix = hard_confusion(reference, k)
        shares = _predicted_shares(sample_probs)
        unconstrained, *_ = np.linalg.lstsq(matrix.T, shares, rcond=None)
        mixture = project_to_simplex(unconstrained)
        info: dict[str, Any] = {
            "method": "hard-bbse",
            "projected": bool(np.abs(mixture - unconstrained).max() > 1e-12),
            "residual_norm": float(np.linalg.norm(matrix.T @ mixture - shares)),
        }
        return SolveResult(mixture, info)


class RLLSOptions(ComponentOptions):
    """Options of the ``rlls`` solver."""

    regularization: float = Field(
        1e-3,
        ge=0,
        description=(
            "Weight of ||theta||**2 in the ridge solve for the weight correction theta = w - 1, "
            "relative to the mean eigenvalue of J.T @ J; larger values shrink the estimate "
            "towards the reference priors."
        ),
    )


class RLLSSolver(Solver):
    """Regularized learning under label shift (Azizzadenesheli et al. 2019), ridge form.

    NOTE: the published RLLS penalizes ``||C theta - b||_2 + delta ||theta||_2``
    with unsquared norms and a ``delta`` from its error bound. This solver
    uses the squared (ridge) form with a fixed weight, which has the same
    shrinkage towards ``w = 1`` and a closed-form solution, but its
    regularization is not set by that bound.
    """

    Options = RLLSOptions
    requires_reference = True

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Estimate importance weights ``w`` by ridge regression and return ``rho * w``, normalized.

        With the joint confusion ``J[j, i] = P(top class j, domain i)`` on the
        reference and ``mu`` the samples' top-class shares, ``theta`` minimizes
        ``||J theta - (mu - J 1)||**2 + lambda * ||theta||**2`` with ``lambda`` the
        ``regularization`` option times the mean eigenvalue of ``J.T @ J``.

        Raises:
            ValueError: if an array has the wrong shape or a non-finite value,
                or ``reference`` is missing.
        """
        _, sample_probs, _, reference = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference, require_reference=True
        )
        options: RLLSOptions = self.options  # type: ignore[assignment]
        k = sample_probs.shape[1]
        counts = np.bincount(reference.labels, minlength=k)
        priors = counts / counts.sum()
        joint = (hard_confusion(reference, k) * priors[:, None]).T
        shift = _predicted_shares(sample_probs) - joint.sum(axis=1)
        gram = joint.T @ joint
        gram += options.regularization * np.trace(gram) / k * np.eye(k)
        theta = np.linalg.lstsq(gram, joint.T @ shift, rcond=None)[0]
        weights = np.clip(1.0 + theta, 0.0, None)
        unnormalized = priors * weights
        total = unnormalized.sum()
        mixture = unnormalized / total if total > 0 else priors
        info = {"method": "rlls-ridge", "regularization": options.regularization}
        return SolveResult(mixture, info)

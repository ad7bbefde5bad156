"""Maximum-likelihood target priors by EM, started from BBSE.

Saerens, Latinne and Decaestecker ("Adjusting the Outputs of a Classifier to
New a Priori Probabilities", Neural Computation 2002): with posteriors
``q(x)`` calibrated under training priors ``rho``, the target likelihood of
``pi`` is ``prod_x sum_k pi_k q_k(x) / rho_k``. EM reweights each posterior by
``pi / rho``, renormalizes it, and sets ``pi`` to the mean of the reweighted
posteriors. The log-likelihood is concave in ``pi``, so from any start with
every share positive EM climbs to the maximum.

The posteriors are first calibrated by BCTS fitted on the out-of-fold
reference predictions, and the start is the soft BBSE estimate: least squares
``C.T @ pi ≈ mean q`` on the simplex, with ``C`` rebuilt from the calibrated
reference predictions.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmsurgeon_core import ComponentOptions, ReferencePredictions, Solver, SolveResult
from llmsurgeon_core.solving import check_solver_inputs, project_to_simplex

from .calibration import BCTSCalibrator

__all__ = ["EMOptions", "EMSolver", "bbse_start", "em_priors"]

logger = logging.getLogger(__name__)


class EMOptions(ComponentOptions):
    """Options of the ``em-bbse`` solver."""

    calibration: Literal["bcts", "none"] = Field(
        "bcts",
        description=(
            "Calibration of the posteriors before EM: 'bcts' fits bias-corrected temperature "
            "scaling on the out-of-fold reference predictions; 'none' uses them as given."
        ),
    )
    start: Literal["bbse", "reference", "uniform"] = Field(
        "bbse",
        description=(
            "Starting mixture: the soft BBSE estimate, the reference priors or the uniform "
            "mixture. The start is mixed with a share start_floor of the uniform mixture, "
            "because EM never moves a share that starts at zero."
        ),
    )
    start_floor: float = Field(
        1e-3, gt=0, lt=1, description="Weight of the uniform mixture mixed into the start."
    )
    tolerance: float = Field(
        1e-8,
        gt=0,
        description="EM stops when no share changes by more than this in one iteration.",
    )
    max_iter: int = Field(10_000, ge=1, description="Maximum number of EM iterations.")
    floor: float = Field(
        1e-12,
        gt=0,
        lt=1e-3,
        description="Probabilities are raised to at least this value before any log or division.",
    )


class EMSolver(Solver):
    """Mixture estimate by maximum likelihood (EM) on BCTS-calibrated posteriors."""

    Options = EMOptions
    requires_reference = True

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Estimate the mixture by EM.

        ``info`` contains ``converged``, ``iterations``, ``log_likelihood``
        (mean per sample, at the estimate), ``start`` and, with BCTS, the
        fitted ``temperature``.

        Raises:
            ValueError: if an array has the wrong shape or a non-finite value,
                ``reference`` is missing, or ``reference_priors`` has no
                positive entry.
        """
        confusion, sample_probs, reference_priors, reference = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference, require_reference=True
        )
        options: EMOptions = self.options  # type: ignore[assignment]
        if not np.any(reference_priors > 0):
            raise ValueError(
                f"reference_priors must have a positive entry, got {reference_priors.tolist()}"
            )
        k = confusion.shape[0]
        info: dict[str, Any] = {"calibration": options.calibration}
        target = _normalize_rows(sample_probs, options.floor)
        reference_probs = _normalize_rows(reference.probs, options.floor)
        if options.calibration == "bcts":
            calibrator = BCTSCalibrator(floor=options.floor).fit(reference_probs, reference.labels)
            target = _normalize_rows(calibrator.transform(target), options.floor)
            reference_probs = calibrator.transform(reference_probs)
            info["temperature"] = 1.0 / calibrator.inverse_temperature_
            info["calibration_converged"] = calibrator.converged_

        # Domains with no reference share have no calibrated likelihood ratio.
        active = reference_priors > 0
        if options.start == "bbse":
            start = bbse_start(reference_probs, reference.labels, target.mean(axis=0), k)
        elif options.start == "reference":
            start = reference_priors / reference_priors.sum()
        else:
            start = np.full(k, 1.0 / k)
        start = np.where(active, (1 - options.start_floor) * start + options.start_floor / k, 0.0)
        start /= start.sum()

        mixture, iterations, converged, log_likelihood = em_priors(
            target, reference_priors, start, options.tolerance, options.max_iter, options.floor
        )
        if not converged:
            # Logged at info level because bootstrap replicates repeat it; the
            # report warns once, from the estimate's own ``converged`` flag.
            logger.info(
                "em-bbse did not converge in %d iterations (tolerance %g); raise max_iter",
                iterations,
                options.tolerance,
            )
        info.update(
            start=options.start,
            iterations=iterations,
            converged=converged,
            log_likelihood=log_likelihood,
            excluded_domains=np.flatnonzero(~active).tolist(),
        )
        return SolveResult(mixture=mixture, info=info)


def _normalize_rows(probs: np.ndarray, floor: float) -> np.ndarray:
    floored = np.maximum(probs, floor)
    return floored / floored.sum(axis=1, keepdims=True)


def bbse_start(
    reference_probs: np.ndarray, labels: np.ndarray, q_bar: np.ndarray, k: int
) -> np.ndarray:
    """Return the soft BBSE estimate: ``C.T @ pi ≈ q_bar`` by least squares on the simplex.

    Solved as non-negative least squares with a heavily weighted row of ones,
    then projected onto the simplex; as a start it needs no more precision.
    """
    from scipy.optimize import nnls

    confusion = np.full((k, k), 1.0 / k)
    for i in range(k):
        rows = reference_probs[labels == i]
        if len(rows):
            confusion[i] = rows.mean(axis=0)
    weight = 1e3 * max(float(np.abs(confusion).max()), 1.0)
    system = np.vstack([confusion.T, np.full((1, k), weight)])
    target = np.concatenate([q_bar, [weight]])
    try:
        solution, _ = nnls(system, target)
    except RuntimeError:  # nnls ran out of iterations
        return np.full(k, 1.0 / k)
    if not np.isfinite(solution).all() or solution.sum() <= 0:
        return np.full(k, 1.0 / k)
    return project_to_simplex(solution)


def em_priors(
    posteriors: np.ndarray,
    priors: np.ndarray,
    start: np.ndarray,
    tolerance: float,
    max_iter: int,
    floor: float = 1e-12,
) -> tuple[np.ndarray, int, bool, float]:
    """Maximize the target likelihood of the mixture by EM (Saerens et al. 2002).

    Args:
        posteriors: ``(n, K)`` calibrated posteriors of the target samples.
        priors: ``(K,)`` priors the posteriors are calibrated under. A zero
            entry's share stays at zero.
        start: ``(K,)`` starting mixture; a share that starts at zero stays zero.
        tolerance: stop when no share changes by more than this.
        max_iter: maximum number of iterations.
        floor: lower bound of each sample's likelihood before its log.

    Returns:
        The mixture, the number of iterations, whether the tolerance was met,
        and the mean log-likelihood per sample (up to a constant free of ``pi``).
    """
    inverse_priors = np.divide(1.0, priors, out=np.zeros_like(priors), where=priors > 0)
    ratio = posteriors * inverse_priors
    mixture = start.copy()
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        weighted = ratio * mixture
        likelihood = np.maximum(weighted.sum(axis=1, keepdims=True), floor)
        updated = (weighted / likelihood).mean(axis=0)
        updated /= updated.sum()
        change = float(np.abs(updated - mixture).max())
        mixture = updated
        if change <= tolerance:
            converged = True
            break
    log_likelihood = float(np.mean(np.log(np.maximum(ratio @ mixture, floor))))
    return mixture, iterations, converged, log_likelihood

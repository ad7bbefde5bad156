"""Calibration maps of predicted probabilities: temperature scaling and BCTS.

Bias-corrected temperature scaling (BCTS; Alexandari, Kundaje and Shrikumar,
"Maximum Likelihood with Bias-Corrected Calibration is Hard-To-Beat at Label
Shift Adaptation", ICML 2020) maps probabilities ``p`` to
``softmax(log(p) / T + b)`` with one temperature ``T > 0`` and one bias per
class. Temperature scaling (TS) is the same map with every bias at zero. Both
are fitted by minimizing the negative log-likelihood of held-out labelled
predictions, such as the out-of-fold predictions of a calibration.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = [
    "CALIBRATION_METHODS",
    "BCTSCalibrator",
    "CalibrationMethod",
    "TemperatureScaling",
    "calibrator_from_dict",
    "make_calibrator",
    "softmax",
]

CalibrationMethod = Literal["none", "ts", "bcts"]
CALIBRATION_METHODS: tuple[str, ...] = ("none", "ts", "bcts")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Return the row-wise softmax, shifted by each row's maximum for stability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


class BCTSCalibrator:
    """Bias-corrected temperature scaling with a scikit-learn style API.

    Attributes (after ``fit``):
        inverse_temperature_: ``1 / T``.
        bias_: ``(K,)`` class biases; a small L2 penalty keeps them finite
            when a class has no labelled rows.
        converged_: whether L-BFGS-B met its tolerance.
    """

    method: str = "bcts"
    fit_bias: bool = True

    def __init__(self, floor: float = 1e-12, bias_penalty: float = 1e-6) -> None:
        self.floor = floor
        self.bias_penalty = bias_penalty

    def _log(self, probs: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(probs, self.floor))

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> BCTSCalibrator:
        """Fit ``T`` (and ``b``) on ``(N, K)`` probabilities with ``(N,)`` integer labels.

        Raises:
            ValueError: if the shapes disagree, there are no rows, or a label
                lies outside ``[0, K)``.
        """
        from scipy.optimize import minimize

        probs, labels = _check_fit_inputs(probs, labels)
        log_probs = self._log(probs)
        n, k = probs.shape
        one_hot = np.zeros((n, k))
        one_hot[np.arange(n), labels] = 1.0
        n_bias = k if self.fit_bias else 0

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            # theta = [log(1 / T), b]; the log keeps the temperature positive.
            scale = np.exp(theta[0])
            bias = theta[1:] if n_bias else np.zeros(k)
            logits = scale * log_probs + bias
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_normalizer = np.log(np.exp(shifted).sum(axis=1))
            log_likelihood = (shifted * one_hot).sum(axis=1) - log_normalizer
            value = -log_likelihood.mean() + self.bias_penalty * bias @ bias
            gradient_logits = (np.exp(shifted - log_normalizer[:, None]) - one_hot) / n
            gradient = np.empty_like(theta)
            gradient[0] = scale * np.sum(gradient_logits * log_probs)
            if n_bias:
                gradient[1:] = gradient_logits.sum(axis=0) + 2 * self.bias_penalty * bias
            return float(value), gradient

        result = minimize(objective, np.zeros(1 + n_bias), jac=True, method="L-BFGS-B")
        self.inverse_temperature_ = float(np.exp(result.x[0]))
        self.bias_ = result.x[1:].copy() if n_bias else np.zeros(k)
        self.converged_ = bool(result.success)
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Return the calibrated ``(n, K)`` probabilities."""
        if not hasattr(self, "inverse_temperature_"):
            raise RuntimeError(f"the {self.method} calibrator is not fitted; call fit() first")
        probs = np.asarray(probs, dtype=float)
        if probs.ndim != 2 or probs.shape[1] != len(self.bias_):
            raise ValueError(
                f"probabilities must have shape (n, {len(self.bias_)}), got {probs.shape}"
            )
        if len(probs) == 0:
            return probs.copy()
        return softmax(self.inverse_temperature_ * self._log(probs) + self.bias_)

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted parameters as a JSON-ready mapping."""
        return {
            "method": self.method,
            "temperature": 1.0 / self.inverse_temperature_,
            "inverse_temperature": self.inverse_temperature_,
            "bias": self.bias_.tolist(),
            "converged": self.converged_,
            "floor": self.floor,
        }


class TemperatureScaling(BCTSCalibrator):
    """Temperature scaling: BCTS with every bias fixed at zero."""

    method = "ts"
    fit_bias = False


def _check_fit_inputs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probabilities must be a non-empty (N, K) array, got {probs.shape}")
    if labels.shape != (len(probs),):
        raise ValueError(f"labels must have shape ({len(probs)},), got {labels.shape}")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]})")
    return probs, labels.astype(np.int64)


_CALIBRATORS: dict[str, type[BCTSCalibrator]] = {"ts": TemperatureScaling, "bcts": BCTSCalibrator}


def make_calibrator(method: str) -> BCTSCalibrator | None:
    """Return an unfitted calibrator for ``method``, or None for ``"none"``."""
    if method == "none":
        return None
    if method not in _CALIBRATORS:
        raise ValueError(
            f"unknown calibration method {method!r}; allowed: {', '.join(CALIBRATION_METHODS)}"
        )
    return _CALIBRATORS[method]()


def calibrator_from_dict(values: dict[str, Any]) -> BCTSCalibrator:
    """Rebuild a fitted calibrator from the mapping that ``to_dict`` returned.

    Raises:
        ValueError: if the mapping names an unknown method or lacks a parameter.
    """
    calibrator = make_calibrator(str(values.get("method")))
    if calibrator is None:
        raise ValueError("the calibration map has method 'none' and no parameters")
    try:
        calibrator.floor = float(values.get("floor", calibrator.floor))
        calibrator.inverse_temperature_ = float(values["inverse_temperature"])
        calibrator.bias_ = np.asarray(values["bias"], dtype=float)
        calibrator.converged_ = bool(values.get("converged", True))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the calibration map is incomplete or invalid ({error!r})") from None
    if calibrator.inverse_temperature_ <= 0 or calibrator.bias_.ndim != 1:
        raise ValueError("the calibration map needs a positive temperature and a bias vector")
    return calibrator

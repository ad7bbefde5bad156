"""Bias-corrected temperature scaling (BCTS) of predicted probabilities.

BCTS (Alexandari, Kundaje and Shrikumar, "Maximum Likelihood with
Bias-Corrected Calibration is Hard-To-Beat at Label Shift Adaptation", ICML
2020) maps probabilities ``p`` to ``softmax(log(p) / T + b)`` with one
temperature ``T > 0`` and one bias per class, fitted by minimizing the
negative log-likelihood of held-out labelled predictions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BCTSCalibrator", "softmax"]


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

    def __init__(self, floor: float = 1e-12, bias_penalty: float = 1e-6) -> None:
        self.floor = floor
        self.bias_penalty = bias_penalty

    def _log(self, probs: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(probs, self.floor))

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> BCTSCalibrator:
        """Fit ``T`` and ``b`` on ``(N, K)`` probabilities with ``(N,)`` integer labels."""
        from scipy.optimize import minimize

        log_probs = self._log(probs)
        n, k = probs.shape
        one_hot = np.zeros((n, k))
        one_hot[np.arange(n), labels] = 1.0

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            # theta = [log(1 / T), b]; the log keeps the temperature positive.
            scale = np.exp(theta[0])
            bias = theta[1:]
            logits = scale * log_probs + bias
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_normalizer = np.log(np.exp(shifted).sum(axis=1))
            log_likelihood = (shifted * one_hot).sum(axis=1) - log_normalizer
            value = -log_likelihood.mean() + self.bias_penalty * bias @ bias
            gradient_logits = (np.exp(shifted - log_normalizer[:, None]) - one_hot) / n
            gradient = np.empty_like(theta)
            gradient[0] = scale * np.sum(gradient_logits * log_probs)
            gradient[1:] = gradient_logits.sum(axis=0) + 2 * self.bias_penalty * bias
            return float(value), gradient

        result = minimize(objective, np.zeros(k + 1), jac=True, method="L-BFGS-B")
        self.inverse_temperature_ = float(np.exp(result.x[0]))
        self.bias_ = result.x[1:].copy()
        self.converged_ = bool(result.success)
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Return the calibrated ``(n, K)`` probabilities."""
        return softmax(self.inverse_temperature_ * self._log(probs) + self.bias_)

"""Calibration maps (TS, BCTS) and the classifier's out-of-fold scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from llmsurgeon_core.calibrators import (
    BCTSCalibrator,
    TemperatureScaling,
    calibrator_from_dict,
    make_calibrator,
    softmax,
)
from llmsurgeon_core.classifier_diagnostics import (
    confusion_counts,
    evaluate_classifier,
    expected_calibration_error,
    per_domain_scores,
    reliability_bins,
    render_confusion_heatmap,
    render_reliability_diagram,
)

K = 4


def calibrated_predictions(rng: np.random.Generator, n: int = 4000):
    """Return probabilities that are calibrated by construction, and labels drawn from them."""
    logits = rng.normal(scale=2.0, size=(n, K))
    probs = softmax(logits)
    labels = np.array([rng.choice(K, p=row) for row in probs])
    return logits, probs, labels


def distort(logits: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    """Return probabilities that the map with ``temperature`` and ``bias`` turns back."""
    return softmax(temperature * (logits - bias))


def test_ts_recovers_temperature():
    rng = np.random.default_rng(0)
    logits, _, labels = calibrated_predictions(rng)
    overconfident = distort(logits, 2.5, np.zeros(K))

    calibrator = TemperatureScaling().fit(overconfident, labels)

    assert calibrator.inverse_temperature_ == pytest.approx(1 / 2.5, rel=0.1)
    np.testing.assert_array_equal(calibrator.bias_, np.zeros(K))
    assert calibrator.converged_


def test_bcts_recovers_temperature_and_bias():
    rng = np.random.default_rng(1)
    logits, _, labels = calibrated_predictions(rng)
    bias = np.array([0.8, -0.4, 0.0, -0.4])
    distorted = distort(logits, 2.0, bias)

    calibrator = BCTSCalibrator().fit(distorted, labels)

    assert calibrator.inverse_temperature_ == pytest.approx(0.5, rel=0.1)
    # Biases are defined up to a constant, because softmax ignores a shift.
    fitted = calibrator.bias_ - calibrator.bias_.mean()
    np.testing.assert_allclose(fitted, bias - bias.mean(), atol=0.15)


def test_maps_lower_ece_and_log_loss():
    rng = np.random.default_rng(2)
    logits, _, labels = calibrated_predictions(rng)
    distorted = distort(logits, 3.0, np.array([1.0, 0.0, 0.0, -1.0]))
    rows = np.arange(len(labels))

    for calibrator in (TemperatureScaling(), BCTSCalibrator()):
        fixed = calibrator.fit(distorted, labels).transform(distorted)
        before = -np.log(distorted[rows, labels]).mean()
        after = -np.log(fixed[rows, labels]).mean()
        assert after < before, calibrator.method
        assert expected_calibration_error(fixed, labels) < expected_calibration_error(
            distorted, labels
        ), calibrator.method


def test_transformed_rows_sum_to_one():
    rng = np.random.default_rng(3)
    _, probs, labels = calibrated_predictions(rng, n=500)
    probs[:, 0] = 0.0  # a zero probability goes through the log floor
    probs /= probs.sum(axis=1, keepdims=True)

    fixed = BCTSCalibrator().fit(probs, labels).transform(probs)

    assert np.isfinite(fixed).all()
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0)


@pytest.mark.parametrize("method", ["ts", "bcts"])
def test_dict_roundtrip_gives_same_map(method):
    rng = np.random.default_rng(4)
    logits, _, labels = calibrated_predictions(rng, n=800)
    distorted = distort(logits, 1.7, np.array([0.3, 0.0, -0.3, 0.0]))
    calibrator = make_calibrator(method).fit(distorted, labels)

    restored = calibrator_from_dict(calibrator.to_dict())

    assert restored.method == method
    np.testing.assert_array_equal(restored.transform(distorted), calibrator.transform(distorted))


def test_make_calibrator_none_and_unknown():
    assert make_calibrator("none") is None
    with pytest.raises(ValueError, match="allowed: none, ts, bcts"):
        make_calibrator("platt")


def test_from_dict_rejects_incomplete_map():
    with pytest.raises(ValueError, match="incomplete"):
        calibrator_from_dict({"method": "bcts", "bias": [0.0, 0.0]})


def test_fit_rejects_bad_labels():
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="labels must lie"):
        BCTSCalibrator().fit(probs, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        BCTSCalibrator().fit(probs, np.array([0, 1]))


def test_ece_of_calibrated_predictions_is_small():
    rng = np.random.default_rng(5)
    _, probs, labels = calibrated_predictions(rng)

    assert expected_calibration_error(probs, labels) < 0.03


def test_ece_of_overconfident_predictions():
    # Always 90% sure and right half of the time: ECE is 0.9 - 0.5.
    probs = np.tile([0.9, 0.1], (100, 1))
    labels = np.array([0, 1] * 50)

    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)


def test_reliability_bins_count_every_text():
    rng = np.random.default_rng(6)
    _, probs, labels = calibrated_predictions(rng, n=300)
    probs[0] = [1.0, 0.0, 0.0, 0.0]

    bins = reliability_bins(probs, labels, n_bins=10)

    assert len(bins) == 10
    assert sum(b["count"] for b in bins) == 300
    assert bins[-1]["count"] >= 1


def test_per_domain_scores_match_sklearn():
    rng = np.random.default_rng(7)
    _, probs, labels = calibrated_predictions(rng, n=600)
    domains = ["a", "b", "c", "d"]

    scores = per_domain_scores(confusion_counts(probs, labels, K), domains)
    expected = precision_recall_fscore_support(
        labels, probs.argmax(axis=1), labels=range(K), zero_division=0
    )

    for k, domain in enumerate(domains):
        assert scores[domain]["precision"] == pytest.approx(expected[0][k])
        assert scores[domain]["recall"] == pytest.approx(expected[1][k])
        assert scores[domain]["f1"] == pytest.approx(expected[2][k])
        assert scores[domain]["support"] == expected[3][k]


def test_never_predicted_domain_scores_zero():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    labels = np.array([0, 2, 1])

    scores = per_domain_scores(confusion_counts(probs, labels, 3), ["a", "b", "c"])

    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_evaluation_keys_and_figures():
    rng = np.random.default_rng(8)
    _, probs, labels = calibrated_predictions(rng, n=400)
    domains = ["a", "b", "c", "d"]

    result = evaluate_classifier(
        domains,
        probs,
        labels,
        calibration_method="bcts",
        mode="generation",
        continuations=(probs[:100], labels[:100]),
    )

    assert set(result) == {
        "n_texts",
        "accuracy",
        "macro_f1",
        "ece",
        "per_domain",
        "confusion_matrix",
        "reliability",
        "calibration_method",
        "mode",
        "continuations",
    }
    assert list(result["per_domain"]) == domains
    assert result["continuations"]["n_texts"] == 100
    for image in (render_reliability_diagram(result), render_confusion_heatmap(result, domains)):
        assert image.startswith(b"\x89PNG")

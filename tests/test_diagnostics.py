"""Diagnostics of an estimate: merge groups, the Cramér–Rao bound, wide intervals, label shift."""

from __future__ import annotations

import numpy as np
import pytest

from llmsurgeon_core.calibration import Calibration, soft_confusion
from llmsurgeon_core.diagnostics import (
    cramer_rao_std,
    label_shift_check,
    suggest_merge_groups,
    wide_interval_notes,
)
from llmsurgeon_core.errors import InvalidInputError
from llmsurgeon_core.estimation import estimate_mixture, merge_domains
from llmsurgeon_em.calibration import softmax

DOMAINS = ["a", "b", "c", "d"]


def gaussian_posteriors(labels, rng, separation=2.0):
    """Return Bayes posteriors under equal priors for ``x ~ N(separation * e_y, I)``."""
    features = rng.normal(size=(len(labels), 4)) + separation * np.eye(4)[labels]
    return softmax(separation * features)


def make_calibration(rng, per_domain=300) -> Calibration:
    labels = np.repeat(np.arange(4), per_domain)
    probs = gaussian_posteriors(labels, rng)
    return Calibration(DOMAINS, soft_confusion(probs, labels, 4), probs, labels, classifier=None)


def test_merge_groups_from_confusion():
    confusion = np.array(
        [[0.8, 0.15, 0.05, 0.0], [0.2, 0.8, 0.0, 0.0], [0.0, 0.0, 0.9, 0.1], [0.0, 0.0, 0.02, 0.98]]
    )

    assert suggest_merge_groups(DOMAINS, confusion) == [["a", "b"], ["c", "d"]]
    assert suggest_merge_groups(DOMAINS, np.eye(4)) == []


def test_merge_domains_mapping():
    names, mapping = merge_domains(DOMAINS, [["c", "a"]])

    assert names == ["a+c", "b", "d"]
    np.testing.assert_array_equal(mapping.argmax(axis=1), [0, 1, 0, 2])


@pytest.mark.parametrize(
    ("groups", "message"),
    [([["a", "x"]], "unknown domain 'x'"), ([["a", "b"], ["b"]], "two groups"), ([[]], "empty")],
)
def test_merge_domains_rejects_invalid_groups(groups, message):
    with pytest.raises(InvalidInputError, match=message):
        merge_domains(DOMAINS, groups)


def test_cramer_rao_matches_em_spread():
    """The bound is close to the spread of maximum likelihood, which attains it."""
    from llmsurgeon_em import em_priors

    rng = np.random.default_rng(0)
    mixture = np.array([0.4, 0.3, 0.2, 0.1])
    priors = np.full(4, 0.25)
    n = 400
    estimates = []
    for _ in range(200):
        posteriors = gaussian_posteriors(rng.choice(4, n, p=mixture), rng)
        estimates.append(em_priors(posteriors, priors, priors, 1e-10, 10_000)[0])
    large = gaussian_posteriors(rng.choice(4, 50_000, p=mixture), rng)

    bound = cramer_rao_std(large, priors, mixture, n_samples=n)

    np.testing.assert_allclose(np.std(estimates, axis=0), bound, rtol=0.2)


def test_wide_interval_notes():
    interval = np.array([[0.3, 0.5], [0.0, 0.2], [0.0, 0.04], [0.05, 0.07]])

    notes = wide_interval_notes(DOMAINS, np.array([0.4, 0.1, 0.02, 0.06]), interval, 100)

    assert [note["domain"] for note in notes] == ["b"]
    assert notes[0]["samples_needed"] == 400


def test_label_shift_check_flags_shifted_domain():
    rng = np.random.default_rng(1)
    calibration = make_calibration(rng)
    mixture = np.full(4, 0.25)
    labels = rng.choice(4, 2000, p=mixture)
    same = gaussian_posteriors(labels, rng)
    shifted = same.copy()
    # Samples of domain "c" become far less confident, as text from another source would.
    rows = labels == 2
    shifted[rows] = gaussian_posteriors(labels[rows], rng, separation=1.0)

    clean = label_shift_check(calibration, same, mixture)
    flagged = label_shift_check(calibration, shifted, mixture)

    assert clean["shifted_domains"] == []
    assert "c" in flagged["shifted_domains"]
    assert len(flagged["tests"]) == 4


def test_estimate_reports_merged_and_bound():
    rng = np.random.default_rng(2)
    calibration = make_calibration(rng)
    sample_probs = gaussian_posteriors(rng.choice(4, 500), rng)
    from llmsurgeon_nnls import NNLSSolver

    estimate = estimate_mixture(
        NNLSSolver(NNLSSolver.Options()), calibration, sample_probs, 20, 0.9, 0, merge=[["a", "b"]]
    )

    merged = estimate.diagnostics["merged"]
    assert merged["domains"] == ["a+b", "c", "d"]
    assert sum(merged["estimate"].values()) == pytest.approx(1.0)
    assert merged["estimate"]["a+b"] == pytest.approx(estimate.mixture[:2].sum(), abs=0.02)
    assert set(merged["interval"]) == {"a+b", "c", "d"}
    assert set(estimate.diagnostics["cramer_rao_std"]) == set(DOMAINS)
    assert set(estimate.diagnostics["bootstrap_std"]) == set(DOMAINS)
    assert "label_shift" in estimate.diagnostics

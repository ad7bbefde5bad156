"""Property tests that every registered solver must pass on adversarial inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsurgeon_core import ReferencePredictions, load_registry

settings.register_profile(
    "solvers", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SOLVER_NAMES = ["nnls", "cvxpy", "em-bbse", "kdey", "cc", "pcc", "bbse", "rlls"]


def make_solver(name: str):
    cls = load_registry().get("solver", name).obj
    return cls(cls.Options())


@st.composite
def solver_inputs(draw):
    """Draw a confusion matrix of a hard kind, samples and reference predictions."""
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "singular", "rank-deficient", "zero-row", "identity"]))
    rng = np.random.default_rng(seed)
    confusion = rng.dirichlet(np.full(k, 0.5), size=k)
    if kind == "singular" and k > 1:
        confusion[1] = confusion[0]
    elif kind == "rank-deficient":
        confusion[:] = confusion[0]
    elif kind == "zero-row":
        confusion[rng.integers(k)] = 0.0
    elif kind == "identity":
        confusion = np.eye(k)
    n = draw(st.integers(1, 40))
    sample_probs = rng.dirichlet(np.full(k, 0.3), size=n)
    if draw(st.booleans()):
        # One-hot rows put exact zeros in every log and ratio.
        sample_probs = np.eye(k)[sample_probs.argmax(axis=1)]
    labels = rng.integers(0, k, size=draw(st.integers(1, 40)))
    reference_probs = rng.dirichlet(np.full(k, 0.3), size=len(labels))
    priors = np.bincount(labels, minlength=k) / len(labels)
    return confusion, sample_probs, priors, ReferencePredictions(reference_probs, labels)


@pytest.mark.parametrize("name", SOLVER_NAMES)
@settings(settings.get_profile("solvers"))
@given(inputs=solver_inputs())
def test_solver_returns_simplex_vector(name, inputs):
    confusion, sample_probs, priors, reference = inputs

    result = make_solver(name).solve(confusion, sample_probs, priors, reference)

    mixture = np.asarray(result.mixture)
    assert mixture.shape == (confusion.shape[0],)
    assert np.all(np.isfinite(mixture))
    assert np.all(mixture >= 0.0)
    assert abs(mixture.sum() - 1.0) <= 1e-8


BAD_INPUTS = [
    ("confusion", lambda c, s, p, r: (c[:, :-1], s, p, r)),
    ("sample_probs", lambda c, s, p, r: (c, s[:, :-1], p, r)),
    ("sample_probs", lambda c, s, p, r: (c, s[:0], p, r)),
    ("reference_priors", lambda c, s, p, r: (c, s, p[:-1], r)),
    (
        "reference.probs",
        lambda c, s, p, r: (c, s, p, ReferencePredictions(r.probs[:, :-1], r.labels)),
    ),
    (
        "reference.labels",
        lambda c, s, p, r: (c, s, p, ReferencePredictions(r.probs, r.labels[:-1])),
    ),
    ("reference.labels", lambda c, s, p, r: (c, s, p, ReferencePredictions(r.probs, r.labels + 9))),
]


def valid_inputs(k: int = 3):
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 0, 1, 2])
    return (
        np.eye(k),
        rng.dirichlet(np.ones(k), size=5),
        np.full(k, 1 / k),
        ReferencePredictions(rng.dirichlet(np.ones(k), size=6), labels),
    )


@pytest.mark.parametrize("name", [n for n in SOLVER_NAMES if n != "nnls"])
@pytest.mark.parametrize(("array", "corrupt"), BAD_INPUTS)
def test_invalid_shape_raises(name, array, corrupt):
    with pytest.raises(ValueError, match=array.replace(".", r"\.")):
        make_solver(name).solve(*corrupt(*valid_inputs()))


@pytest.mark.parametrize("name", SOLVER_NAMES)
@pytest.mark.parametrize("array", ["confusion", "sample_probs", "reference_priors"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_input_raises(name, array, bad_value):
    confusion, sample_probs, priors, reference = valid_inputs()
    arrays = {"confusion": confusion, "sample_probs": sample_probs, "reference_priors": priors}
    arrays[array].flat[1] = bad_value

    with pytest.raises(ValueError, match="non-finite"):
        make_solver(name).solve(reference=reference, **arrays)


@pytest.mark.parametrize("name", ["em-bbse", "bbse", "rlls"])
def test_missing_reference_raises(name):
    confusion, sample_probs, priors, _ = valid_inputs()

    with pytest.raises(ValueError, match="out-of-fold reference predictions"):
        make_solver(name).solve(confusion, sample_probs, priors)

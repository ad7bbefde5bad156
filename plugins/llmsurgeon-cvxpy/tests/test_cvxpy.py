from __future__ import annotations

import numpy as np
import pydantic
import pytest

from llmsurgeon_core import ReferencePredictions, Solver, load_registry
from llmsurgeon_cvxpy import CvxpySolver
from llmsurgeon_cvxpy.solver import inverse_square_root
from llmsurgeon_nnls import NNLSSolver

K = 5


def make_solver(**options) -> CvxpySolver:
    return CvxpySolver(CvxpySolver.Options(**options))


def diagonal_heavy_confusion(rng: np.random.Generator, k: int = K) -> np.ndarray:
    confusion = 0.3 * rng.dirichlet(np.ones(k), size=k) + 0.7 * np.eye(k)
    return confusion / confusion.sum(axis=1, keepdims=True)


def test_registers_as_cvxpy():
    registration = load_registry().get("solver", "cvxpy")

    assert registration.obj is CvxpySolver
    assert issubclass(CvxpySolver, Solver)


@pytest.mark.parametrize("seed", range(5))
def test_matches_nnls_without_options(seed):
    rng = np.random.default_rng(seed)
    confusion = diagonal_heavy_confusion(rng)
    p_bar = confusion.T @ rng.dirichlet(np.full(K, 0.5)) + rng.normal(0, 0.03, K)
    priors = np.full(K, 1 / K)

    result = make_solver().solve(confusion, p_bar[None], priors)
    exact = NNLSSolver(NNLSSolver.Options()).solve(confusion, p_bar[None], priors)

    np.testing.assert_allclose(result.mixture, exact.mixture, atol=1e-6)
    assert result.info["status"] == "optimal"
    assert result.info["cvxpy_solver"] == "CLARABEL"


@pytest.mark.parametrize("name", ["OSQP", "SCS", "clarabel"])
def test_any_installed_solver(name):
    rng = np.random.default_rng(1)
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.ones(K))
    options = {"eps": 1e-9} if name == "SCS" else {}
    if name == "OSQP":
        options = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iter": 100_000}

    result = make_solver(solver=name, solver_options=options).solve(
        confusion, (confusion.T @ mixture)[None], np.full(K, 1 / K)
    )

    np.testing.assert_allclose(result.mixture, mixture, atol=1e-4)
    assert result.info["cvxpy_solver"] == name.upper()


def test_unknown_solver_raises():
    with pytest.raises(ValueError, match=r"not installed; installed: .*CLARABEL"):
        make_solver(solver="NOSUCH").solve(np.eye(K), np.full((2, K), 1 / K), np.ones(K) / K)


def test_inaccurate_status_warns(caplog):
    rng = np.random.default_rng(2)
    confusion = diagonal_heavy_confusion(rng)

    with pytest.warns(UserWarning, match="inaccurate"):
        result = make_solver(solver="SCS", solver_options={"max_iters": 1}).solve(
            confusion, rng.dirichlet(np.ones(K), size=3), np.full(K, 1 / K)
        )

    assert result.info["status"] == "optimal_inaccurate"
    assert "optimal_inaccurate" in caplog.text


def test_failed_status_raises(monkeypatch):
    import cvxpy

    original = cvxpy.Problem.solve

    def solve_then_fail(problem, *args, **kwargs):
        original(problem, *args, **kwargs)
        problem._status = "infeasible"

    monkeypatch.setattr(cvxpy.Problem, "solve", solve_then_fail)

    with pytest.raises(RuntimeError, match="ended with status 'infeasible'"):
        make_solver().solve(np.eye(K), np.full((2, K), 1 / K), np.full(K, 1 / K))


def test_large_ridge_returns_target():
    rng = np.random.default_rng(3)
    confusion = diagonal_heavy_confusion(rng)
    probs = rng.dirichlet(np.ones(K), size=20)
    target = [0.5, 0.2, 0.1, 0.1, 0.1]

    result = make_solver(ridge=1e6, ridge_target=target).solve(confusion, probs, np.ones(K) / K)
    towards_priors = make_solver(ridge=1e6, ridge_target="reference").solve(
        confusion, probs, np.array([1.0, 1.0, 0.0, 0.0, 2.0])
    )

    np.testing.assert_allclose(result.mixture, target, atol=1e-4)
    np.testing.assert_allclose(towards_priors.mixture, [0.25, 0.25, 0, 0, 0.5], atol=1e-4)
    assert result.info["ridge"] == 1e6


def test_ridge_target_wrong_length_raises():
    with pytest.raises(ValueError, match="ridge_target must list 5"):
        make_solver(ridge=1.0, ridge_target=[1.0, 0.0]).solve(
            np.eye(K), np.full((2, K), 1 / K), np.ones(K) / K
        )


def test_covariance_weighting_recovers_mixture():
    rng = np.random.default_rng(4)
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.ones(K))
    labels = rng.choice(K, size=4000, p=mixture)
    # Samples whose expected probabilities are the rows of C, with noise.
    sample_probs = np.array([rng.dirichlet(50 * confusion[y]) for y in labels])
    reference_labels = np.repeat(np.arange(K), 400)
    reference_probs = np.array([rng.dirichlet(50 * confusion[y]) for y in reference_labels])
    reference = ReferencePredictions(reference_probs, reference_labels)
    soft = np.array([reference_probs[reference_labels == i].mean(axis=0) for i in range(K)])

    result = make_solver(weighting="covariance").solve(
        soft, sample_probs, np.ones(K) / K, reference
    )

    np.testing.assert_allclose(result.mixture, mixture, atol=0.03)
    assert result.info["weighting"] == "covariance"
    assert result.info["status"] == "optimal"


def test_inverse_square_root_drops_null_direction():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(K), size=200)
    covariance = np.cov(probs, rowvar=False)

    root = inverse_square_root(covariance, 1e-9)

    np.testing.assert_allclose(root @ np.ones(K), 0.0, atol=1e-8)
    projector = np.eye(K) - np.ones((K, K)) / K
    np.testing.assert_allclose(root @ covariance @ root, projector, atol=1e-8)
    np.testing.assert_array_equal(inverse_square_root(np.zeros((K, K)), 1e-9), np.eye(K))


def test_options_reject_unknown_key():
    with pytest.raises(pydantic.ValidationError):
        CvxpySolver.Options(ridg=1.0)

from __future__ import annotations

import itertools

import numpy as np
import pydantic
import pytest

from llmsurgeon_core import Solver, load_registry
from llmsurgeon_nnls import NNLSSolver, solve_simplex_least_squares
from llmsurgeon_nnls.solver import active_set_polish

K = 5


def make_solver(**options) -> NNLSSolver:
    return NNLSSolver(NNLSSolver.Options(**options))


def diagonal_heavy_confusion(rng: np.random.Generator, k: int = K) -> np.ndarray:
    """Return a row-stochastic matrix whose diagonal carries about 70% of each row."""
    off_diagonal = rng.dirichlet(np.ones(k), size=k)
    confusion = 0.3 * off_diagonal + 0.7 * np.eye(k)
    return confusion / confusion.sum(axis=1, keepdims=True)


def exact_reference(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimize ``||a x - b||`` on the simplex by trying every support.

    The optimum solves the equality-constrained problem on its own support, so
    the best non-negative solution over all ``2**K - 1`` supports is exact.
    Each candidate is computed with ``numpy.linalg.lstsq`` on the reduced
    system, independently of the solver's KKT code.
    """
    k = a.shape[1]
    best, best_norm = None, np.inf
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            columns = a[:, support]
            # Substitute x_last = 1 - sum(others) to eliminate the equality.
            last = columns[:, -1]
            reduced = columns[:, :-1] - last[:, None]
            others, *_ = np.linalg.lstsq(reduced, b - last, rcond=None)
            x_support = np.append(others, 1.0 - others.sum())
            if np.any(x_support < -1e-12):
                continue
            x = np.zeros(k)
            x[list(support)] = np.clip(x_support, 0.0, None)
            norm = float(np.linalg.norm(a @ x - b))
            if norm < best_norm:
                best, best_norm = x, norm
    assert best is not None
    return best, best_norm


def project_onto_simplex(v: np.ndarray) -> np.ndarray:
    """Return the Euclidean projection of ``v`` onto the simplex (sort-based algorithm)."""
    descending = np.sort(v)[::-1]
    cumulative = np.cumsum(descending) - 1.0
    ranks = np.arange(1, v.size + 1)
    rho = np.flatnonzero(descending - cumulative / ranks > 0)[-1]
    threshold = cumulative[rho] / (rho + 1)
    return np.clip(v - threshold, 0.0, None)


def samples_with_mean(p_bar: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` rows whose column mean is ``p_bar`` up to rounding."""
    noise = rng.normal(0.0, 0.01, size=(n, p_bar.size))
    noise -= noise.mean(axis=0)
    return p_bar + noise


def assert_on_simplex(mixture: np.ndarray, k: int = K) -> None:
    assert mixture.shape == (k,)
    assert mixture.dtype == np.float64
    assert np.all(mixture >= 0.0)
    assert abs(mixture.sum() - 1.0) <= 1e-9


def test_registers_as_nnls():
    registry = load_registry()
    registration = registry.get("solver", "nnls")
    assert registration.obj is NNLSSolver
    assert issubclass(NNLSSolver, Solver)


@pytest.mark.parametrize("seed", range(5))
def test_exact_p_bar_recovers_mixture(seed):
    rng = np.random.default_rng(seed)
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.ones(K))
    p_bar = confusion.T @ mixture

    result = make_solver().solve(confusion, p_bar[None, :], np.full(K, 1 / K))

    assert_on_simplex(result.mixture)
    np.testing.assert_allclose(result.mixture, mixture, atol=1e-6)
    assert result.info["residual_norm"] < 1e-10
    assert result.info["method"] == "nnls+active-set"
    assert result.info["converged"] is True


@pytest.mark.parametrize("zeros", [(0,), (1, 3), (0, 2, 4), (0, 1, 2, 3)])
def test_mixture_on_simplex_face(zeros):
    rng = np.random.default_rng(len(zeros))
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.ones(K))
    mixture[list(zeros)] = 0.0
    mixture /= mixture.sum()
    p_bar = confusion.T @ mixture

    result = make_solver().solve(confusion, samples_with_mean(p_bar, 50, rng), np.ones(K) / K)

    assert_on_simplex(result.mixture)
    np.testing.assert_allclose(result.mixture, mixture, atol=1e-6)
    assert np.all(result.mixture[list(zeros)] == 0.0)


@pytest.mark.parametrize("seed", range(20))
def test_noisy_p_bar_matches_exact_reference(seed):
    rng = np.random.default_rng(100 + seed)
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.full(K, 0.5))
    p_bar = confusion.T @ mixture + rng.normal(0.0, 0.03, size=K)
    reference, reference_norm = exact_reference(confusion.T, p_bar)

    result = make_solver().solve(confusion, p_bar[None, :], np.ones(K) / K)

    assert_on_simplex(result.mixture)
    np.testing.assert_allclose(result.mixture, reference, atol=1e-10)
    assert result.info["residual_norm"] <= reference_norm + 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_unpolished_start_error_scales_with_weight(seed):
    """The weighted NNLS start alone is within 1e-6 * residual of the optimum."""
    rng = np.random.default_rng(200 + seed)
    confusion = diagonal_heavy_confusion(rng)
    p_bar = confusion.T @ rng.dirichlet(np.ones(K)) + rng.normal(0.0, 0.03, size=K)
    reference, reference_norm = exact_reference(confusion.T, p_bar)

    coarse = make_solver(polish=False, sum_weight=1e2).solve(confusion, p_bar[None], np.ones(K))
    default = make_solver(polish=False).solve(confusion, p_bar[None], np.ones(K))

    assert default.info["method"] == "weighted-nnls"
    assert_on_simplex(default.mixture)
    coarse_error = np.abs(coarse.mixture - reference).max()
    default_error = np.abs(default.mixture - reference).max()
    assert default_error <= 1e-6 * reference_norm
    assert default_error < coarse_error / 50


def test_identity_confusion_projects_p_bar():
    rng = np.random.default_rng(3)
    for _ in range(10):
        p_bar = rng.normal(0.2, 0.3, size=K)

        result = make_solver().solve(np.eye(K), p_bar[None, :], np.ones(K) / K)

        assert_on_simplex(result.mixture)
        np.testing.assert_allclose(result.mixture, project_onto_simplex(p_bar), atol=1e-12)


def test_singular_confusion_returns_minimizer():
    rng = np.random.default_rng(11)
    confusion = diagonal_heavy_confusion(rng)
    confusion[1] = confusion[0]
    mixture = rng.dirichlet(np.ones(K))
    p_bar = confusion.T @ mixture + rng.normal(0.0, 0.01, size=K)
    _, reference_norm = exact_reference(confusion.T, p_bar)

    result = make_solver().solve(confusion, p_bar[None, :], np.ones(K) / K)

    assert_on_simplex(result.mixture)
    assert result.info["converged"] is True
    assert result.info["residual_norm"] <= reference_norm + 1e-12
    # Domains 0 and 1 are indistinguishable, so only their total is identified.
    total = result.mixture[0] + result.mixture[1]
    assert total == pytest.approx(mixture[0] + mixture[1], abs=0.03)
    np.testing.assert_allclose(result.mixture[2:], mixture[2:], atol=0.03)


@pytest.mark.parametrize("start_vertex", range(4))
def test_active_set_from_any_vertex(start_vertex):
    rng = np.random.default_rng(start_vertex)
    a = rng.normal(size=(6, 4))
    b = rng.normal(size=6)
    reference, _ = exact_reference(a, b)

    start = np.eye(4)[start_vertex]
    x, iterations, converged = active_set_polish(a, b, start, 1e-12, 50)

    assert converged
    assert iterations <= 50
    np.testing.assert_allclose(x, reference, atol=1e-10)


def test_solution_ignores_sample_order():
    rng = np.random.default_rng(5)
    confusion = diagonal_heavy_confusion(rng)
    sample_probs = rng.dirichlet(np.ones(K), size=1000)
    solver = make_solver()

    first = solver.solve(confusion, sample_probs, np.ones(K) / K)
    shuffled = solver.solve(confusion, rng.permutation(sample_probs), np.ones(K) / K)

    np.testing.assert_array_equal(first.mixture, shuffled.mixture)
    assert first.info == shuffled.info


def test_failed_nnls_start_falls_back(monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("Maximum number of iterations reached.")

    monkeypatch.setattr("llmsurgeon_nnls.solver.weighted_nnls_start", fail)
    rng = np.random.default_rng(9)
    confusion = diagonal_heavy_confusion(rng)
    mixture = rng.dirichlet(np.ones(K))
    p_bar = confusion.T @ mixture

    result = make_solver().solve(confusion, p_bar[None, :], np.ones(K) / K)

    np.testing.assert_allclose(result.mixture, mixture, atol=1e-10)
    assert result.info["start"] == "uniform"
    assert "uniform mixture" in caplog.text
    with pytest.raises(RuntimeError, match="set polish to true"):
        make_solver(polish=False).solve(confusion, p_bar[None, :], np.ones(K) / K)


def test_single_domain():
    result = make_solver().solve(np.ones((1, 1)), np.ones((3, 1)), np.ones(1))

    np.testing.assert_array_equal(result.mixture, [1.0])


def test_solve_simplex_least_squares_directly():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([1.0, 0.0, 1.0])

    x, info = solve_simplex_least_squares(a, b)

    np.testing.assert_allclose(x, [1.0, 0.0], atol=1e-12)
    assert info["support_size"] == 1
    assert info["residual_norm"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("confusion", "sample_probs", "priors", "name"),
    [
        (np.eye(K)[:, :4], np.ones((3, K)), np.ones(K), "confusion"),
        (np.ones(K), np.ones((3, K)), np.ones(K), "confusion"),
        (np.zeros((0, 0)), np.ones((3, 0)), np.ones(0), "confusion"),
        (np.eye(K), np.ones((3, K - 1)), np.ones(K), "sample_probs"),
        (np.eye(K), np.ones(K), np.ones(K), "sample_probs"),
        (np.eye(K), np.ones((0, K)), np.ones(K), "sample_probs"),
        (np.eye(K), np.ones((3, K)), np.ones(K + 1), "reference_priors"),
        (np.eye(K), np.ones((3, K)), np.ones((K, 1)), "reference_priors"),
    ],
)
def test_wrong_shape_raises(confusion, sample_probs, priors, name):
    with pytest.raises(ValueError, match=name) as error:
        make_solver().solve(confusion, sample_probs, priors)

    assert "shape" in str(error.value)


@pytest.mark.parametrize("name", ["confusion", "sample_probs", "reference_priors"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_input_raises(name, bad_value):
    arrays = {
        "confusion": np.eye(K),
        "sample_probs": np.full((4, K), 1 / K),
        "reference_priors": np.full(K, 1 / K),
    }
    arrays[name].flat[1] = bad_value

    with pytest.raises(ValueError, match=f"{name} of shape .* non-finite"):
        make_solver().solve(**arrays)


def test_options_reject_unknown_key():
    with pytest.raises(pydantic.ValidationError):
        NNLSSolver.Options(sum_wieght=10.0)


def test_options_reject_non_positive_weight():
    with pytest.raises(pydantic.ValidationError):
        NNLSSolver.Options(sum_weight=0.0)

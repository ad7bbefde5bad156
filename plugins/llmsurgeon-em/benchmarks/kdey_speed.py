"""Time one ``kdey`` solve against ``em-bbse`` and QuaPy's KDEyML on the same posteriors.

Usage:
    python plugins/llmsurgeon-em/benchmarks/kdey_speed.py [--k 24] [--samples 1000]
        [--reference 3800] [--repeats 7] [--skip-quapy] [--out FILE]

The posteriors are synthetic: each domain's are Dirichlet draws around a row
of a confusion matrix with 0.6 on the diagonal, as in the speed part of
``benchmarks/solvers.py``. Every method is timed ``--repeats`` times in the
same run and the median is printed, with its ratio to QuaPy's, because a
shared machine makes single timings noisy. QuaPy's time includes fitting its
per-domain ``KernelDensity`` objects, because ``kdey`` builds its densities
inside every solve. The Markdown section goes to stdout and to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmsurgeon_core import ReferencePredictions
from llmsurgeon_core.calibration import soft_confusion
from llmsurgeon_em import EMSolver, KDEySolver, kde_log_densities


def synthetic_posteriors(
    k: int, n_reference: int, n_samples: int, seed: int = 0
) -> tuple[ReferencePredictions, np.ndarray]:
    """Draw reference predictions with labels and target samples at a random mixture."""
    rng = np.random.default_rng(seed)
    confusion = 0.6 * np.eye(k) + 0.4 * rng.dirichlet(np.ones(k), size=k)
    labels = rng.integers(0, k, size=n_reference)
    probs = np.array([rng.dirichlet(30 * confusion[y]) for y in labels])
    drawn = rng.choice(k, size=n_samples, p=rng.dirichlet(np.ones(k)))
    samples = np.array([rng.dirichlet(30 * confusion[y]) for y in drawn])
    return ReferencePredictions(probs, labels), samples


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quapy_kdey(reference: ReferencePredictions, samples: np.ndarray) -> np.ndarray:
    """Fit QuaPy's KDEyML at bandwidth 0.1 on the reference posteriors and aggregate."""
    from quapy.method.aggregative import KDEyML
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoredClassifier(ClassifierMixin, BaseEstimator):
        """A fitted stand-in whose inputs already are posteriors."""

        def fit(self, x, y):
            return self

        def predict_proba(self, x):
            return x

    classifier = ScoredClassifier()
    classifier.classes_ = np.arange(samples.shape[1])
    kdey = KDEyML(classifier, fit_classifier=False, val_split=None, bandwidth=0.1)
    kdey.aggregation_fit(reference.probs, reference.labels)
    return kdey.aggregate(samples)


def time_methods(
    reference: ReferencePredictions, samples: np.ndarray, repeats: int, with_quapy: bool
) -> dict[str, float]:
    """Return the median seconds of each method on the same inputs."""
    k = samples.shape[1]
    confusion = soft_confusion(reference.probs, reference.labels, k)
    priors = np.bincount(reference.labels, minlength=k) / len(reference.labels)
    kdey = KDEySolver(KDEySolver.Options())
    em = EMSolver(EMSolver.Options())
    methods: dict[str, Callable[[], object]] = {
        "kdey": lambda: kdey.solve(confusion, samples, priors, reference),
        "kdey, densities only": lambda: kde_log_densities(
            samples, reference.probs, reference.labels, k, 0.1
        ),
        "em-bbse": lambda: em.solve(confusion, samples, priors, reference),
    }
    if with_quapy:
        methods["QuaPy KDEyML"] = lambda: quapy_kdey(reference, samples)
    return {name: median_seconds(run, repeats) for name, run in methods.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=24, help="number of domains")
    parser.add_argument("--samples", type=int, default=1000, help="number of target samples")
    parser.add_argument("--reference", type=int, default=3800, help="number of reference rows")
    parser.add_argument("--repeats", type=int, default=7, help="timings per method")
    parser.add_argument(
        "--skip-quapy",
        action="store_true",
        help="time our solvers only (QuaPy took minutes per solve at K = 87)",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown section here")
    arguments = parser.parse_args()

    reference, samples = synthetic_posteriors(arguments.k, arguments.reference, arguments.samples)
    seconds = time_methods(reference, samples, arguments.repeats, not arguments.skip_quapy)
    baseline = seconds.get("QuaPy KDEyML")
    lines = [
        f"### kdey: K = {arguments.k}, {arguments.samples} samples, "
        f"{arguments.reference} reference rows",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}. "
        f"Median of {arguments.repeats} timings per method in one run, on a shared machine.",
        "",
        "| method | median seconds | ratio to QuaPy KDEyML |",
        "| --- | ---: | ---: |",
    ]
    for name, value in seconds.items():
        ratio = f"{value / baseline:.2f}" if baseline else ""
        lines.append(f"| {name} | {value:.4f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if arguments.out:
        arguments.out.write_text(text)


if __name__ == "__main__":
    main()

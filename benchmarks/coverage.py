"""Coverage of bootstrap intervals on synthetic posteriors, against the size of the calibration.

Every posterior is drawn independently, so the only departures from nominal
coverage come from the solver and the bootstrap, not from documents whose
chunks resemble each other. Run:

    python benchmarks/coverage.py --k 24 --reference 150 1000 --pseudo-samples 0 0.5

Each trial draws a mixture from Dirichlet(``--mixture-concentration``), by
default uniformly from the simplex, ``--reference`` rows per domain for the
calibration and ``--samples`` target rows. A row of true domain ``i`` is a
draw from Dirichlet(``concentration * C[i]``), where ``C`` is 0.7 times the
identity plus 0.3 times a random row-stochastic matrix. Every
``--pseudo-samples`` value is run on the same trials.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from llmsurgeon_core import ReferencePredictions, load_registry
from llmsurgeon_core.estimation import bootstrap_intervals, solve_once

# Shares by size, for coverage per bin: near zero, small, medium, large.
SHARE_BINS = [0.0, 0.005, 0.02, 0.05, 1.0]


def draw_posteriors(
    labels: np.ndarray, confusion: np.ndarray, concentration: float, rng: np.random.Generator
) -> np.ndarray:
    """Return one Dirichlet posterior row per label, centred on that label's row of ``C``."""
    return np.array([rng.dirichlet(concentration * confusion[y]) for y in labels])


def coverage(
    args: argparse.Namespace, n_reference: int, pseudo_samples: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return whether each true share was inside its interval, and the shares, over all trials."""
    rng = np.random.default_rng(args.seed)
    k = args.k
    confusion = 0.7 * np.eye(k) + 0.3 * rng.dirichlet(np.ones(k), size=k)
    cls = load_registry().get("solver", args.solver).obj
    solver = cls(cls.Options())
    inside, shares = [], []
    for trial in range(args.trials):
        labels = np.repeat(np.arange(k), n_reference)
        reference = ReferencePredictions(
            draw_posteriors(labels, confusion, args.concentration, rng), labels
        )
        mixture = rng.dirichlet(np.full(k, args.mixture_concentration))
        sample_labels = rng.choice(k, args.samples, p=mixture)
        samples = draw_posteriors(sample_labels, confusion, args.concentration, rng)
        estimate, _ = solve_once(solver, reference, samples, k)
        interval, _ = bootstrap_intervals(
            solver,
            reference,
            samples,
            args.resamples,
            args.level,
            trial,
            pseudo_samples=pseudo_samples,
            estimate=estimate,
        )
        inside.append((interval[:, 0] <= mixture) & (mixture <= interval[:, 1]))
        shares.append(mixture)
    return np.concatenate(inside), np.concatenate(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver", default="nnls", help="Registered solver name.")
    parser.add_argument("--k", type=int, default=24, help="Number of domains.")
    parser.add_argument(
        "--reference", type=int, nargs="+", default=[150, 1000], help="Reference rows per domain."
    )
    parser.add_argument("--samples", type=int, default=1000, help="Target samples per trial.")
    parser.add_argument("--trials", type=int, default=60, help="Mixtures per reference size.")
    parser.add_argument("--resamples", type=int, default=200, help="Bootstrap resamples.")
    parser.add_argument("--level", type=float, default=0.9, help="Nominal interval coverage.")
    parser.add_argument(
        "--concentration", type=float, default=20.0, help="Dirichlet concentration of a row."
    )
    parser.add_argument(
        "--mixture-concentration",
        type=float,
        default=1.0,
        help="Dirichlet parameter of the mixtures. Values below 1 give many tiny shares.",
    )
    parser.add_argument(
        "--pseudo-samples",
        type=float,
        nargs="+",
        default=[0.5],
        help="Values of the bootstrap's pseudo_samples to compare.",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    bins = list(itertools.pairwise(SHARE_BINS))
    print(
        f"{args.solver}, K = {args.k}, {args.samples} samples, {args.trials} mixtures, "
        f"{args.resamples} resamples, nominal {100 * args.level:g}%, mixtures from "
        f"Dirichlet({args.mixture_concentration:g})"
    )
    header = " | ".join(f"share {low:g}–{high:g}" for low, high in bins)
    print(f"| reference rows per domain | pseudo samples | coverage % | {header} |")
    print("| ---: | ---: | ---: |" + " ---: |" * len(bins))
    for n_reference, pseudo_samples in itertools.product(args.reference, args.pseudo_samples):
        inside, shares = coverage(args, n_reference, pseudo_samples)
        cells = []
        for low, high in bins:
            chosen = (shares >= low) & (shares < high)
            if chosen.any():
                cells.append(f"{100 * inside[chosen].mean():.1f} ({chosen.sum()})")
            else:
                cells.append("–")
        print(
            f"| {n_reference} | {pseudo_samples:g} | {100 * inside.mean():.1f} | "
            f"{' | '.join(cells)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

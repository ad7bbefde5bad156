"""The ``ray`` executor: sampling on sampler replicas, classification as a Ray Data job.

Sampling runs one sampler per Ray actor, and only the actors load the model.
Every ``SampleRequest`` is deterministic from its indices and seed, so any
replica can run any batch. The driver yields the batches in request order,
so the pipeline appends them to ``samples.jsonl`` in index order, as a local
run does. Classification is a ``map_batches`` job whose workers each load the
saved classifier once from the calibration directory.

Ray is imported when a stage first needs it, so registering the executor and
validating its options do not load it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from llmsurgeon_core import ComponentOptions, GeneratedText, Sampler, SampleRequest, cache_dir
from llmsurgeon_core.executors import Executor, SavedClassifier

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["RayExecutor", "RayExecutorOptions", "merge_usage"]

logger = logging.getLogger(__name__)


class RayExecutorOptions(ComponentOptions):
    """Options of the ``ray`` executor."""

    address: str | None = Field(
        None,
        description="Ray cluster to join: 'auto' for the cluster that `ray start` runs on this "
        "node, 'HOST:PORT' for its head node, or 'ray://HOST:10001' for Ray Client. null "
        "starts a single-node Ray instance in this process and stops it afterwards.",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="CPUs of the Ray instance that the executor starts (address null only); "
        "null lets Ray count them.",
    )
    object_store_memory: int | None = Field(
        None,
        ge=78_643_200,
        description="Object store size in bytes of the Ray instance that the executor starts "
        "(address null only; Ray's minimum is 75 MiB); null lets Ray choose.",
    )
    sampler_replicas: int = Field(
        2, ge=1, description="Sampler actors, each holding its own copy of the target model."
    )
    sampler_num_cpus: float = Field(1.0, ge=0, description="CPUs reserved by each sampler actor.")
    sampler_num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs reserved by each sampler actor; for vLLM, its tensor_parallel_size.",
    )
    batches_in_flight: int = Field(
        2, ge=1, description="Batches queued on each sampler actor at a time."
    )
    classify_workers: int = Field(
        2, ge=1, description="Classifier actors of the Ray Data job, each loading one copy."
    )
    classify_num_cpus: float = Field(
        1.0, ge=0, description="CPUs reserved by each classifier actor."
    )
    classify_num_gpus: float = Field(
        0.0, ge=0, description="GPUs reserved by each classifier actor."
    )
    classify_batch_size: int = Field(
        256, ge=1, description="Texts passed to the classifier's predict_proba at a time."
    )

    @model_validator(mode="after")
    def _check_local_settings(self) -> RayExecutorOptions:
        if self.address is not None:
            for name in ("num_cpus", "object_store_memory"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} sizes a Ray instance that the executor starts, but address "
                        f"{self.address!r} joins a running cluster; set {name} in `ray start` "
                        "or remove the address"
                    )
        return self


class SamplerReplica:
    """One sampler in one Ray actor, built from the driver's sampler class and options."""

    def __init__(self, sampler_cls: type[Sampler], options: ComponentOptions, cache: Path) -> None:
        self.sampler = sampler_cls(options)
        self.sampler.prepare(cache)

    def protocol(self) -> dict[str, Any]:
        return self.sampler.protocol()

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        return self.sampler.generate(request)

    def usage(self) -> dict[str, Any]:
        return self.sampler.usage()


class ClassifierWorker:
    """A Ray Data callable class: loads the saved classifier once, then scores batches."""

    def __init__(self, classifier: SavedClassifier) -> None:
        self.model = classifier.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        probs = self.model.predict_proba([str(text) for text in batch["text"]])
        return {"index": batch["index"], "probs": np.asarray(probs, dtype=np.float64)}


def merge_usage(usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum the numeric counters of several samplers' ``usage()``; other values keep the first."""
    merged: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key in merged and numeric and isinstance(merged[key], (int, float)):
                merged[key] += value
            else:
                merged.setdefault(key, value)
    return merged


class RayExecutor(Executor):
    """Runs sampling on sampler actors and classification as a Ray Data job.

    Joins the cluster at ``address``, or starts a single-node instance.
    :meth:`close` shuts down an instance that the executor started. From a
    cluster it joined, it only disconnects, and it leaves a Ray session that
    the caller had initialized running.
    """

    Options = RayExecutorOptions
    options: RayExecutorOptions

    def __init__(self, options: RayExecutorOptions) -> None:
        super().__init__(options)
        self._connected = False
        self._usage: dict[str, Any] = {}
        self._replicas: list[Any] = []

    def _ray(self) -> ModuleType:
        """Import Ray and connect to it on first use."""
        import ray

        if not self._connected and not ray.is_initialized():
            if self.options.address is None:
                logger.info("starting a single-node Ray instance")
                ray.init(
                    num_cpus=self.options.num_cpus,
                    object_store_memory=self.options.object_store_memory,
                    include_dashboard=False,
                )
            else:
                logger.info("joining the Ray cluster at %s", self.options.address)
                ray.init(address=self.options.address)
            self._connected = True
        return ray

    def close(self) -> None:
        self._stop_replicas()
        if self._connected:
            import ray

            ray.shutdown()
            logger.info("Ray session shut down")
            self._connected = False

    # Sampling

    def _start_replicas(self, sampler: Sampler, cache: Path) -> list[Any]:
        """Start the sampler actors, unless :meth:`prepare` already did."""
        if not self._replicas:
            ray = self._ray()
            replica_cls = ray.remote(
                num_cpus=self.options.sampler_num_cpus, num_gpus=self.options.sampler_num_gpus
            )(SamplerReplica)
            self._replicas = [
                replica_cls.remote(type(sampler), sampler.options, cache)
                for _ in range(self.options.sampler_replicas)
            ]
        return self._replicas

    def _stop_replicas(self) -> None:
        """Kill the sampler actors, releasing their CPUs, GPUs and model copies."""
        if self._replicas:
            import ray

            for replica in self._replicas:
                ray.kill(replica)
            self._replicas = []

    def prepare(self, sampler: Sampler, cache_dir: Path) -> dict[str, Any]:
        """Start the sampler actors, which prepare their samplers, and return one's protocol.

        This process does not prepare ``sampler``, so it need not load the model.
        """
        replicas = self._start_replicas(sampler, cache_dir)
        return self._ray().get(replicas[0].protocol.remote())

    def generate(
        self, sampler: Sampler, requests: Sequence[SampleRequest]
    ) -> Iterator[list[GeneratedText]]:
        if not requests:
            return
        ray = self._ray()
        replicas = self._start_replicas(sampler, cache_dir())
        try:
            for position, batch in enumerate(self._dispatch(ray, replicas, requests)):
                if position == len(requests) - 1:
                    # Batches are yielded in order, so every batch has finished
                    # by now and the counters are final. They are read before
                    # the last yield because a caller may stop after it.
                    self._usage = merge_usage(ray.get([r.usage.remote() for r in replicas]))
                yield batch
        finally:
            self._stop_replicas()

    def _dispatch(
        self, ray: ModuleType, replicas: list[Any], requests: Sequence[SampleRequest]
    ) -> Iterator[list[GeneratedText]]:
        """Keep every replica busy and yield finished batches in request order.

        A replica gets its next batch when one of its own finishes. Batches
        that finish early wait in ``finished`` until every batch before them
        has been yielded. The replicas run at most ``window`` batches ahead of
        the next batch to yield, so that buffer stays small.
        """
        window = len(replicas) * self.options.batches_in_flight * 2
        pending: dict[Any, tuple[int, Any]] = {}
        finished: dict[int, list[GeneratedText]] = {}
        next_to_submit = 0
        next_to_yield = 0

        def submit(replica: Any) -> None:
            nonlocal next_to_submit
            if next_to_submit < len(requests) and next_to_submit < next_to_yield + window:
                reference = replica.generate.remote(requests[next_to_submit])
                pending[reference] = (next_to_submit, replica)
                next_to_submit += 1

        for _ in range(self.options.batches_in_flight):
            for replica in replicas:
                submit(replica)
        idle: list[Any] = []
        while next_to_yield < len(requests):
            ready, _ = ray.wait(list(pending), num_returns=1)
            position, replica = pending.pop(ready[0])
            finished[position] = ray.get(ready[0])
            idle.append(replica)
            while next_to_yield in finished:
                yield finished.pop(next_to_yield)
                next_to_yield += 1
            while idle and next_to_submit < min(len(requests), next_to_yield + window):
                submit(idle.pop(0))

    def usage(self, sampler: Sampler) -> dict[str, Any]:
        """Return the summed usage counters of the sampler replicas of the last run."""
        return self._usage

    # Classification

    def predict_proba(self, classifier: SavedClassifier, texts: Sequence[str]) -> np.ndarray:
        ray = self._ray()
        batch_size = self.options.classify_batch_size
        workers = self.options.classify_workers
        blocks = max(1, min(math.ceil(len(texts) / batch_size), 4 * workers))
        items = [{"index": index, "text": text} for index, text in enumerate(texts)]
        dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            ClassifierWorker,
            fn_constructor_args=(classifier.without_loaded(),),
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=self.options.classify_num_cpus,
            num_gpus=self.options.classify_num_gpus,
        )
        indices: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
            indices.append(batch["index"])
            probs.append(batch["probs"])
        return _in_sample_order(np.concatenate(indices), np.concatenate(probs), len(texts))


def _in_sample_order(indices: np.ndarray, probs: np.ndarray, n_texts: int) -> np.ndarray:
    """Put the rows of a job's output back in sample order, checking that none is missing."""
    order = np.argsort(indices, kind="stable")
    if not np.array_equal(indices[order], np.arange(n_texts)):
        raise RuntimeError(
            f"the Ray Data job returned {len(indices)} rows for {n_texts} texts, or repeated "
            "some; rerun `llmsurgeon estimate`"
        )
    return probs[order]

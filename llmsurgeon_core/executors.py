"""Executors: where the sampling and classification stages do their work.

The pipeline hands each stage to the executor named in the config's
``executor`` section. The core's ``local`` executor works in the calling
process; plugins register others (``ray`` in llmsurgeon-ray) through the
``register_executors`` hook. Every executor returns the same values in the
same order, so a run's files do not depend on where it ran.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from .components import Classifier, ComponentOptions, GeneratedText, Sampler, SampleRequest
from .hookspecs import hookimpl

__all__ = ["Executor", "LocalExecutor", "SavedClassifier"]


@dataclasses.dataclass(frozen=True)
class SavedClassifier:
    """A fitted classifier saved in a calibration directory, loadable by any worker that can
    read that directory.

    Attributes:
        cls: the registered classifier class.
        options: its validated options.
        directory: the ``classifier/`` folder of the calibration directory.
        loaded: the classifier already loaded in this process, if any. Workers
            in other processes load their own from ``directory``.
    """

    cls: type[Classifier]
    options: ComponentOptions
    directory: Path
    loaded: Classifier | None = dataclasses.field(default=None, compare=False, repr=False)

    def load(self) -> Classifier:
        """Return the loaded classifier, reading it from ``directory`` if this process has none."""
        if self.loaded is not None:
            return self.loaded
        return self.cls.load(self.directory, self.options)

    def without_loaded(self) -> SavedClassifier:
        """Return a copy without the loaded classifier, cheap to send to another process."""
        return dataclasses.replace(self, loaded=None)


class Executor(abc.ABC):
    """Runs the sampling and classification stages of an audit.

    An executor is a context manager: :meth:`close` releases whatever workers
    it started. It may start them lazily, on the first call that needs them.
    """

    Options: ClassVar[type[ComponentOptions]] = ComponentOptions

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers this executor started; the default started none."""

    def prepare(self, sampler: Sampler, cache_dir: Path) -> dict[str, Any]:
        """Prepare the sampler wherever it will generate, and return its protocol.

        The default prepares ``sampler`` in this process. An executor whose
        replicas generate elsewhere prepares them instead, so this process
        need not load the model, and returns a replica's protocol.
        """
        sampler.prepare(cache_dir)
        return sampler.protocol()

    @abc.abstractmethod
    def generate(
        self, sampler: Sampler, requests: Sequence[SampleRequest]
    ) -> Iterator[list[GeneratedText]]:
        """Yield the samples of each request, in the order of ``requests``.

        Args:
            sampler: the sampler passed to :meth:`prepare`, or a prepared one.
                An executor may use it in this process or build replicas
                elsewhere from its class and options. Each request is
                deterministic from its indices and seed, so a replica returns
                what ``sampler.generate`` would.
            requests: the batches still missing from the run, in index order.
        """

    def usage(self, sampler: Sampler) -> dict[str, Any]:
        """Return the sampling usage counters of the last :meth:`generate`.

        The default returns the counters of ``sampler``, which did the work.
        """
        return sampler.usage()

    @abc.abstractmethod
    def predict_proba(self, classifier: SavedClassifier, texts: Sequence[str]) -> np.ndarray:
        """Return the ``(len(texts), K)`` probabilities of ``texts``, in their order.

        ``texts`` is not empty.
        """


class LocalExecutorOptions(ComponentOptions):
    """Options of the ``local`` executor."""

    classify_batch_size: int = Field(
        256, ge=1, description="Texts passed to the classifier's predict_proba at a time."
    )


class LocalExecutor(Executor):
    """Samples and classifies in the calling process, one batch after another."""

    Options = LocalExecutorOptions
    options: LocalExecutorOptions

    def generate(
        self, sampler: Sampler, requests: Sequence[SampleRequest]
    ) -> Iterator[list[GeneratedText]]:
        for request in requests:
            yield sampler.generate(request)

    def predict_proba(self, classifier: SavedClassifier, texts: Sequence[str]) -> np.ndarray:
        model = classifier.load()
        size = self.options.classify_batch_size
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        probs = [model.predict_proba(b) for b in tqdm(batches, desc="classify", unit="batch")]
        return np.vstack(probs)


@hookimpl
def register_executors(register: Callable[[str, type], None]) -> None:
    register("local", LocalExecutor)

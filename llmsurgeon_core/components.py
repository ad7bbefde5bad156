"""Interfaces that sampler, classifier and solver plugins implement.

A component is a class with a nested pydantic ``Options`` model. The host
validates the ``options`` mapping of the config against it and passes the
validated model to the constructor, so a component only receives validated options.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import ConfigError

__all__ = [
    "Classifier",
    "ComponentOptions",
    "GeneratedText",
    "ReferencePredictions",
    "SampleRequest",
    "Sampler",
    "SolveResult",
    "Solver",
]


class ComponentOptions(BaseModel):
    """Base of every component's options: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class SampleRequest:
    """One batch of samples to generate.

    ``indices`` are the run-wide sample numbers. A sampler derives its random
    state from ``seed`` and ``indices[0]`` only, so a batch regenerated after a
    crash is identical to the one that was lost.
    """

    indices: Sequence[int]
    seed: int


@dataclass
class GeneratedText:
    """A sample as the sampler returns it, before the run numbers it."""

    prompt: str
    text: str
    n_tokens: int
    finish_reason: str
    metadata: dict[str, Any] = field(default_factory=dict)


class Sampler(abc.ABC):
    """Draws texts from a target model.

    Implementations generate ancestrally at temperature 1 with no top-k or
    top-p truncation unless their options ask for it.
    """

    Options: ClassVar[type[ComponentOptions]] = ComponentOptions

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @property
    @abc.abstractmethod
    def n_samples(self) -> int:
        """Number of samples the audit should hold when sampling is done."""

    @property
    def batch_size(self) -> int:
        """Number of samples requested from :meth:`generate` at a time."""
        return 16

    def prepare(self, cache_dir: Path) -> None:
        """Load the model, building whatever it needs under ``cache_dir``."""

    @abc.abstractmethod
    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        """Return one ``GeneratedText`` per index of ``request``, in order."""

    def continue_prompts(
        self, prompts: Sequence[str], seed: int, domains: Sequence[str] | None = None
    ) -> list[GeneratedText]:
        """Return one continuation per prompt, in order, with the prompt left out of ``text``.

        Calibration in generation mode (``calibrate.mode: generation``) prompts
        the target with prefixes of reference texts and classifies what it
        writes next. The sampler decodes as in :meth:`generate`. ``domains``
        names the domain each prompt was cut from, for a target that marks
        domains with tokens of its own; other samplers ignore it. The default
        raises ``ConfigError``, because not every target can be given a prompt.
        """
        raise ConfigError(
            f"sampler {type(self).__name__} cannot continue prompts, which "
            "calibrate.mode 'generation' needs; set calibrate.mode to 'reference' or use a "
            "sampler that implements continue_prompts (hf does)"
        )

    def protocol(self) -> dict[str, Any]:
        """Return the sampling protocol recorded in the run manifest."""
        return self.options.model_dump(mode="json")

    def usage(self) -> dict[str, Any]:
        """Return counters of this process's sampling (tokens, requests, retries).

        The run manifest records them after sampling; the default has none.
        """
        return {}

    def decoding(self) -> dict[str, Any]:
        """Return the decoding settings that can truncate the model's distribution.

        The default reads ``temperature``, ``top_k``, ``top_p`` and ``min_p``
        from the options where they exist. The report flags a temperature below
        1, a positive ``top_k``, a ``top_p`` below 1 or a positive ``min_p``.
        """
        names = ("temperature", "top_k", "top_p", "min_p")
        return {name: getattr(self.options, name) for name in names if hasattr(self.options, name)}


class Classifier(abc.ABC):
    """A probabilistic domain classifier with a scikit-learn style API.

    ``__init__`` only stores options; ``fit`` learns and returns ``self``.
    """

    Options: ClassVar[type[ComponentOptions]] = ComponentOptions

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> Classifier:
        """Fit on ``texts`` with integer ``labels`` in ``[0, n_classes)``."""

    @abc.abstractmethod
    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Return an ``(n_texts, n_classes)`` array whose rows sum to 1."""

    def embed(self, texts: Iterable[str]) -> Any:
        """Return the classifier's representation of ``texts``, one row per text.

        The report's sample explorer finds each sample's nearest reference
        texts by cosine similarity of these rows. The result is an
        ``(n_texts, d)`` NumPy array or SciPy sparse matrix. The default is
        :meth:`predict_proba`; a classifier with richer features (TF-IDF
        vectors, a text encoder's embeddings) overrides it.
        """
        return self.predict_proba(texts)

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted classifier into the empty ``directory``."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path, options: ComponentOptions) -> Classifier:
        """Read a classifier that :meth:`save` wrote.

        Save in formats that run no code when loaded: the host rejects a
        calibration whose classifier files are pickles unless the config sets
        ``calibrate.trust_pickle``. A classifier that can still read a pickle
        takes a keyword ``trust_pickle`` and reads it only when that is true.
        """


@dataclass
class SolveResult:
    """A mixture estimate on the simplex and the solver's own diagnostics."""

    mixture: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferencePredictions:
    """Out-of-fold predictions of the reference chunks behind the confusion matrix.

    Attributes:
        probs: ``(N, K)`` out-of-fold probabilities; each chunk was scored by a
            model that never saw it.
        labels: ``(N,)`` true domain index of each chunk, in ``[0, K)``.
        groups: ``(N,)`` number of the document each chunk was cut from, or
            None where unknown. The bootstrap resamples whole documents when
            they are known, since chunks of one document are not independent.
    """

    probs: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None


class Solver(abc.ABC):
    """Estimates the mixture ``pi`` from ``p_bar ≈ confusion.T @ pi``.

    A solver that needs more than ``C`` and the reference priors (hard
    confusion counts, a calibration map fitted on reference predictions) sets
    ``requires_reference`` and reads ``reference``. The bootstrap passes the
    resampled reference predictions together with the ``C`` built from them.
    """

    Options: ClassVar[type[ComponentOptions]] = ComponentOptions
    requires_reference: ClassVar[bool] = False

    def __init__(self, options: ComponentOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        """Estimate the mixture of the target samples.

        Args:
            confusion: ``(K, K)`` row-stochastic soft confusion matrix; row ``i``
                is the mean out-of-fold predicted distribution of domain ``i``.
            sample_probs: ``(n, K)`` predicted probabilities of the target
                samples; their column mean is ``p_bar``.
            reference_priors: ``(K,)`` domain shares of the reference corpus the
                classifier was trained on, for likelihood-based solvers.
            reference: the out-of-fold reference predictions that ``confusion``
                was computed from. The host always passes them; a solver with
                ``requires_reference`` raises ``ValueError`` when they are missing.

        Returns:
            A ``SolveResult`` whose ``mixture`` is non-negative and sums to 1.
        """

"""llmsurgeon: estimate a language model's pretraining data mixture from its samples."""

from __future__ import annotations

from .api import audit, calibrate, estimate
from .components import (
    Classifier,
    ComponentOptions,
    GeneratedText,
    ReferencePredictions,
    Sampler,
    SampleRequest,
    Solver,
    SolveResult,
)
from .corpus import ReferenceCorpus, build_reference_corpus, chunk_text, iter_domain_chunks
from .errors import (
    CalibrationError,
    ConfigError,
    InvalidInputError,
    LlmsurgeonError,
    PluginError,
    RunDirectoryError,
    TaxonomyError,
)
from .hookspecs import hookimpl
from .paths import cache_dir
from .registry import Registry, load_registry
from .taxonomy import Domain, Recipe, Taxonomy, load_taxonomy_file, resolve_taxonomy

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "Classifier",
    "ComponentOptions",
    "ConfigError",
    "Domain",
    "GeneratedText",
    "InvalidInputError",
    "LlmsurgeonError",
    "PluginError",
    "Recipe",
    "ReferenceCorpus",
    "ReferencePredictions",
    "Registry",
    "RunDirectoryError",
    "SampleRequest",
    "Sampler",
    "SolveResult",
    "Solver",
    "Taxonomy",
    "TaxonomyError",
    "__version__",
    "audit",
    "build_reference_corpus",
    "cache_dir",
    "calibrate",
    "chunk_text",
    "estimate",
    "hookimpl",
    "iter_domain_chunks",
    "load_registry",
    "load_taxonomy_file",
    "resolve_taxonomy",
]

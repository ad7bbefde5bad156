"""Entry-point module that registers the ``embedding-lgbm`` classifier.

The classifier module imports sentence-transformers, torch and LightGBM only
when a classifier embeds, fits or loads, so loading this plugin stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_classifiers(register: Callable[[str, type], None]) -> None:
    from .classifier import EmbeddingLgbmClassifier

    register("embedding-lgbm", EmbeddingLgbmClassifier)

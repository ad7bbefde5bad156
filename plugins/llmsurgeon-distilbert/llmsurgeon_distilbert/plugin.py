"""Entry-point module that registers the ``distilbert`` classifier.

The classifier module imports torch and transformers only when a classifier
is fitted or loaded, so loading this plugin keeps the command line's start fast.
"""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def register_classifiers(register: Callable[[str, type], None]) -> None:
    from .classifier import DistilBertClassifier

    register("distilbert", DistilBertClassifier)

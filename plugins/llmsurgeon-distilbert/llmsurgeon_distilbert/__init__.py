"""The ``distilbert`` classifier of llmsurgeon: a fine-tuned transformer encoder."""

from __future__ import annotations

from .classifier import DistilBertClassifier, DistilBertOptions
from .scratch import write_untrained_model

__all__ = ["DistilBertClassifier", "DistilBertOptions", "write_untrained_model"]

"""The ``embedding-lgbm`` classifier of llmsurgeon: sentence embeddings and LightGBM."""

from __future__ import annotations

from .classifier import EmbeddingLgbmClassifier, EmbeddingLgbmOptions
from .embedding import EmbeddingCache, Encoder

__all__ = ["EmbeddingCache", "EmbeddingLgbmClassifier", "EmbeddingLgbmOptions", "Encoder"]

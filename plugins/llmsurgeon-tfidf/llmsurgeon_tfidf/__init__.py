"""The ``tfidf`` classifier of llmsurgeon: TF-IDF features and logistic regression."""

from __future__ import annotations

from .classifier import TfidfClassifier, TfidfOptions

__all__ = ["TfidfClassifier", "TfidfOptions"]

"""The ``distilbert`` classifier passes the core's conformance checks on real text."""

from __future__ import annotations

from llmsurgeon_core.testing import check_classifier
from llmsurgeon_distilbert import DistilBertClassifier


def test_distilbert_conforms(real_texts, tiny_model_dir):
    options = DistilBertClassifier.Options(
        model=str(tiny_model_dir),
        device="cpu",
        max_length=32,
        max_steps=3,
        batch_size=8,
        validation_fraction=0.0,
    )

    check_classifier(DistilBertClassifier, real_texts.texts, real_texts.labels, options)

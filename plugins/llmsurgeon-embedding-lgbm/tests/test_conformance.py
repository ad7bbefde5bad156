"""The ``embedding-lgbm`` classifier passes the core's conformance checks on real text."""

from __future__ import annotations

from llmsurgeon_core.testing import check_classifier
from llmsurgeon_embedding_lgbm import EmbeddingLgbmClassifier


def test_embedding_lgbm_conforms(real_texts, tiny_encoder_dir, tmp_path):
    options = EmbeddingLgbmClassifier.Options(
        model=str(tiny_encoder_dir),
        device="cpu",
        cache_dir=str(tmp_path),
        n_estimators=20,
        min_child_samples=3,
    )

    check_classifier(EmbeddingLgbmClassifier, real_texts.texts, real_texts.labels, options)

"""The ``tfidf`` classifier passes the core's conformance checks on real text."""

from __future__ import annotations

import numpy as np

from llmsurgeon_core.testing import check_classifier
from llmsurgeon_tfidf import TfidfClassifier

PER_DOMAIN = 40


def test_tfidf_conforms(real_text_split):
    train, _ = real_text_split
    # The first chunks of each domain keep the three fits of the check fast.
    keep = np.concatenate([np.flatnonzero(train.labels == k)[:PER_DOMAIN] for k in range(4)])
    texts = [train.texts[i] for i in keep]

    check_classifier(TfidfClassifier, texts, train.labels[keep])

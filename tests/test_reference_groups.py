"""Document numbers of reference chunks: the cross-fit keeps documents whole, the bootstrap too."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from llmsurgeon_core import ReferenceCorpus, ReferencePredictions, build_reference_corpus
from llmsurgeon_core.calibration import Calibration, fit_calibration, fold_splits
from llmsurgeon_core.estimation import ReferenceResampler
from llmsurgeon_core.taxonomy import resolve_taxonomy
from llmsurgeon_tfidf import TfidfClassifier


@pytest.fixture(scope="module")
def corpus() -> ReferenceCorpus:
    return build_reference_corpus(
        resolve_taxonomy("demo"), max_per_domain=80, chunk_words=40, seed=0
    )


def test_chunks_carry_their_document_number(corpus):
    assert corpus.groups is not None
    assert len(corpus.groups) == len(corpus.texts)
    # Numbers are unique across domains and a document contains several chunks.
    for group in np.unique(corpus.groups):
        assert len(np.unique(corpus.labels[corpus.groups == group])) == 1
    assert len(np.unique(corpus.groups)) < len(corpus.texts)


def test_cross_fit_keeps_each_document_in_one_fold(corpus):
    held_out_by = {}
    for fold, (train, held_out) in enumerate(fold_splits(corpus, 3, seed=0)):
        assert not set(corpus.groups[train]) & set(corpus.groups[held_out])
        held_out_by.update(dict.fromkeys(held_out.tolist(), fold))
    assert sorted(held_out_by) == list(range(len(corpus.texts)))


def test_too_few_documents_fall_back_to_chunk_folds(corpus):
    # Every chunk of domain 0 from one document: three folds cannot keep it whole.
    groups = corpus.groups.copy()
    groups[corpus.labels == 0] = groups[corpus.labels == 0][0]
    few = ReferenceCorpus(corpus.texts, corpus.labels, corpus.domains, groups)
    splits = fold_splits(few, 3, seed=0)
    domain_zero = np.flatnonzero(corpus.labels == 0)
    assert all(np.isin(domain_zero, held_out).any() for _, held_out in splits)


def test_resampler_draws_whole_documents():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    groups = np.array([10, 10, 11, 20, 21, 21, 21])
    probs = np.eye(2)[labels]
    resampler = ReferenceResampler(ReferencePredictions(probs, labels, groups), 2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        drawn = resampler.draw(rng)
        counts = Counter(drawn.groups.tolist())
        # Each drawn copy of a document brings all of its chunks.
        assert counts[10] % 2 == 0
        assert counts[21] % 3 == 0
        # Each domain draws as many documents as it has.
        assert counts[10] // 2 + counts[11] == 2
        assert counts[20] + counts[21] // 3 == 2


def test_resampler_without_groups_draws_chunks():
    labels = np.array([0, 0, 1, 1, 1])
    resampler = ReferenceResampler(ReferencePredictions(np.eye(2)[labels], labels), 2)
    drawn = resampler.draw(np.random.default_rng(0))
    assert drawn.groups is None
    assert np.bincount(drawn.labels).tolist() == [2, 3]


def test_calibration_keeps_document_numbers(corpus, tmp_path):
    calibration = fit_calibration(
        lambda: TfidfClassifier(TfidfClassifier.Options()),
        corpus,
        3,
        0,
        metadata={"classifier": {"name": "tfidf", "options": {}}},
    )
    assert np.array_equal(calibration.predictions.groups, corpus.groups)
    calibration.save(tmp_path / "calibration")
    loaded = Calibration.load(
        tmp_path / "calibration",
        lambda _name, options, path: TfidfClassifier.load(path, TfidfClassifier.Options(**options)),
    )
    assert np.array_equal(loaded.groups, corpus.groups)
    assert np.array_equal(loaded.oof_probs, calibration.oof_probs)

"""Control audit without a model: held-out real text resampled at a known mixture.

With no generation gap, the estimator alone is measured, so the estimate must
be close to exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmsurgeon_core import build_reference_corpus, load_registry, resolve_taxonomy
from llmsurgeon_core.calibration import fit_calibration
from llmsurgeon_core.corpus import ReferenceCorpus
from llmsurgeon_core.estimation import estimate_mixture
from llmsurgeon_core.metrics import overlap_accuracy

MIXTURE = np.array([0.05, 0.40, 0.30, 0.15, 0.10])


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def split_corpus():
    taxonomy = resolve_taxonomy("demo")
    corpus = build_reference_corpus(taxonomy, max_per_domain=360, chunk_words=40, seed=3)
    order = np.random.default_rng(0).permutation(len(corpus.texts))
    calibration_part, held_out_part = order[: len(order) // 2], order[len(order) // 2 :]

    def subset(indices):
        return ReferenceCorpus(
            [corpus.texts[i] for i in indices], corpus.labels[indices], corpus.domains
        )

    return subset(calibration_part), subset(held_out_part)


def test_held_out_mixture_is_recovered(registry, split_corpus):
    reference, held_out = split_corpus
    tfidf = registry.get("classifier", "tfidf").obj
    nnls = registry.get("solver", "nnls").obj
    calibration = fit_calibration(
        lambda: tfidf(tfidf.Options()), reference, folds=5, seed=0, metadata={}
    )

    rng = np.random.default_rng(1)
    n_samples = 1500
    domains = rng.choice(len(MIXTURE), size=n_samples, p=MIXTURE)
    pools = [np.flatnonzero(held_out.labels == k) for k in range(len(MIXTURE))]
    picks = [rng.choice(pools[k]) for k in domains]
    texts = [held_out.texts[i] for i in picks]
    truth = np.bincount(domains, minlength=len(MIXTURE)) / n_samples

    probs = calibration.classifier.predict_proba(texts)
    estimate = estimate_mixture(
        nnls(nnls.Options()), calibration, probs, n_resamples=100, level=0.9, seed=0
    )

    assert overlap_accuracy(estimate.mixture, truth) > 0.97
    covered = (estimate.interval[:, 0] - 0.01 <= truth) & (truth <= estimate.interval[:, 1] + 0.01)
    assert covered.all()

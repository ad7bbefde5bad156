"""The saved classifier loads without unpickling and predicts what it predicted before."""

from __future__ import annotations

import json
import pickle

import joblib
import numpy as np
import pytest

from llmsurgeon_tfidf import TfidfClassifier

N_CLASSES = 4


@pytest.fixture(scope="module")
def fitted(real_text_split) -> TfidfClassifier:
    train, _ = real_text_split
    options = TfidfClassifier.Options(max_features=2000)
    return TfidfClassifier(options).fit(train.texts, train.labels, N_CLASSES)


def test_saved_files_are_not_pickles(fitted, tmp_path):
    fitted.save(tmp_path)

    for path in tmp_path.iterdir():
        assert not path.read_bytes().startswith(pickle.PROTO), path.name
    with np.load(tmp_path / "model.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"classes", "idf_word", "idf_char", "coef", "intercept"}


def test_loaded_predictions_identical(fitted, real_text_split, tmp_path):
    _, test = real_text_split
    fitted.save(tmp_path)

    loaded = TfidfClassifier.load(tmp_path, fitted.options)

    np.testing.assert_array_equal(
        loaded.predict_proba(test.texts), fitted.predict_proba(test.texts)
    )


def test_single_class_roundtrip(real_text_split, tmp_path):
    train, test = real_text_split
    texts = [t for t, label in zip(train.texts, train.labels) if label == 2]
    single = TfidfClassifier(TfidfClassifier.Options()).fit(texts, np.full(len(texts), 2), 3)
    single.save(tmp_path)

    loaded = TfidfClassifier.load(tmp_path, single.options)

    np.testing.assert_array_equal(loaded.predict_proba(test.texts[:5]), np.tile([0, 0, 1], (5, 1)))


def write_pickle_format(classifier: TfidfClassifier, directory) -> None:
    """Write a directory of format 1, which stored the pipeline with joblib."""
    joblib.dump(
        {
            "pipeline": classifier.pipeline_,
            "classes": classifier.classes_,
            "n_classes": classifier.n_classes_,
        },
        directory / "model.joblib",
    )
    metadata = {
        "format": 1,
        "options": classifier.options.model_dump(mode="json"),
        "n_classes": classifier.n_classes_,
        "classes": classifier.classes_.tolist(),
        "sklearn_version": "1.9.1",
    }
    (directory / "classifier.json").write_text(json.dumps(metadata))


def test_pickle_format_rejected_by_default(fitted, tmp_path):
    write_pickle_format(fitted, tmp_path)

    with pytest.raises(ValueError, match="trust_pickle: true"):
        TfidfClassifier.load(tmp_path, fitted.options)


def test_pickle_format_loads_when_trusted(fitted, real_text_split, tmp_path):
    _, test = real_text_split
    write_pickle_format(fitted, tmp_path)

    loaded = TfidfClassifier.load(tmp_path, fitted.options, trust_pickle=True)

    np.testing.assert_array_equal(
        loaded.predict_proba(test.texts[:20]), fitted.predict_proba(test.texts[:20])
    )

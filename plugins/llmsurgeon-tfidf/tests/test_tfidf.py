from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pydantic
import pytest

from llmsurgeon_core import Classifier, load_registry
from llmsurgeon_tfidf import TfidfClassifier

N_CLASSES = 4


def make_classifier(**options) -> TfidfClassifier:
    return TfidfClassifier(TfidfClassifier.Options(**options))


@pytest.fixture(scope="module")
def fitted(real_text_split) -> TfidfClassifier:
    train, _ = real_text_split
    return make_classifier().fit(train.texts, train.labels, N_CLASSES)


def assert_valid_probabilities(probabilities: np.ndarray, n_texts: int, n_classes: int) -> None:
    assert probabilities.shape == (n_texts, n_classes)
    assert probabilities.dtype == np.float64
    assert np.isfinite(probabilities).all()
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


def test_registers_as_tfidf():
    registration = load_registry().get("classifier", "tfidf")

    assert registration.obj is TfidfClassifier
    assert issubclass(TfidfClassifier, Classifier)


def test_registering_does_not_import_sklearn():
    code = (
        "import sys\n"
        "from llmsurgeon_tfidf.plugin import register_classifiers\n"
        "register_classifiers(lambda name, cls: None)\n"
        "loaded = sorted(m for m in ('sklearn', 'joblib') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ""


def test_held_out_documents_accuracy(fitted, real_text_split):
    _, test = real_text_split

    predicted = fitted.predict_proba(test.texts).argmax(axis=1)

    accuracy = float(np.mean(predicted == test.labels))
    assert accuracy > 0.9
    for label in range(N_CLASSES):
        assert np.mean(predicted[test.labels == label] == label) > 0.8, f"domain {label}"


def test_probabilities_are_valid(fitted, real_text_split):
    _, test = real_text_split

    probabilities = fitted.predict_proba(test.texts)

    assert_valid_probabilities(probabilities, len(test.texts), N_CLASSES)


def test_accepts_generator_of_texts(fitted, real_text_split):
    _, test = real_text_split

    from_list = fitted.predict_proba(test.texts[:10])
    from_generator = fitted.predict_proba(text for text in test.texts[:10])

    np.testing.assert_array_equal(from_generator, from_list)


def test_save_load_roundtrip(fitted, real_text_split, tmp_path):
    _, test = real_text_split
    fitted.save(tmp_path)

    loaded = TfidfClassifier.load(tmp_path, TfidfClassifier.Options())

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classifier.json",
        "model.npz",
        "vocabulary.json",
    ]
    np.testing.assert_array_equal(
        loaded.predict_proba(test.texts), fitted.predict_proba(test.texts)
    )
    assert loaded.options == fitted.options
    metadata = json.loads((tmp_path / "classifier.json").read_text())
    assert metadata["options"]["C"] == fitted.options.C
    assert metadata["n_classes"] == N_CLASSES
    assert "sklearn_version" in metadata


def test_load_warns_on_changed_options(fitted, tmp_path, caplog):
    fitted.save(tmp_path)

    with caplog.at_level(logging.WARNING, logger="llmsurgeon_tfidf.classifier"):
        loaded = TfidfClassifier.load(tmp_path, TfidfClassifier.Options(C=1.5))

    assert loaded.options.C == fitted.options.C
    assert "C: saved 10.0, requested 1.5" in caplog.text


def test_load_rejects_unknown_format(fitted, tmp_path):
    fitted.save(tmp_path)
    metadata = json.loads((tmp_path / "classifier.json").read_text())
    metadata["format"] = 99
    (tmp_path / "classifier.json").write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="format 99"):
        TfidfClassifier.load(tmp_path, TfidfClassifier.Options())


def test_load_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        TfidfClassifier.load(tmp_path / "missing", TfidfClassifier.Options())


def test_absent_class_gets_zero_column(real_text_split):
    train, test = real_text_split
    # Domains 1 and 3 of 6 are missing from the training data.
    keep = np.isin(train.labels, [0, 2])
    labels = np.where(train.labels[keep] == 2, 4, train.labels[keep])

    classifier = make_classifier().fit(
        [t for t, k in zip(train.texts, keep) if k], labels, n_classes=6
    )
    probabilities = classifier.predict_proba(test.texts)

    assert_valid_probabilities(probabilities, len(test.texts), 6)
    assert np.all(probabilities[:, [1, 2, 3, 5]] == 0.0)
    np.testing.assert_array_equal(classifier.classes_, [0, 4])


def test_single_class_predicts_it(real_text_split):
    train, test = real_text_split
    texts = [t for t, label in zip(train.texts, train.labels) if label == 2]

    classifier = make_classifier().fit(texts, np.full(len(texts), 2), n_classes=3)
    probabilities = classifier.predict_proba(test.texts[:5])

    np.testing.assert_array_equal(probabilities, np.tile([0.0, 0.0, 1.0], (5, 1)))


def test_empty_texts(real_text_split):
    train, _ = real_text_split
    texts = [*train.texts, "", "   \n"]
    labels = np.append(train.labels, [0, 1])

    classifier = make_classifier().fit(texts, labels, N_CLASSES)
    probabilities = classifier.predict_proba(["", " ", "\n\t"])

    assert_valid_probabilities(probabilities, 3, N_CLASSES)


def test_no_texts_gives_empty_array(fitted):
    probabilities = fitted.predict_proba([])

    assert probabilities.shape == (0, N_CLASSES)
    assert probabilities.dtype == np.float64


def test_word_features_only(real_text_split):
    train, test = real_text_split

    classifier = make_classifier(char_ngrams=None).fit(train.texts, train.labels, N_CLASSES)
    probabilities = classifier.predict_proba(test.texts)

    assert_valid_probabilities(probabilities, len(test.texts), N_CLASSES)
    assert np.mean(probabilities.argmax(axis=1) == test.labels) > 0.9
    assert [name for name, _ in classifier.pipeline_["features"].transformer_list] == ["word"]


def test_token_pattern_keeps_punctuation():
    texts = ["def f(x): return x[0]", "The Congress shall meet."]

    classifier = make_classifier(min_df=1).fit(texts, np.array([0, 1]), 2)

    vocabulary = classifier.pipeline_["features"].transformer_list[0][1].vocabulary_
    for token in ["f", "x", "(", ")", ":", "[", "0", "."]:
        assert token in vocabulary, token


def test_fit_returns_self():
    classifier = make_classifier(min_df=1)

    assert classifier.fit(["a b", "c d"], np.array([0, 1]), 2) is classifier


def test_too_few_texts_for_min_df():
    classifier = make_classifier(min_df=5)

    with pytest.raises(ValueError, match="min_df=5"):
        classifier.fit(["one text", "another text"], np.array([0, 1]), 2)


@pytest.mark.parametrize(
    ("labels", "n_classes", "message"),
    [
        (np.array([0, 1, 2]), 3, r"shape \(2,\)"),
        (np.array([0, 3]), 3, r"\[0, 3\)"),
        (np.array([-1, 0]), 3, r"\[0, 3\)"),
        (np.array([0.0, 1.0]), 3, "integers"),
        (np.array([0, 1]), 0, "n_classes"),
    ],
)
def test_invalid_labels_raise(labels, n_classes, message):
    with pytest.raises(ValueError, match=message):
        make_classifier(min_df=1).fit(["a b", "c d"], labels, n_classes)


def test_non_string_text_raises(fitted):
    with pytest.raises(TypeError, match="text 1 is a NoneType"):
        fitted.predict_proba(["fine", None])


def test_unfitted_classifier_raises(tmp_path):
    classifier = make_classifier()

    with pytest.raises(RuntimeError, match="not fitted"):
        classifier.predict_proba(["text"])
    with pytest.raises(RuntimeError, match="not fitted"):
        classifier.save(tmp_path)


def test_options_reject_typo():
    with pytest.raises(pydantic.ValidationError, match="max_feature"):
        TfidfClassifier.Options(max_feature=100)


@pytest.mark.parametrize(
    "options",
    [
        {"word_ngrams": (2, 1)},
        {"char_ngrams": (0, 3)},
        {"C": 0.0},
        {"min_df": 0},
        {"class_weight": "balance"},
    ],
)
def test_options_reject_invalid_values(options):
    with pytest.raises(pydantic.ValidationError):
        TfidfClassifier.Options(**options)


def test_options_have_descriptions():
    for name, field in TfidfClassifier.Options.model_fields.items():
        assert field.description, name

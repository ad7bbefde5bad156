from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pydantic
import pytest
import torch

from llmsurgeon_core import Classifier, ConfigError, load_registry
from llmsurgeon_distilbert import DistilBertClassifier, write_untrained_model
from llmsurgeon_distilbert.training import (
    _class_weights,
    _EarlyStopping,
    encode_texts,
    predict_chunks,
)

N_CLASSES = 4


@pytest.fixture
def make_classifier(tiny_model_dir):
    def make(**options) -> DistilBertClassifier:
        defaults = {
            "model": str(tiny_model_dir),
            "device": "cpu",
            "max_length": 32,
            "max_steps": 3,
            "batch_size": 8,
            "validation_fraction": 0.0,
        }
        return DistilBertClassifier(DistilBertClassifier.Options(**(defaults | options)))

    return make


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, real_texts) -> DistilBertClassifier:
    options = DistilBertClassifier.Options(
        model=str(tiny_model_dir), device="cpu", max_length=32, max_steps=3, batch_size=8
    )
    return DistilBertClassifier(options).fit(real_texts.texts, real_texts.labels, N_CLASSES)


def assert_valid_probabilities(probabilities: np.ndarray, n_texts: int, n_classes: int) -> None:
    assert probabilities.shape == (n_texts, n_classes)
    assert probabilities.dtype == np.float64
    assert np.isfinite(probabilities).all()
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)


def test_registers_as_distilbert():
    registration = load_registry().get("classifier", "distilbert")

    assert registration.obj is DistilBertClassifier
    assert issubclass(DistilBertClassifier, Classifier)


def test_registering_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from llmsurgeon_distilbert.plugin import register_classifiers\n"
        "register_classifiers(lambda name, cls: None)\n"
        "print(','.join(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == ""


def test_save_load_roundtrip(fitted, real_texts, tmp_path):
    fitted.save(tmp_path)

    loaded = DistilBertClassifier.load(tmp_path, fitted.options)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.json", "model"]
    saved_files = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved_files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in saved_files)
    np.testing.assert_array_equal(
        loaded.predict_proba(real_texts.texts), fitted.predict_proba(real_texts.texts)
    )
    metadata = json.loads((tmp_path / "classifier.json").read_text())
    assert metadata["classes"] == [0, 1, 2, 3]
    assert len(metadata["history"]) == len(fitted.history_)


def test_saved_model_loads_in_transformers(fitted, real_texts, tmp_path):
    from transformers import AutoModelForSequenceClassification

    fitted.save(tmp_path)

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")

    assert model.config.num_labels == N_CLASSES


def test_long_text_is_mean_of_chunks(fitted, real_texts):
    long_text = " ".join(real_texts.texts[40:46])
    encoded = encode_texts(fitted.tokenizer_, [long_text], 32, 8)

    chunk_probabilities = predict_chunks(fitted.model_, encoded, 64)
    probabilities = fitted.predict_proba([long_text])

    assert len(encoded.input_ids) == 8
    np.testing.assert_allclose(probabilities[0], chunk_probabilities.mean(axis=0), atol=1e-12)


def test_encode_limits_chunks(fitted, real_texts):
    texts = [" ".join(real_texts.texts[:10]), "short", ""]

    chunked = encode_texts(fitted.tokenizer_, texts, 16, 3)
    truncated = encode_texts(fitted.tokenizer_, texts, 16, 1)

    assert np.bincount(chunked.owners).tolist() == [3, 1, 1]
    assert truncated.owners.tolist() == [0, 1, 2]
    assert max(len(ids) for ids in chunked.input_ids) <= 16


def test_truncate_mode_reads_one_chunk(make_classifier, real_texts):
    classifier = make_classifier(long_texts="truncate", max_chunks=4)
    classifier.fit(real_texts.texts, real_texts.labels, N_CLASSES)
    long_text = " ".join(real_texts.texts[:10])

    first_chunk_only = classifier.predict_proba([long_text[: len(long_text) // 2]])
    whole = classifier.predict_proba([long_text])

    np.testing.assert_allclose(whole, first_chunk_only, atol=1e-12)


def test_early_stopping_stops_before_max_steps(make_classifier, real_texts):
    classifier = make_classifier(
        validation_fraction=0.25,
        eval_steps=1,
        patience=1,
        max_steps=40,
        learning_rate=0.5,
        warmup_ratio=0.0,
    )

    classifier.fit(real_texts.texts, real_texts.labels, N_CLASSES)

    steps = [record["step"] for record in classifier.history_]
    losses = [record["validation_loss"] for record in classifier.history_]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) < 40
    assert losses[-1] >= min(losses)


def test_early_stopping_restores_best_weights():
    module = torch.nn.Linear(2, 2)
    stopper = _EarlyStopping(patience=2)
    for step, loss in enumerate([3.0, 2.0, 2.5, 2.6]):
        with torch.no_grad():
            module.weight.fill_(float(step))
        stopper.update(module, step, loss)

    stopper.restore(module)

    assert stopper.stopped
    assert module.weight.detach()[0, 0].item() == 1.0


def test_balanced_class_weights():
    weights = _class_weights(np.array([0, 0, 0, 1]), 2, balanced=True)

    np.testing.assert_allclose(weights, [4 / 6, 2.0])
    assert _class_weights(np.array([0, 1]), 2, balanced=False) is None


def test_empty_texts_predict_valid_rows(fitted):
    probabilities = fitted.predict_proba(["", " ", "\n\t"])

    assert_valid_probabilities(probabilities, 3, N_CLASSES)


def test_no_texts_gives_empty_array(fitted):
    probabilities = fitted.predict_proba([])

    assert probabilities.shape == (0, N_CLASSES)


def test_absent_class_gets_zero_column(make_classifier, real_texts):
    keep = np.isin(real_texts.labels, [0, 2])
    labels = np.where(real_texts.labels[keep] == 2, 4, real_texts.labels[keep])
    texts = [t for t, k in zip(real_texts.texts, keep) if k]

    classifier = make_classifier().fit(texts, labels, n_classes=6)
    probabilities = classifier.predict_proba(real_texts.texts)

    assert_valid_probabilities(probabilities, len(real_texts.texts), 6)
    assert np.all(probabilities[:, [1, 2, 3, 5]] == 0.0)
    assert classifier.model_.config.num_labels == 2


def test_single_class_predicts_it(make_classifier, real_texts, tmp_path):
    texts = real_texts.texts[:5]

    classifier = make_classifier().fit(texts, np.full(5, 2), n_classes=3)
    classifier.save(tmp_path)
    loaded = DistilBertClassifier.load(tmp_path, classifier.options)

    expected = np.tile([0.0, 0.0, 1.0], (5, 1))
    np.testing.assert_array_equal(classifier.predict_proba(texts), expected)
    np.testing.assert_array_equal(loaded.predict_proba(texts), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.json"]


def test_load_warns_on_changed_options(fitted, tmp_path, caplog):
    fitted.save(tmp_path)
    requested = fitted.options.model_copy(update={"epochs": 5, "predict_batch_size": 7})

    with caplog.at_level(logging.WARNING, logger="llmsurgeon_distilbert.classifier"):
        loaded = DistilBertClassifier.load(tmp_path, requested)

    assert loaded.options.epochs == 3
    assert loaded.options.predict_batch_size == 7
    assert "epochs: saved 3, requested 5" in caplog.text
    assert "predict_batch_size" not in caplog.text


def test_load_rejects_unknown_format(fitted, tmp_path):
    fitted.save(tmp_path)
    metadata = json.loads((tmp_path / "classifier.json").read_text())
    metadata["format"] = 99
    (tmp_path / "classifier.json").write_text(json.dumps(metadata))

    with pytest.raises(ValueError, match="format 99"):
        DistilBertClassifier.load(tmp_path, DistilBertClassifier.Options())


def test_load_missing_model_dir_raises(fitted, tmp_path):
    fitted.save(tmp_path)
    for path in sorted((tmp_path / "model").iterdir()):
        path.unlink()

    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        DistilBertClassifier.load(tmp_path, fitted.options)


def test_missing_model_raises_config_error(make_classifier, tmp_path):
    classifier = make_classifier(model=str(tmp_path / "no-such-model"))

    with pytest.raises(ConfigError, match="no-such-model"):
        classifier.fit(["a b", "c d"], np.array([0, 1]), 2)


def test_max_length_beyond_positions_raises(make_classifier, real_texts):
    classifier = make_classifier(max_length=65)

    with pytest.raises(ConfigError, match="at most 64"):
        classifier.fit(real_texts.texts, real_texts.labels, N_CLASSES)


def test_untrained_model_needs_one_tokenizer_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        write_untrained_model(tmp_path)


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


def test_non_string_text_raises(fitted):
    with pytest.raises(TypeError, match="text 1 is a NoneType"):
        fitted.predict_proba(["fine", None])


def test_unfitted_classifier_raises(make_classifier, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        make_classifier().predict_proba(["text"])
    with pytest.raises(RuntimeError, match="not fitted"):
        make_classifier().save(tmp_path)


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 4},
        {"long_texts": "split"},
        {"validation_fraction": 1.0},
        {"class_weight": "balance"},
        {"epoch": 2},
    ],
)
def test_options_reject_invalid_values(options):
    with pytest.raises(pydantic.ValidationError):
        DistilBertClassifier.Options(**options)


def test_options_have_descriptions():
    for name, field in DistilBertClassifier.Options.model_fields.items():
        assert field.description, name


@pytest.mark.slow
def test_training_lowers_validation_loss(make_classifier, real_texts):
    classifier = make_classifier(
        validation_fraction=0.25, max_steps=None, epochs=6, learning_rate=5e-3, patience=3
    )

    classifier.fit(real_texts.texts, real_texts.labels, N_CLASSES)

    losses = [record["validation_loss"] for record in classifier.history_]
    assert len(losses) >= 4
    assert min(losses) < np.log(N_CLASSES) - 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fit_loads_on_cpu(make_classifier, real_texts, tmp_path):
    classifier = make_classifier(device="cuda").fit(real_texts.texts, real_texts.labels, N_CLASSES)
    classifier.save(tmp_path)

    loaded = DistilBertClassifier.load(
        tmp_path, classifier.options.model_copy(update={"device": "cpu"})
    )

    np.testing.assert_allclose(
        loaded.predict_proba(real_texts.texts),
        classifier.predict_proba(real_texts.texts),
        atol=1e-4,
    )

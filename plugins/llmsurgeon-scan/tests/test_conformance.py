"""Conformance of the scan taxonomies, and registration of the scan command."""

from __future__ import annotations

import pytest

from llmsurgeon_core.registry import default_registry
from llmsurgeon_core.testing import check_taxonomy

SCAN_TAXONOMIES = {"scan-coarse": 6, "scan-mid": 12, "scan-fine": 20}


@pytest.mark.parametrize("name", sorted(SCAN_TAXONOMIES))
def test_scan_taxonomy_conforms(name: str) -> None:
    taxonomy = check_taxonomy(name)
    assert len(taxonomy.domain_ids) == SCAN_TAXONOMIES[name]


def test_scan_command_registered() -> None:
    import click

    registry = default_registry()
    group = click.Group()
    for impl in registry.plugin_manager.hook.register_commands.get_hookimpls():
        impl.function(cli=group)
    assert "scan" in group.commands

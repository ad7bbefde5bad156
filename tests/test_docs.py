"""The docs site: hook specs documented and tested, generated references, a strict build."""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmsurgeon_core.config import AuditConfig
from llmsurgeon_core.registry import KINDS, load_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_docs_hooks():
    """Import docs/hooks.py, the MkDocs hook module that generates the references."""
    spec = importlib.util.spec_from_file_location("llmsurgeon_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs_hooks():
    return load_docs_hooks()


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def nav_pages(items) -> list[str]:
    """Return every page path of an MkDocs nav, depth first."""
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_hook_spec_has_docstring(docs_hooks):
    specs = docs_hooks.hook_specs()

    assert specs, "no hook specifications found"
    for _, function in specs:
        assert inspect.getdoc(function), f"hook spec {function.__name__} has no docstring"


def test_every_hook_spec_is_tested(docs_hooks):
    test_files = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
    sources = "\n".join(
        path.read_text(encoding="utf-8") for path in test_files if path.name != "test_docs.py"
    )

    names = [function.__name__ for _, function in docs_hooks.hook_specs()]
    untested = [name for name in names if name not in sources]

    assert untested == [], "hook specs that no test mentions"


def test_every_docs_page_is_in_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    in_nav = set(nav_pages(config["nav"]))
    written = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    generated = set(load_docs_hooks().GENERATED_PAGES)

    assert written - in_nav == set(), "pages missing from the nav of mkdocs.yml"
    assert generated <= in_nav
    assert in_nav - written - generated == set(), "nav names pages that do not exist"


def test_hook_reference_lists_every_hook(docs_hooks, registry):
    page = docs_hooks.render_hooks(registry)

    for section, function in docs_hooks.hook_specs():
        assert f"## {section}\n" in page
        assert f"### `{function.__name__}`" in page
        first_line = inspect.getdoc(function).splitlines()[0]
        assert first_line.replace("``", "`") in page
    assert "Implemented by the installed plugins: `baselines`, `cvxpy`" in page


def config_keys(model, prefix=""):
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from config_keys(annotation, f"{prefix}{name}.")


def test_config_reference_lists_every_key(docs_hooks, registry):
    page = docs_hooks.render_config(registry)

    for key in config_keys(AuditConfig):
        assert f"| `{key}` |" in page
    assert "| `reference.folds` | `int` | `5` |" in page
    assert "| `sampler` | `ComponentConfig` | required |" in page


def test_config_reference_lists_component_options(docs_hooks, registry):
    page = docs_hooks.render_config(registry)

    for kind in KINDS:
        for name in registry.names(kind):
            options = getattr(registry.get(kind, name).obj, "Options", None)
            if options is None:
                continue
            assert f"### {kind} `{name}`" in page
            for field in options.model_fields:
                assert f"| `{kind}.options.{field}` |" in page
    # Options nested in options get dotted keys of their own.
    assert "| `sampler.options.train.tokens` | `int` |" in page
    assert "`demo`" in page


def test_cli_reference_lists_every_command(docs_hooks, registry):
    page = docs_hooks.render_cli(registry)

    for command in ("audit", "install", "uninstall", "plugins", "plugin new", "taxonomy show"):
        assert f"## `llmsurgeon {command}`" in page
    assert "Added by the plugin `hf`." in page
    assert "Usage: llmsurgeon install [OPTIONS] ARGUMENTS..." in page


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env=environment,
        check=False,
    )


def copy_site_sources(destination: Path) -> Path:
    shutil.copy(ROOT / "mkdocs.yml", destination / "mkdocs.yml")
    shutil.copytree(DOCS, destination / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    return destination / "mkdocs.yml"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")

    assert result.returncode == 0, result.stderr
    for page in ("reference/hooks", "reference/config", "reference/cli", "reference/api"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "resolve_config" in api


@pytest.mark.slow
def test_mkdocs_build_fails_on_page_outside_nav(tmp_path):
    config = copy_site_sources(tmp_path)
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")

    result = mkdocs_build(config, tmp_path / "site")

    assert result.returncode != 0
    assert "orphan.md" in result.stderr


@pytest.mark.slow
def test_mkdocs_build_fails_on_broken_link(tmp_path):
    config = copy_site_sources(tmp_path)
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](missing.md).\n")

    result = mkdocs_build(config, tmp_path / "site")

    assert result.returncode != 0
    assert "missing.md" in result.stderr

"""Property tests: any config or taxonomy document either loads or raises the library's
own error for invalid input, never another exception.

The number of examples comes from the hypothesis profile that tests/conftest.py
loads (``LLMSURGEON_HYPOTHESIS_PROFILE``: ``ci`` by default, ``thorough`` for a
longer run).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsurgeon_core.config import AuditConfig, load_config
from llmsurgeon_core.errors import ConfigError, InvalidInputError, TaxonomyError
from llmsurgeon_core.pipeline import Run, check_run
from llmsurgeon_core.taxonomy import Taxonomy, load_taxonomy_file, validate_taxonomy_data

CONFIG_KEYS = [
    "taxonomy",
    "reference",
    "sampler",
    "classifier",
    "solver",
    "bootstrap",
    "merge",
    "calibration",
    "truth",
    "run_dir",
    "name",
    "options",
    "max_per_domain",
    "chunk_words",
    "max_chunks_per_document",
    "folds",
    "seed",
    "n_resamples",
    "level",
    "path",
    "n_samples",
    "batch_size",
    "legal",
    "speech",
]
TAXONOMY_KEYS = [
    "name",
    "description",
    "domains",
    "id",
    "parent",
    "sources",
    "kind",
    "glob",
    "path",
    "text_field",
    "recipes",
    "mixture",
    "merges",
    "levels",
    "preprocess",
    "max_chunks",
    "max_words",
    "strip",
    "a",
    "b",
]
SOURCE_KINDS = ["files", "jsonl", "csv", "parquet", "hf-dataset", "distribution", "package-readmes"]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(["demo", "file", "tfidf", "nnls", "suggested", "a", "b", *SOURCE_KINDS]),
)


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    """Nested mappings and lists whose keys are mostly ``keys`` and whose leaves are scalars."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=6))
    return st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(key, children, max_size=5)
        ),
        max_leaves=25,
    )


def valid_config_base() -> dict[str, Any]:
    return {
        "taxonomy": "demo",
        "sampler": {"name": "file", "options": {"path": "texts.jsonl"}},
        "run_dir": "runs/property",
    }


def load_config_text(text: str, suffix: str, overrides: list[str] = ()) -> AuditConfig:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"audit{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return load_config(path, list(overrides))


def check_config(text: str, suffix: str, overrides: list[str] = ()) -> None:
    """Load a config and check it against the plugins, accepting only ConfigError-like errors."""
    try:
        config = load_config_text(text, suffix, overrides)
    except ConfigError:
        return
    try:
        check_run(Run(config))
    except InvalidInputError:
        pass


PROPERTY_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), documents(CONFIG_KEYS), max_size=4))
def test_random_config_mapping_validates_or_raises(changes):
    config = {**valid_config_base(), **changes}
    check_config(yaml.safe_dump(config), ".yaml")


@PROPERTY_SETTINGS
@given(
    overrides=st.lists(
        st.builds(
            "{}={}".format,
            st.one_of(
                st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=3).map(".".join),
                st.text(max_size=12),
            ),
            st.one_of(
                st.text(max_size=16),
                SCALARS.map(lambda value: yaml.safe_dump(value).removesuffix("\n...\n")),
            ),
        )
        | st.text(max_size=12),
        max_size=4,
    )
)
def test_random_overrides_validate_or_raise(overrides):
    check_config(yaml.safe_dump(valid_config_base()), ".yaml", overrides)


@PROPERTY_SETTINGS
@given(text=st.text(max_size=200), suffix=st.sampled_from([".yaml", ".toml"]))
def test_random_config_text_validates_or_raises(text, suffix):
    check_config(text, suffix)


def domain_entries() -> st.SearchStrategy[dict[str, Any]]:
    source = st.fixed_dictionaries(
        {"kind": st.sampled_from(SOURCE_KINDS)},
        optional={
            "glob": st.sampled_from(["*.txt", "**/*", "", "../*"]),
            "path": st.sampled_from(["a.jsonl", "", "/nonexistent"]),
            "distribution": st.sampled_from(["spdx", "no-such-distribution"]),
            "text_field": st.sampled_from(["text", ""]),
            "strip": documents(TAXONOMY_KEYS),
        },
    )
    return st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b", "c", "a.b", "", "bad id", "../x"])},
        optional={
            "parent": st.sampled_from(["a", "b", "c", "missing", None]),
            "sources": st.lists(source, max_size=2),
            "max_chunks": SCALARS,
            "description": SCALARS,
        },
    )


def taxonomy_documents() -> st.SearchStrategy[dict[str, Any]]:
    mixture = st.dictionaries(
        st.sampled_from(["a", "b", "c", "missing"]), SCALARS | st.floats(0, 1), max_size=4
    )
    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(["t", "", "x/y"]),
            "domains": st.lists(domain_entries(), max_size=4),
        },
        optional={
            "recipes": st.dictionaries(
                st.sampled_from(["r", "s"]),
                st.fixed_dictionaries({"mixture": mixture}, optional={"confirmed": SCALARS}),
                max_size=2,
            ),
            "merges": st.dictionaries(
                st.sampled_from(["m"]),
                st.dictionaries(
                    st.sampled_from(["ab", "a"]), st.lists(st.sampled_from(["a", "b", "c"]))
                ),
                max_size=1,
            ),
            "levels": st.lists(st.text(max_size=5), max_size=3),
            "preprocess": documents(TAXONOMY_KEYS),
        },
    )


@PROPERTY_SETTINGS
@given(raw=taxonomy_documents())
def test_taxonomy_like_document_loads_or_raises(raw):
    try:
        taxonomy = validate_taxonomy_data(raw, "property.yaml", Path("."))
    except TaxonomyError:
        return
    assert isinstance(taxonomy, Taxonomy)
    assert len(set(taxonomy.domain_ids)) == len(taxonomy.domain_ids)


@PROPERTY_SETTINGS
@given(raw=documents(TAXONOMY_KEYS))
def test_random_taxonomy_document_loads_or_raises(raw):
    try:
        validate_taxonomy_data(raw, "property.yaml", Path("."))
    except TaxonomyError:
        pass


@PROPERTY_SETTINGS
@given(text=st.text(max_size=300))
def test_random_taxonomy_text_loads_or_raises(text):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "taxonomy.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            assert isinstance(load_taxonomy_file(path), Taxonomy)
        except TaxonomyError:
            pass

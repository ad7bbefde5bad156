"""Validation errors name the file, the domain and the field; the schema and shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmsurgeon_core.cli import cli
from llmsurgeon_core.registry import default_registry
from llmsurgeon_core.taxonomy import (
    TaxonomyValidationError,
    apply_merge,
    load_taxonomy_file,
    resolve_taxonomy,
)

CASES = [
    (
        "domains:\n  - {id: a}\n  - {id: b, sources: [{kind: files}]}\n",
        "domain 'b' (domains[1]), field 'sources[0].glob': Field required",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b, sources: [{kind: ftp}]}\n",
        "domain 'b' (domains[1]), field 'sources[0]'",
    ),
    (
        "domains:\n  - {id: a, colour: red}\n  - {id: b}\n",
        "domain 'a' (domains[0]), field 'colour': Extra inputs are not permitted",
    ),
    (
        "domains:\n  - {id: a, parent: b}\n  - {id: b, parent: a}\n",
        "domain 'a', field 'parent': the parent chain loops back",
    ),
    (
        "domains:\n  - {id: a, sources: [{kind: files, glob: x}]}\n  - {id: b, parent: a}\n"
        "  - {id: c, parent: a}\n",
        "domain 'a', field 'sources': only leaf domains are classes",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b}\n"
        "recipes:\n  r: {mixture: {a: 60, b: 30}, total: 100}\n",
        "recipe 'r', field 'mixture': shares sum to 90, not total 100",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b, parent: a}\n  - {id: c, parent: a}\n"
        "recipes:\n  r: {mixture: {a: 1, b: 1}}\n",
        "names 'b' and its ancestor 'a'",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b}\nmerges:\n  m: {ab: [a, z]}\n",
        "merge 'm', field 'ab': unknown domain 'z'",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b}\nmerges:\n  m: {x: [a], y: [a, b]}\n",
        "domain 'a' is also merged into 'x'",
    ),
    (
        "domains:\n  - {id: a}\n  - {id: b}\nrecipes:\n  r: {mixture: {a: 1}, colour: 1}\n",
        "recipe 'r', field 'colour'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_validate_names_file_domain_field(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["taxonomy", "validate", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert expected in result.stderr


def test_validate_lists_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("domains:\n  - {id: a, colour: red}\n  - {id: b, size: 3}\n")
    with pytest.raises(TaxonomyValidationError) as caught:
        load_taxonomy_file(path)
    assert len(caught.value.problems) == 2
    assert "(and 1 more)" in str(caught.value)
    result = CliRunner().invoke(cli, ["taxonomy", "validate", str(path)])
    assert result.stderr.count("error: ") == 2


def test_sum_note_allows_a_gap(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        "domains:\n  - {id: a}\n  - {id: b}\n"
        "recipes:\n  r: {mixture: {a: 60, b: 30}, total: 100, sum_note: the rest is unlisted}\n"
    )
    assert load_taxonomy_file(path).recipe_vector("r") == pytest.approx([2 / 3, 1 / 3])


def test_schema_command_prints_json_schema():
    result = CliRunner().invoke(cli, ["taxonomy", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert "base_dir" not in schema["properties"]
    assert "name" not in schema.get("required", [])
    assert {"domains", "recipes", "merges", "levels", "preprocess"} <= set(schema["properties"])
    kinds = json.dumps(schema["$defs"])
    for kind in ("files", "jsonl", "csv", "parquet", "hf-dataset", "distribution"):
        assert f'"{kind}"' in kinds


SHIPPED = ["llama1", "pile", "dolma", "amber", "starcoder", "demo"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_taxonomy_sums_at_every_level(name):
    taxonomy = resolve_taxonomy(name)
    assert taxonomy.recipes
    for recipe_name, recipe in taxonomy.recipes.items():
        assert recipe.source, recipe_name
        if recipe.total is not None and not recipe.sum_note:
            assert sum(recipe.mixture.values()) == pytest.approx(recipe.total, abs=recipe.tolerance)
        levels = [None, *range(taxonomy.max_depth + 1)]
        for level in levels:
            shares = taxonomy.recipe_mixture(recipe_name, level)
            assert sum(shares.values()) == pytest.approx(1.0), (recipe_name, level)
        for merge in taxonomy.merges.values():
            merged = apply_merge(taxonomy.recipe_mixture(recipe_name), merge)
            assert sum(merged.values()) == pytest.approx(1.0), recipe_name


def test_shipped_numbers_match_the_papers():
    llama = resolve_taxonomy("llama1").recipes["llama1"].mixture
    assert llama == {
        "commoncrawl": 67.0,
        "c4": 15.0,
        "github": 4.5,
        "wikipedia": 4.5,
        "books": 4.5,
        "arxiv": 2.5,
        "stackexchange": 2.0,
    }
    pile = resolve_taxonomy("pile")
    assert len(pile.domain_ids) == 22
    effective = pile.recipes["pile-effective"].mixture
    assert effective["pile-cc"] == 18.11
    assert effective["pubmed-central"] == 14.40
    assert effective["books3"] == 12.07
    assert effective["enron-emails"] == 0.14
    assert pile.recipes["pile-raw"].mixture["pile-cc"] == 27.52


def test_unconfirmed_numbers_are_marked():
    assert not resolve_taxonomy("dolma").recipes["dolma-v1.6"].confirmed
    assert not resolve_taxonomy("starcoder").recipes["starcoderbase"].confirmed
    assert resolve_taxonomy("llama1").recipes["llama1"].confirmed


def test_taxonomies_command_lists_known_mixtures():
    result = CliRunner().invoke(cli, ["taxonomies", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(SHIPPED) <= set(rows)
    assert rows["pile"]["recipes"] == ["pile-effective", "pile-raw"]
    assert rows["pile"]["levels"] == ["category", "component"]
    assert "web" in rows["llama1"]["merges"]
    text = CliRunner().invoke(cli, ["taxonomies"]).stdout
    assert "known mixtures: pile-effective, pile-raw" in text


def test_every_registered_file_validates():
    registry = default_registry()
    runner = CliRunner()
    for name in registry.names("taxonomy"):
        source = registry.get("taxonomy", name).obj
        if not isinstance(source, Path):
            continue
        result = runner.invoke(cli, ["taxonomy", "validate", str(source)])
        assert result.exit_code == 0, result.output

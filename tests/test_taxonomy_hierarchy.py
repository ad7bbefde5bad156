"""Taxonomy trees: levels, sums to coarser levels, merge maps and evaluation."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from llmsurgeon_core import TaxonomyError
from llmsurgeon_core.cli import cli
from llmsurgeon_core.taxonomy import (
    Taxonomy,
    apply_merge,
    load_taxonomy_file,
    parse_merge_spec,
    resolve_taxonomy,
)

TREE = """
name: tree
levels: [coarse, mid, fine]
domains:
  - {id: web}
  - {id: code}
  - {id: crawl, parent: web}
  - {id: cc, parent: crawl}
  - {id: c4, parent: crawl}
  - {id: wiki, parent: web}
  - {id: python, parent: code}
  - {id: cpp, parent: code}
recipes:
  fine: {mixture: {cc: 50, c4: 20, wiki: 10, python: 15, cpp: 5}, total: 100}
  coarse: {mixture: {web: 0.7, code: 0.3}}
merges:
  crawls: {web-crawl: [cc, c4]}
"""


@pytest.fixture
def tree(tmp_path) -> Taxonomy:
    path = tmp_path / "tree.yaml"
    path.write_text(TREE)
    return load_taxonomy_file(path)


def test_leaves_are_the_classes(tree):
    assert tree.domain_ids == ["cc", "c4", "wiki", "python", "cpp"]
    assert tree.max_depth == 2
    assert tree.depth("cc") == 2
    assert tree.ancestors("cc") == ["crawl", "web"]


def test_groups_at_each_level(tree):
    assert tree.groups("coarse") == {"web": ["cc", "c4", "wiki"], "code": ["python", "cpp"]}
    # A leaf above the requested depth stands for itself.
    assert tree.groups("fine") == {leaf: [leaf] for leaf in tree.domain_ids}
    mid = tree.groups("mid")
    assert mid == {"crawl": ["cc", "c4"], "wiki": ["wiki"], "python": ["python"], "cpp": ["cpp"]}
    assert tree.groups(1) == mid


def test_fine_recipe_sums_to_each_level(tree):
    assert tree.recipe_mixture("fine", "coarse") == pytest.approx({"web": 0.8, "code": 0.2})
    assert tree.recipe_mixture("fine", "mid") == pytest.approx(
        {"crawl": 0.7, "wiki": 0.1, "python": 0.15, "cpp": 0.05}
    )
    assert tree.recipe_vector("fine") == pytest.approx([0.5, 0.2, 0.1, 0.15, 0.05])
    for level in (None, "coarse", "mid", "fine"):
        assert sum(tree.recipe_mixture("fine", level).values()) == pytest.approx(1.0)


def test_coarse_recipe_cannot_be_split(tree):
    assert tree.recipe_level("coarse") == 0
    assert tree.recipe_level("fine") is None
    with pytest.raises(TaxonomyError, match="'web' of taxonomy 'tree' is coarser than"):
        tree.recipe_vector("coarse")


def test_unknown_level_names_levels(tree):
    with pytest.raises(TaxonomyError, match="levels: coarse, mid, fine"):
        tree.groups("finest")
    with pytest.raises(TaxonomyError, match="depths 0 to 2"):
        tree.groups(5)


def test_merge_map_sums_members_in_place(tree):
    mixture = tree.recipe_mixture("fine")
    merged = apply_merge(mixture, tree.merge_map("crawls"))
    assert list(merged) == ["web-crawl", "wiki", "python", "cpp"]
    assert merged["web-crawl"] == pytest.approx(0.7)
    assert sum(merged.values()) == pytest.approx(1.0)


def test_merge_of_missing_member_raises():
    with pytest.raises(TaxonomyError, match="merge members zz are not domains"):
        apply_merge({"a": 0.5, "b": 0.5}, {"ab": ["a", "zz"]})


def test_parse_merge_spec():
    assert parse_merge_spec("web=cc+c4; code=python") == {"web": ["cc", "c4"], "code": ["python"]}
    with pytest.raises(TaxonomyError, match="write NEW=MEMBER"):
        parse_merge_spec("web")


def _result(tmp_path, taxonomy_path, estimate):
    domains = list(estimate)
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps(
            {
                "taxonomy": str(taxonomy_path),
                "domains": domains,
                "estimate": estimate,
                "naive": dict.fromkeys(domains, 1 / len(domains)),
            }
        )
    )
    return path


def test_evaluate_at_coarse_level(tmp_path):
    taxonomy_path = tmp_path / "tree.yaml"
    taxonomy_path.write_text(TREE)
    # Wrong split inside web and inside code, right coarse totals.
    estimate = {"cc": 0.2, "c4": 0.5, "wiki": 0.1, "python": 0.05, "cpp": 0.15}
    result_path = _result(tmp_path, taxonomy_path, estimate)
    runner = CliRunner()

    fine = runner.invoke(cli, ["evaluate", str(result_path), "--truth", "fine"])
    assert fine.exit_code == 0, fine.output
    assert json.loads(fine.stdout)["estimate"]["overlap_accuracy"] < 0.8

    coarse = runner.invoke(
        cli, ["evaluate", str(result_path), "--truth", "fine", "--level", "coarse"]
    )
    assert coarse.exit_code == 0, coarse.output
    report = json.loads(coarse.stdout)
    assert report["level"] == "coarse"
    assert report["domains"] == ["web", "code"]
    assert report["estimate"]["overlap_accuracy"] == pytest.approx(1.0)


def test_evaluate_coarse_recipe_picks_its_level(tmp_path):
    taxonomy_path = tmp_path / "tree.yaml"
    taxonomy_path.write_text(TREE)
    estimate = {"cc": 0.3, "c4": 0.3, "wiki": 0.1, "python": 0.2, "cpp": 0.1}
    result_path = _result(tmp_path, taxonomy_path, estimate)
    result = CliRunner().invoke(cli, ["evaluate", str(result_path), "--truth", "coarse"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["level"] == "coarse"
    assert report["estimate"]["overlap_accuracy"] == pytest.approx(1.0)


def test_evaluate_too_fine_level_exits_2(tmp_path):
    taxonomy_path = tmp_path / "tree.yaml"
    taxonomy_path.write_text(TREE)
    estimate = {"cc": 0.3, "c4": 0.3, "wiki": 0.1, "python": 0.2, "cpp": 0.1}
    result_path = _result(tmp_path, taxonomy_path, estimate)
    args = ["evaluate", str(result_path), "--truth", "coarse", "--level", "mid"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "coarser than level 'mid'" in result.stderr


def test_evaluate_with_merge_map_and_spec(tmp_path):
    taxonomy_path = tmp_path / "tree.yaml"
    taxonomy_path.write_text(TREE)
    estimate = {"cc": 0.2, "c4": 0.5, "wiki": 0.1, "python": 0.15, "cpp": 0.05}
    result_path = _result(tmp_path, taxonomy_path, estimate)
    runner = CliRunner()
    for merge in ("crawls", "web-crawl=cc+c4"):
        args = ["evaluate", str(result_path), "--truth", "fine", "--merge", merge]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["domains"] == ["web-crawl", "wiki", "python", "cpp"]
        assert report["estimate"]["overlap_accuracy"] == pytest.approx(1.0)


def test_evaluate_truth_file_at_coarse_level(tmp_path):
    taxonomy_path = tmp_path / "tree.yaml"
    taxonomy_path.write_text(TREE)
    estimate = {"cc": 0.3, "c4": 0.3, "wiki": 0.1, "python": 0.2, "cpp": 0.1}
    result_path = _result(tmp_path, taxonomy_path, estimate)
    truth = tmp_path / "truth.yaml"
    truth.write_text("mixture: {web: 70, code: 30}\n")
    result = CliRunner().invoke(cli, ["evaluate", str(result_path), "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["estimate"]["overlap_accuracy"] == pytest.approx(1.0)


def test_show_renders_tree_and_parent_sums(tmp_path):
    path = tmp_path / "tree.yaml"
    path.write_text(TREE)
    result = CliRunner().invoke(cli, ["taxonomy", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "levels: coarse > mid > fine" in result.stdout
    assert "    - cc" in result.stdout
    web_row = next(line for line in result.stdout.splitlines() if line.strip().startswith("web "))
    assert "80.00" in web_row
    assert "70.00" in web_row
    assert "merge crawls: web-crawl = cc + c4" in result.stdout


def test_pile_effective_sums_to_categories():
    pile = resolve_taxonomy("pile")
    categories = pile.recipe_mixture("pile-effective", "category")
    assert list(categories) == ["academic", "web", "prose", "dialogue", "code-math"]
    assert categories["web"] == pytest.approx((18.11 + 10.01 + 1.53) / 100)
    assert sum(categories.values()) == pytest.approx(1.0)


def test_plugin_can_register_a_taxonomy_object(install_plugin):
    from llmsurgeon_core import load_registry

    install_plugin(
        "llmsurgeon-mine",
        "llmsurgeon_mine",
        textwrap.dedent(
            """
            from llmsurgeon_core import hookimpl
            from llmsurgeon_core.taxonomy import Taxonomy

            @hookimpl
            def register_taxonomies(register):
                register("mine", Taxonomy(name="mine", domains=[{"id": "a"}, {"id": "b"}]))
            """
        ),
    )
    registry = load_registry()
    assert resolve_taxonomy("mine", registry).domain_ids == ["a", "b"]
    assert registry.get("taxonomy", "mine").plugin == "llmsurgeon_mine"

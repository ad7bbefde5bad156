"""Sample-size planning on a small real calibration of the demo taxonomy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from llmsurgeon_core import ConfigError, build_reference_corpus, load_registry, resolve_taxonomy
from llmsurgeon_core.calibration import fit_calibration
from llmsurgeon_core.cli import cli
from llmsurgeon_core.planning import parse_mixture, plan_samples

UNIFORM = np.full(5, 0.2)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def calibration(registry):
    taxonomy = resolve_taxonomy("demo")
    corpus = build_reference_corpus(
        taxonomy, max_per_domain=150, chunk_words=40, seed=0, min_per_domain=3
    )
    tfidf = registry.get("classifier", "tfidf").obj
    return fit_calibration(lambda: tfidf(tfidf.Options()), corpus, folds=3, seed=0, metadata={})


@pytest.fixture(scope="module")
def solver(registry):
    nnls = registry.get("solver", "nnls").obj
    return nnls(nnls.Options())


def test_half_width_needs_four_times_samples(solver, calibration):
    wide = plan_samples(solver, calibration, 0.1, 0.9, UNIFORM, n_simulations=0)
    narrow = plan_samples(solver, calibration, 0.05, 0.9, UNIFORM, n_simulations=0)
    ratio = narrow.n_samples / wide.n_samples
    assert 3.9 < ratio < 4.1
    assert wide.n_samples == max(row.samples_needed for row in wide.domains)


@pytest.mark.parametrize("width", [0.1, 0.05])
def test_simulated_width_near_requested(solver, calibration, width):
    plan = plan_samples(solver, calibration, width, 0.9, UNIFORM, n_simulations=100, seed=1)
    widest = max(row.simulated_width for row in plan.domains)
    assert widest < 1.5 * width
    assert widest > width / 1.5


def test_zero_share_gets_no_count(solver, calibration):
    mixture = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    plan = plan_samples(solver, calibration, 0.1, 0.9, mixture, n_simulations=20)
    zero_rows = [row for row in plan.domains if row.share == 0]
    assert all(row.samples_needed is None for row in zero_rows)
    assert all(row.simulated_width is not None for row in zero_rows)
    assert plan.n_samples == max(row.samples_needed for row in plan.domains[:2])


@pytest.mark.parametrize("width", [0.0, -0.1, 1.0, 1.5])
def test_invalid_width_raises(solver, calibration, width):
    with pytest.raises(ConfigError, match=rf"invalid interval width {width!r}.*--width 0\.02"):
        plan_samples(solver, calibration, width, 0.9, UNIFORM)


def test_invalid_level_raises(solver, calibration):
    with pytest.raises(ConfigError, match=re.escape("invalid interval level 1.2")):
        plan_samples(solver, calibration, 0.1, 1.2, UNIFORM)


def test_parse_mixture_shares_and_recipe():
    taxonomy = resolve_taxonomy("demo")
    shares = parse_mixture("legal=1,speech=3", taxonomy)
    assert shares.tolist() == [0.25, 0.75, 0.0, 0.0, 0.0]
    recipe = parse_mixture("demo-target", taxonomy)
    assert recipe.tolist() == pytest.approx([0.10, 0.30, 0.25, 0.15, 0.20])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lawyer=0.5", "unknown domain 'lawyer'; allowed: legal"),
        ("legal=-1", "share '-1' of 'legal' must be a non-negative number"),
        ("legal=x", "share 'x' of 'legal'"),
        ("legal=0", "at least one positive share"),
        ("legal=1,legal=2", "'legal' is given twice"),
        ("no-such-recipe", "no recipe 'no-such-recipe'"),
    ],
)
def test_parse_mixture_rejects(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_mixture(text, resolve_taxonomy("demo"))


def _plan_args(tmp_path, *extra):
    return [
        "plan",
        "--set",
        "reference.max_per_domain=60",
        "--set",
        "reference.folds=3",
        "--run-dir",
        str(tmp_path / "run"),
        *extra,
    ]


def test_cli_plan_json(tmp_path):
    args = _plan_args(tmp_path, "--width", "0.1", "--simulations", "10", "--json")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["level"] == 0.9
    assert [row["share"] for row in plan["domains"]] == pytest.approx([0.1, 0.3, 0.25, 0.15, 0.2])
    assert plan["n_samples"] == max(row["samples_needed"] for row in plan["domains"])
    assert (tmp_path / "run" / "calibration" / "calibration.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--width", "0"], "invalid interval width 0.0"),
        (["--width", "0.1", "--mixture", "lawyer=1"], "unknown domain 'lawyer'"),
        (["--width", "0.1", "--simulations", "-3"], "invalid simulation count -3"),
        (["--width", "0.1", "--simulations", "1"], "invalid simulation count 1"),
    ],
)
def test_cli_plan_bad_input_exits_2(tmp_path, extra, message):
    result = CliRunner().invoke(cli, _plan_args(tmp_path, *extra))
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "run" / "calibration").exists()

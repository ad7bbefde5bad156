"""Tests of the scan config, the mixtures and their run names."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmsurgeon_core import ConfigError, load_taxonomy_file
from llmsurgeon_scan.config import DirichletDraw, load_scan_config
from llmsurgeon_scan.mixtures import draw_mixtures, mixture_run_name, safe_name, scan_mixtures
from llmsurgeon_scan.scan import interval_coverage


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_loads() -> None:
    config = load_scan_config(None)
    assert config.taxonomy == "scan-coarse"
    assert config.draw is not None
    assert config.draw.count >= 5
    assert config.solvers is None


def test_quick_overrides_merge() -> None:
    full = load_scan_config(None)
    quick = load_scan_config(None, quick=True)
    assert quick.target["tokens"] < full.target["tokens"]
    assert quick.target["n_embd"] == full.target["n_embd"]
    assert quick.sampling.n_samples < full.sampling.n_samples
    assert quick.scan_dir != full.scan_dir


def test_set_override_applies() -> None:
    config = load_scan_config(None, overrides=["draw.count=2", "scan_dir=elsewhere"])
    assert config.draw is not None
    assert config.draw.count == 2
    assert config.scan_dir == Path("elsewhere")


def test_malformed_override_shows_scan_key() -> None:
    with pytest.raises(ConfigError, match=r"for example sampling\.n_samples=500"):
        load_scan_config(None, overrides=["draw.count"])


def test_unknown_key_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.yaml", "taxonomy: demo\ndraws: {count: 3}\n")
    with pytest.raises(ConfigError, match="unknown config key 'draws'"):
        load_scan_config(path)


def test_target_mixture_key_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.yaml", "taxonomy: demo\ntarget: {mixture: {legal: 1}}\n")
    with pytest.raises(ConfigError, match="target sets mixture"):
        load_scan_config(path)


def test_negative_share_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.yaml", "taxonomy: demo\nmixtures: [{legal: -1, speech: 2}]\n")
    with pytest.raises(ConfigError, match="share -1"):
        load_scan_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scan_config(tmp_path / "absent.yaml")


def test_mixture_unknown_domain(tmp_path: Path, taxonomy_file: Path) -> None:
    config_path = _write(
        tmp_path / "scan.yaml", f"taxonomy: {taxonomy_file}\nmixtures: [{{speach: 1}}]\n"
    )
    config = load_scan_config(config_path)
    with pytest.raises(ConfigError, match="did you mean 'speech'"):
        scan_mixtures(config, load_taxonomy_file(taxonomy_file))


def test_no_mixture_rejected(tmp_path: Path, taxonomy_file: Path) -> None:
    config = load_scan_config(_write(tmp_path / "scan.yaml", f"taxonomy: {taxonomy_file}\n"))
    with pytest.raises(ConfigError, match="no mixture"):
        scan_mixtures(config, load_taxonomy_file(taxonomy_file))


def test_given_mixture_renormalized(tmp_path: Path, taxonomy_file: Path) -> None:
    path = _write(
        tmp_path / "scan.yaml", f"taxonomy: {taxonomy_file}\nmixtures: [{{speech: 3, c++: 1}}]\n"
    )
    mixtures = scan_mixtures(load_scan_config(path), load_taxonomy_file(taxonomy_file))
    assert mixtures == [{"speech": 0.75, "licence": 0.0, "c++": 0.25}]


def test_draws_seeded_and_rounded() -> None:
    draw = DirichletDraw(count=4, alpha=0.5, seed=3, decimals=2)
    first = draw_mixtures(draw, ["a", "b", "c"])
    assert first == draw_mixtures(draw, ["a", "b", "c"])
    assert len(first) == 4
    for mixture in first:
        assert sum(mixture.values()) == pytest.approx(1.0)
        assert all(share >= 0 for share in mixture.values())
    assert first != draw_mixtures(DirichletDraw(count=4, alpha=0.5, seed=4), ["a", "b", "c"])


def test_safe_name_keeps_ids_distinct() -> None:
    assert safe_name("c++") == "c_2b__2b_"
    assert safe_name("c#") == "c_23_"
    assert safe_name("perl-docs2") == "perl-docs2"
    assert safe_name("a/b") != safe_name("a\\b")
    assert safe_name("../x") == "_2e__2e__2f_x"
    assert safe_name("c_2b_") != safe_name("c+")


def test_run_name_safe_and_distinct() -> None:
    first = mixture_run_name(3, {"c++": 0.5, "c#": 0.3, "a/b": 0.2, "d": 0.0})
    second = mixture_run_name(3, {"c++": 0.5, "c#": 0.3, "a/b": 0.1, "d": 0.1})
    assert first.startswith("m03-c_2b__2b_50-c_23_30-a_2f_b20-")
    assert first != second
    for name in (first, second):
        assert all(c.isalnum() or c in "-_" for c in name)


def test_interval_coverage_counts_domains() -> None:
    result = {"interval": {"a": [0.1, 0.3], "b": [0.5, 0.6], "c": [0.0, 0.2]}}
    truth = {"a": 0.3, "b": 0.7, "c": 0.0}
    assert interval_coverage(result, truth) == pytest.approx(2 / 3)
    assert interval_coverage({"interval": None}, truth) is None

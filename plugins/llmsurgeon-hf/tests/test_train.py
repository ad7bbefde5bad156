"""Tests of the target trainer on tiny taxonomies of real text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, TaxonomyError, load_taxonomy_file
from llmsurgeon_hf.train import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    TARGET_FILE,
    OutputExistsError,
    TargetTraining,
    allocate_sequences,
    domain_token,
    target_cache_key,
    target_mixture,
    train_target,
)


def test_target_loads_with_auto_classes(tiny_target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_target)
    tokenizer = AutoTokenizer.from_pretrained(tiny_target)
    assert model.config.model_type == "gpt2"
    assert model.config.n_layer == 1
    assert model.config.n_embd == 32
    assert model.config.n_positions == 32
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.bos_token == BOS_TOKEN
    assert tokenizer.eos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.model_max_length == 32


def test_target_generation_config_samples_plainly(tiny_target: Path) -> None:
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(tiny_target)
    assert config.do_sample is True
    assert config.top_k == 0
    assert config.top_p == 1.0
    assert config.temperature == 1.0


def test_target_file_complete(tiny_target: Path) -> None:
    target = json.loads((tiny_target / TARGET_FILE).read_text(encoding="utf-8"))
    assert target["taxonomy"] == "tiny"
    assert target["domains"] == ["speech", "licence", "python"]
    assert target["mixture"] == pytest.approx({"speech": 0.7, "licence": 0.3, "python": 0.0})
    assert target["mixture_trained"] == pytest.approx(
        {"speech": 0.7, "licence": 0.3, "python": 0.0}
    )
    assert sum(target["first_token_mixture"].values()) == pytest.approx(1.0)
    assert target["first_token_mixture"]["speech"] > target["first_token_mixture"]["licence"]
    assert 0.5 < target["domain_token_mass"] <= 1.0
    assert target["domain_tokens"] == {d: domain_token(d) for d in target["domains"]}
    assert target["sequences"] == {"speech": 875, "licence": 375, "python": 0}
    assert target["tokens_trained"] == 40_000
    assert target["steps"] == target["steps_planned"]
    assert target["training"]["vocab_size"] == 512
    assert 0 < target["final_loss"] < 7
    assert target["seconds"] > 0
    assert set(target["versions"]) == {"torch", "transformers", "tokenizers"}


def test_domain_tokens_are_special(tiny_target: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_target)
    ids = tokenizer.convert_tokens_to_ids([domain_token("speech"), domain_token("python")])
    assert tokenizer.unk_token_id not in ids
    text_ids = tokenizer.encode("The Congress", add_special_tokens=False)
    decoded = tokenizer.decode(
        [tokenizer.bos_token_id, ids[0], *text_ids], skip_special_tokens=True
    )
    assert decoded == "The Congress"
    # A domain token written in text stays one token instead of splitting into bytes.
    assert tokenizer.encode(domain_token("python"), add_special_tokens=False) == [ids[1]]


def test_max_seconds_stops_early(
    make_training: Callable[..., TargetTraining], tmp_path: Path
) -> None:
    options = make_training(tokens=200_000, max_seconds=0.01)
    target = json.loads((train_target(options, tmp_path / "t") / TARGET_FILE).read_text())
    assert target["steps"] < target["steps_planned"]
    assert target["tokens_trained"] == target["steps"] * 16 * 32
    assert sum(target["mixture_trained"].values()) == pytest.approx(1.0)


def test_recipe_sets_mixture(
    make_training: Callable[..., TargetTraining], taxonomy_file: Path
) -> None:
    taxonomy = load_taxonomy_file(taxonomy_file)
    options = make_training(mixture=None, recipe="even")
    mixture = target_mixture(options, taxonomy)
    assert mixture == pytest.approx({"speech": 1 / 3, "licence": 1 / 3, "python": 1 / 3})


def test_mixture_renormalized_over_all_domains(
    make_training: Callable[..., TargetTraining], taxonomy_file: Path
) -> None:
    taxonomy = load_taxonomy_file(taxonomy_file)
    options = make_training(mixture={"licence": 3, "speech": 1})
    mixture = target_mixture(options, taxonomy)
    assert list(mixture) == ["speech", "licence", "python"]
    assert mixture == pytest.approx({"speech": 0.25, "licence": 0.75, "python": 0.0})


def test_mixture_unknown_domain_rejected(
    make_training: Callable[..., TargetTraining], taxonomy_file: Path
) -> None:
    taxonomy = load_taxonomy_file(taxonomy_file)
    options = make_training(mixture={"speeches": 1.0})
    with pytest.raises(ConfigError, match=r"'speeches'.*did you mean 'speech'"):
        target_mixture(options, taxonomy)


def test_mixture_unrelated_domain_rejected(make_training: Callable[..., TargetTraining]) -> None:
    taxonomy = load_taxonomy_file(make_training().taxonomy)
    options = make_training(mixture={"zzz": 1.0})
    message = "lacks. Known domains: speech, licence, python."
    with pytest.raises(ConfigError, match=re.escape(message)):
        target_mixture(options, taxonomy)


def test_unknown_recipe_rejected(
    make_training: Callable[..., TargetTraining], taxonomy_file: Path
) -> None:
    taxonomy = load_taxonomy_file(taxonomy_file)
    options = make_training(mixture=None, recipe="uneven")
    with pytest.raises(TaxonomyError, match="no recipe 'uneven'"):
        target_mixture(options, taxonomy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recipe": "even"}, "exactly one of recipe"),
        ({"mixture": None}, "exactly one of recipe"),
        ({"mixture": {"speech": -0.1, "licence": 1.0}}, "finite and non-negative"),
        ({"mixture": {"speech": float("nan")}}, "finite and non-negative"),
        ({"mixture": {"speech": 0.0, "licence": 0.0}}, "no positive share"),
        ({"n_embd": 30, "n_head": 4}, "does not divide"),
        ({"tokens": 10}, "smaller than context"),
        ({"vocab_sise": 512}, "Extra inputs are not permitted"),
    ],
)
def test_training_options_rejected(
    make_training: Callable[..., TargetTraining], changes: dict, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_training(**changes)


def test_allocate_sequences_sums_exactly() -> None:
    counts = allocate_sequences({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3, "d": 0.0}, 100)
    assert sum(counts.values()) == 100
    assert sorted(counts[d] for d in "abc") == [33, 33, 34]
    assert counts["d"] == 0


def test_allocate_sequences_tiny_share_rounds_down() -> None:
    counts = allocate_sequences({"a": 0.999, "b": 0.001}, 10)
    assert counts == {"a": 10, "b": 0}


def test_non_empty_output_dir_rejected(
    make_training: Callable[..., TargetTraining], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="not empty"):
        train_target(make_training(), tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_empty_output_dir_accepted(
    make_training: Callable[..., TargetTraining], tmp_path: Path
) -> None:
    output_dir = tmp_path / "empty"
    output_dir.mkdir()
    options = make_training(tokens=2_000)
    assert train_target(options, output_dir) == output_dir
    assert (output_dir / TARGET_FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_domain_without_text_rejected(
    make_training: Callable[..., TargetTraining], tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("word " * 200, encoding="utf-8")
    taxonomy = tmp_path / "gap.yaml"
    taxonomy.write_text(
        "domains:\n"
        "  - {id: a, sources: [{kind: files, glob: 'a/*.txt'}]}\n"
        "  - {id: b, sources: [{kind: files, glob: 'b/*.txt'}]}\n",
        encoding="utf-8",
    )
    options = make_training(taxonomy=str(taxonomy), mixture={"a": 0.5, "b": 0.5}, tokens=2_000)
    with pytest.raises(TaxonomyError, match=r"domain 'b'.*yields no chunks"):
        train_target(options, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_short_domain_text_repeats(
    make_training: Callable[..., TargetTraining], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for domain, word in (("a", "alpha"), ("b", "beta")):
        (tmp_path / domain).mkdir()
        (tmp_path / domain / "one.txt").write_text(f"{word} gamma " * 100, encoding="utf-8")
    taxonomy = tmp_path / "short.yaml"
    taxonomy.write_text(
        "domains:\n"
        "  - {id: a, sources: [{kind: files, glob: 'a/*.txt'}]}\n"
        "  - {id: b, sources: [{kind: files, glob: 'b/*.txt'}]}\n",
        encoding="utf-8",
    )
    options = make_training(taxonomy=str(taxonomy), mixture={"a": 0.5, "b": 0.5}, tokens=8_000)
    with caplog.at_level("WARNING", logger="llmsurgeon_hf.train"):
        train_target(options, tmp_path / "out")
    assert "repeat earlier text" in caplog.text


def test_cache_key_changes_with_options(make_training: Callable[..., TargetTraining]) -> None:
    base = make_training()
    assert target_cache_key(base) == target_cache_key(make_training())
    assert target_cache_key(base) != target_cache_key(make_training(seed=1))
    assert len(target_cache_key(base)) == 16


def test_cache_key_resolves_taxonomy_path(
    make_training: Callable[..., TargetTraining],
    taxonomy_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(taxonomy_file.parent)
    relative = TargetTraining.model_validate(
        {**make_training().model_dump(), "taxonomy": taxonomy_file.name}
    )
    assert target_cache_key(relative) == target_cache_key(make_training())


def test_too_few_tokens_rejected(make_training: Callable[..., TargetTraining], tmp_path: Path):
    # 32 tokens make one sequence of 32, so the 0.3 share of licence gets none.
    options = make_training(tokens=32)
    with pytest.raises(ConfigError, match="too few"):
        train_target(options, tmp_path / "target")
    assert not (tmp_path / "target").exists()

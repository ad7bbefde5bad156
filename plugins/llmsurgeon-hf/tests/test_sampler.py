"""Tests of the ``hf`` sampler on tiny local models."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, GeneratedText, SampleRequest
from llmsurgeon_hf import sampler as sampler_module
from llmsurgeon_hf.sampler import DEFAULT_NEUTRAL_PROMPTS, HFSampler
from llmsurgeon_hf.train import TARGET_FILE, TargetTraining, target_cache_key

WORDS = [f"w{i}" for i in range(20)]


def make_sampler(model: Path | str, cache_dir: Path, **options: object) -> HFSampler:
    sampler = HFSampler(HFSampler.Options.model_validate({"model": str(model), **options}))
    sampler.prepare(cache_dir)
    return sampler


def texts(generated: list[GeneratedText]) -> list[str]:
    return [sample.text for sample in generated]


@pytest.fixture(scope="session")
def word_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a randomly initialized GPT-2 over 20 words whose generation_config distorts sampling.

    Its stored settings (top-k 1, no repeated words, 2 new tokens) must not
    reach the sampler, which samples with its own options.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocabulary = {token: i for i, token in enumerate(["<s>", "</s>", "<pad>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = GPT2Config(
        vocab_size=len(vocabulary),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        do_sample=True,
        top_k=1,
        no_repeat_ngram_size=1,
        max_new_tokens=2,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    directory = tmp_path_factory.mktemp("word-model")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# Options


def test_options_reject_unknown_key() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        HFSampler.Options.model_validate({"model": "gpt2", "temprature": 0.7})


def test_options_reject_unknown_training_key(make_training: Callable[..., TargetTraining]) -> None:
    train = {**make_training().model_dump(), "token": 5000}
    with pytest.raises(ValidationError, match="token"):
        HFSampler.Options.model_validate({"train": train})


def test_options_reject_model_and_train(make_training: Callable[..., TargetTraining]) -> None:
    train = make_training().model_dump()
    with pytest.raises(ValidationError, match="exactly one of model"):
        HFSampler.Options.model_validate({"model": "gpt2", "train": train})


def test_options_reject_neither_model_nor_train() -> None:
    with pytest.raises(ValidationError, match="exactly one of model"):
        HFSampler.Options.model_validate({})


def test_options_reject_prompts_with_bos() -> None:
    with pytest.raises(ValidationError, match="set prompt to 'neutral'"):
        HFSampler.Options.model_validate({"model": "gpt2", "prompts": ["Hello"]})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("device", "gpu"),
        ("dtype", "float64"),
        ("temperature", 0.0),
        ("top_k", -1),
        ("top_p", 1.5),
        ("n_samples", 0),
        ("max_new_tokens", 0),
    ],
)
def test_options_reject_invalid_value(key: str, value: object) -> None:
    with pytest.raises(ValidationError, match=key):
        HFSampler.Options.model_validate({"model": "gpt2", key: value})


def test_options_fields_have_descriptions() -> None:
    missing = [n for n, f in HFSampler.Options.model_fields.items() if not f.description]
    assert missing == []


def test_sizes_come_from_options() -> None:
    sampler = HFSampler(HFSampler.Options(model="gpt2", n_samples=7, batch_size=3))
    assert sampler.n_samples == 7
    assert sampler.batch_size == 3


# Sampling a trained target


def test_generate_returns_text_per_index(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=12, batch_size=8)
    generated = sampler.generate(SampleRequest(indices=list(range(40, 60)), seed=0))
    assert len(generated) == 20
    for sample in generated:
        assert isinstance(sample, GeneratedText)
        assert sample.prompt == ""
        assert sample.finish_reason in ("eos", "length")
        assert 1 <= sample.n_tokens <= 12
        if sample.finish_reason == "length":
            assert sample.n_tokens == 12
        assert "<|" not in sample.text


def test_generated_domain_set_for_most(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=4)
    generated = sampler.generate(SampleRequest(indices=list(range(300)), seed=0))
    domains = Counter(sample.metadata["generated_domain"] for sample in generated)
    assert set(domains) <= {"speech", "licence", "python", None}
    assert domains[None] < 0.2 * len(generated)
    # Trained at speech 0.7, licence 0.3 and python 0.
    assert domains["speech"] > domains["licence"]
    assert domains["python"] < 0.1 * len(generated)


def test_same_request_gives_same_texts(tiny_target: Path, tmp_path: Path) -> None:
    request = SampleRequest(indices=list(range(16, 32)), seed=3)
    first = make_sampler(tiny_target, tmp_path, max_new_tokens=16)
    again = first.generate(request)
    assert first.generate(request) == again
    # A new process after a crash builds a new sampler.
    assert make_sampler(tiny_target, tmp_path, max_new_tokens=16).generate(request) == again


def test_other_seed_gives_other_texts(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=16)
    base = texts(sampler.generate(SampleRequest(indices=list(range(16)), seed=0)))
    other_seed = texts(sampler.generate(SampleRequest(indices=list(range(16)), seed=1)))
    other_start = texts(sampler.generate(SampleRequest(indices=list(range(1, 17)), seed=0)))
    assert other_seed != base
    assert other_start != base


def test_generate_keeps_global_random_state(tiny_target: Path, tmp_path: Path) -> None:
    import torch

    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=4)
    before = torch.random.get_rng_state()
    sampler.generate(SampleRequest(indices=[0, 1], seed=0))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_truncation_options_reach_generate(
    tiny_target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = make_sampler(
        tiny_target, tmp_path, max_new_tokens=5, temperature=0.8, top_k=7, top_p=0.9
    )
    calls = []
    original = sampler.model.generate

    def recording_generate(**kwargs: object) -> object:
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(sampler.model, "generate", recording_generate)
    sampler.generate(SampleRequest(indices=[0, 1, 2], seed=0))
    assert len(calls) == 1
    assert calls[0]["do_sample"] is True
    assert calls[0]["temperature"] == 0.8
    assert calls[0]["top_k"] == 7
    assert calls[0]["top_p"] == 0.9
    assert calls[0]["max_new_tokens"] == 5
    assert calls[0]["pad_token_id"] == sampler.tokenizer.pad_token_id


def test_top_k_one_ignores_seed(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=8, top_k=1)
    first = texts(sampler.generate(SampleRequest(indices=[0, 1, 2, 3], seed=0)))
    second = texts(sampler.generate(SampleRequest(indices=[0, 1, 2, 3], seed=9)))
    assert first == second
    assert len(set(first)) == 1


def test_batches_split_by_batch_size(
    tiny_target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=3, batch_size=4)
    sizes = []
    original = sampler.model.generate

    def recording_generate(**kwargs: object) -> object:
        sizes.append(len(kwargs["input_ids"]))
        return original(**kwargs)

    monkeypatch.setattr(sampler.model, "generate", recording_generate)
    assert len(sampler.generate(SampleRequest(indices=list(range(10)), seed=0))) == 10
    assert sizes == [4, 4, 2]


def test_neutral_prompts_cycle_by_index(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(
        tiny_target, tmp_path, max_new_tokens=4, prompt="neutral", prompts=["The", "\n"]
    )
    generated = sampler.generate(SampleRequest(indices=[5, 6, 7], seed=0))
    assert [sample.prompt for sample in generated] == ["\n", "The", "\n"]


def test_prompts_padded_on_left(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, prompt="neutral")
    tokenizer = sampler.tokenizer
    long_ids = tokenizer.encode("The Congress of the", add_special_tokens=False)
    input_ids, attention_mask = sampler._encode_prompts(["", "The Congress of the"])
    width = 1 + len(long_ids)
    assert input_ids.tolist()[1] == [tokenizer.bos_token_id, *long_ids]
    assert input_ids.tolist()[0] == [tokenizer.pad_token_id] * (width - 1) + [
        tokenizer.bos_token_id
    ]
    assert attention_mask.tolist() == [[0] * (width - 1) + [1], [1] * width]


def test_neutral_prompts_default_list(tiny_target: Path, tmp_path: Path) -> None:
    sampler = make_sampler(tiny_target, tmp_path, max_new_tokens=4, prompt="neutral")
    count = len(DEFAULT_NEUTRAL_PROMPTS)
    generated = sampler.generate(SampleRequest(indices=list(range(count)), seed=0))
    assert [sample.prompt for sample in generated] == list(DEFAULT_NEUTRAL_PROMPTS)


def test_protocol_records_model_and_versions(tiny_target: Path, tmp_path: Path) -> None:
    from importlib import metadata

    protocol = make_sampler(tiny_target, tmp_path).protocol()
    assert protocol["model_path"] == str(tiny_target)
    assert protocol["torch"] == metadata.version("torch")
    assert protocol["transformers"] == metadata.version("transformers")
    assert protocol["top_k"] == 0
    assert protocol["target"]["mixture"]["speech"] == pytest.approx(0.7)
    json.dumps(protocol)


def test_generate_before_prepare_raises() -> None:
    sampler = HFSampler(HFSampler.Options(model="gpt2"))
    with pytest.raises(RuntimeError, match="before prepare"):
        sampler.generate(SampleRequest(indices=[0], seed=0))


# Training through the sampler


def test_train_option_builds_and_caches(
    make_training: Callable[..., TargetTraining], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    training = make_training(tokens=4_000)
    options = HFSampler.Options(train=training, max_new_tokens=4)
    sampler = HFSampler(options)
    sampler.prepare(tmp_path)
    expected = tmp_path / "targets" / target_cache_key(training)
    assert (expected / TARGET_FILE).is_file()
    assert sampler.protocol()["model_path"] == str(expected)
    assert [p.name for p in (tmp_path / "targets").iterdir()] == [expected.name]

    def fail_training(*args: object) -> None:
        raise AssertionError("the cached target should be reused")

    monkeypatch.setattr(sampler_module, "train_target", fail_training)
    reused = HFSampler(options)
    reused.prepare(tmp_path)
    request = SampleRequest(indices=[0, 1, 2], seed=0)
    assert reused.generate(request) == sampler.generate(request)


# A plain model directory


def test_plain_model_directory(word_model: Path, tmp_path: Path) -> None:
    sampler = make_sampler(word_model, tmp_path, max_new_tokens=30, batch_size=16)
    generated = sampler.generate(SampleRequest(indices=list(range(16)), seed=0))
    assert len(generated) == 16
    assert all("generated_domain" not in sample.metadata for sample in generated)
    assert all(set(sample.text.split()) <= set(WORDS) for sample in generated)
    assert "target" not in sampler.protocol()


def test_plain_model_stored_settings_ignored(word_model: Path, tmp_path: Path) -> None:
    sampler = make_sampler(word_model, tmp_path, max_new_tokens=30, batch_size=16)
    generated = sampler.generate(SampleRequest(indices=list(range(16)), seed=0))
    other = sampler.generate(SampleRequest(indices=list(range(16)), seed=1))
    # The stored top_k=1 would make both seeds agree.
    assert texts(generated) != texts(other)
    # The stored max_new_tokens=2 would cap every text at 2 tokens.
    assert max(sample.n_tokens for sample in generated) > 2
    # The stored no_repeat_ngram_size=1 would forbid repeated words; 20 words
    # cannot fill a text of more than 20 tokens without one.
    longest = max(generated, key=lambda sample: len(sample.text.split())).text.split()
    assert len(longest) > len(WORDS)
    assert len(set(longest)) < len(longest)


def test_missing_model_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ConfigError, match="failed to load model"):
        make_sampler(missing, tmp_path)


def test_missing_cuda_rejected(tiny_target: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available")
    with pytest.raises(ConfigError, match="no CUDA device"):
        make_sampler(tiny_target, tmp_path, device="cuda")


# Prompt files and revisions


def test_prompts_file_text_lines(tiny_target: Path, tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("The\nWe the people\n\n", encoding="utf-8")
    sampler = make_sampler(
        tiny_target, tmp_path, max_new_tokens=3, prompt="neutral", prompts_file=str(path)
    )
    generated = sampler.generate(SampleRequest(indices=[0, 1, 2, 3], seed=0))
    assert [sample.prompt for sample in generated] == ["The", "We the people", "", "The"]
    assert sampler.protocol()["prompts_used"] == ["The", "We the people", ""]


def test_prompts_file_jsonl(tiny_target: Path, tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('"line\\none"\n{"prompt": "Two"}\n', encoding="utf-8")
    sampler = make_sampler(
        tiny_target, tmp_path, max_new_tokens=3, prompt="neutral", prompts_file=str(path)
    )
    generated = sampler.generate(SampleRequest(indices=[0, 1], seed=0))
    assert [sample.prompt for sample in generated] == ["line\none", "Two"]


def test_prompts_file_malformed_rejected(tiny_target: Path, tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "no prompt key"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1 is neither"):
        make_sampler(tiny_target, tmp_path, prompt="neutral", prompts_file=str(path))


def test_prompts_file_missing_rejected(tiny_target: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read sampler option prompts_file"):
        make_sampler(tiny_target, tmp_path, prompt="neutral", prompts_file=str(tmp_path / "x"))


def test_options_reject_prompts_and_file() -> None:
    with pytest.raises(ValidationError, match="at most one of prompts"):
        HFSampler.Options.model_validate(
            {"model": "gpt2", "prompt": "neutral", "prompts": ["a"], "prompts_file": "p.txt"}
        )


def test_revision_passed_to_loaders(
    tiny_target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    seen = []
    for name in ("AutoTokenizer", "AutoModelForCausalLM"):
        loader = getattr(transformers, name)
        original = loader.from_pretrained

        def recording(*args: object, _original=original, **kwargs: object) -> object:
            seen.append(kwargs.get("revision"))
            return _original(*args, **kwargs)

        monkeypatch.setattr(loader, "from_pretrained", recording)
    sampler = make_sampler(tiny_target, tmp_path, revision="step-1000")
    assert seen == ["step-1000", "step-1000"]
    assert sampler.protocol()["revision"] == "step-1000"


def test_decoding_settings_reported(tiny_target: Path, tmp_path: Path) -> None:
    from llmsurgeon_core.sampling import decoding_diagnostics

    plain = HFSampler(HFSampler.Options(model="gpt2")).decoding()
    assert plain == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert decoding_diagnostics(plain)["truncated"] is False
    truncated = HFSampler(HFSampler.Options(model="gpt2", top_k=40, temperature=0.7)).decoding()
    diagnostics = decoding_diagnostics(truncated)
    assert diagnostics["truncated"] is True
    assert diagnostics["reasons"] == [
        "temperature 0.7 is below 1",
        "top_k 40 keeps only the 40 most likely tokens",
    ]

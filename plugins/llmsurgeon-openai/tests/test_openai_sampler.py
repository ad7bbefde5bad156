"""Tests of the ``openai`` sampler against a real ``transformers serve`` server.

The server ignores ``n`` and logprobs and honours ``seed``, so texts drawn
through a faulty proxy must equal those drawn directly.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Server
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, GeneratedText, SampleRequest, load_registry
from llmsurgeon_core.sampling import read_samples
from llmsurgeon_openai import OpenAISampler, SamplingFailedError

KEY_ENV = "LLMSURGEON_TEST_OPENAI_KEY"
PROMPTS = ["w1 w2", "w3", "w5 w6 w7"]


def make_sampler(base_url: str, model: str, **options: object) -> OpenAISampler:
    values = {
        "base_url": base_url,
        "model": model,
        "api_key_env": None,
        "prompts": PROMPTS,
        "max_tokens": 12,
        "timeout": 10.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        **options,
    }
    sampler = OpenAISampler(OpenAISampler.Options.model_validate(values))
    sampler.prepare(None)
    return sampler


def draw(sampler: OpenAISampler, indices: range, seed: int = 0) -> list[GeneratedText]:
    return sampler.generate(SampleRequest(indices=list(indices), seed=seed))


def texts(generated: list[GeneratedText]) -> list[str]:
    return [sample.text for sample in generated]


# Options and registration


def test_entry_point_registers_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSURGEON_LOAD_PLUGINS", "llmsurgeon-openai")
    registry = load_registry()
    assert registry.get("sampler", "openai").obj is OpenAISampler
    assert registry.load_errors() == {}


def test_options_fields_have_descriptions() -> None:
    missing = [n for n, f in OpenAISampler.Options.model_fields.items() if not f.description]
    assert missing == []


def test_options_reject_unknown_key() -> None:
    with pytest.raises(ValidationError, match="api_key"):
        OpenAISampler.Options.model_validate(
            {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key": "x"}
        )


def test_options_reject_system_prompt_for_completions() -> None:
    with pytest.raises(ValidationError, match="set it to 'chat'"):
        OpenAISampler.Options.model_validate(
            {"base_url": "http://127.0.0.1:1/v1", "model": "m", "system_prompt": "s"}
        )


def test_missing_key_variable_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    options = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": KEY_ENV}
    sampler = OpenAISampler(OpenAISampler.Options.model_validate(options))
    with pytest.raises(ConfigError, match=KEY_ENV):
        sampler.prepare(None)


def test_generate_before_prepare_raises() -> None:
    sampler = OpenAISampler(OpenAISampler.Options(base_url="http://127.0.0.1:1/v1", model="m"))
    with pytest.raises(RuntimeError, match="before prepare"):
        sampler.generate(SampleRequest(indices=[0], seed=0))


# Against the server


def test_completions_return_text_per_index(server: Server) -> None:
    sampler = make_sampler(server.base_url, server.model)
    generated = draw(sampler, range(10, 16))
    assert len(generated) == 6
    assert [sample.prompt for sample in generated] == [PROMPTS[i % 3] for i in range(10, 16)]
    for sample in generated:
        assert set(sample.text.split()) <= {f"w{i}" for i in range(20)}
        assert sample.finish_reason in ("eos", "length")
        assert 1 <= sample.n_tokens <= 12
        assert sample.metadata["model"] == server.model
    usage = sampler.usage()
    assert usage["requests"] == 6
    assert usage["completion_tokens"] == sum(sample.n_tokens for sample in generated)
    assert usage["prompt_tokens"] > 0


def test_same_seed_same_texts(server: Server) -> None:
    sampler = make_sampler(server.base_url, server.model)
    first = texts(draw(sampler, range(8)))
    assert texts(draw(make_sampler(server.base_url, server.model), range(8))) == first
    assert texts(draw(sampler, range(8), seed=1)) != first


def test_chat_endpoint(server: Server) -> None:
    sampler = make_sampler(server.base_url, server.model, endpoint="chat", system_prompt="w9")
    generated = draw(sampler, range(4))
    assert len(generated) == 4
    assert all(sample.text for sample in generated)
    assert generated[1].prompt == PROMPTS[1]


def test_ignored_n_falls_back_to_single_requests(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # Each block of 4 samples shares a prompt, and each text falls back to its own seed,
    # which is what n=1 draws with every prompt repeated 4 times.
    repeated = [prompt for prompt in PROMPTS for _ in range(4)]
    single = texts(draw(make_sampler(server.base_url, server.model, prompts=repeated), range(12)))
    sampler = make_sampler(server.base_url, server.model, n=4)
    with caplog.at_level(logging.WARNING, logger="llmsurgeon_openai.sampler"):
        first_batch = texts(draw(sampler, range(8)))
        second_batch = texts(draw(sampler, range(8, 12)))
    assert first_batch + second_batch == single
    assert "returned 1 of 4 requested choices" in caplog.text
    assert sampler.usage()["n_honoured"] is False
    # A new process regenerates a batch the same way, n requests included.
    assert texts(draw(make_sampler(server.base_url, server.model, n=4), range(8, 12))) == (
        second_batch
    )


# Faults


def test_faults_retried_until_every_sample_arrives(
    server: Server, make_proxy, caplog: pytest.LogCaptureFixture
) -> None:
    expected = texts(draw(make_sampler(server.base_url, server.model), range(12)))
    faults = ["429", "500", "drop", "slow", "ok", "500", "429", "drop"]
    # The timeout leaves a normal response seconds to spare on a busy machine,
    # so only the slow one times out.
    proxy = make_proxy(faults, slow_seconds=6.0)
    sampler = make_sampler(proxy.base_url, server.model, concurrency=4, timeout=3.0)
    with caplog.at_level(logging.INFO, logger="llmsurgeon_openai.sampler"):
        generated = draw(sampler, range(12))
    assert texts(generated) == expected
    injected = [r.fault for r in proxy.requests if r.fault != "ok"]
    assert sorted(injected) == sorted(f for f in faults if f != "ok")
    usage = sampler.usage()
    assert usage["retries"] == len(injected)
    assert usage["retries_status_429"] == 2
    assert usage["retries_status_500"] == 2
    assert usage["retries_timeout"] == 1
    assert usage["retries_connection_error"] == 2
    assert len(proxy.requests) == 12 + len(injected)

    # One INFO line per retry, with its reason and delay, and one WARNING for the batch.
    retry_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(retry_lines) == len(injected)
    assert sum("failed with status 429; retry " in line for line in retry_lines) == 2
    assert all(line.endswith(" s") for line in retry_lines)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "samples 0-11 arrived after 7 retries (connection error: 2, status 429: 2, "
        "status 500: 2, timeout: 1)"
    ]


def test_retry_after_honoured(server: Server, make_proxy) -> None:
    proxy = make_proxy(["429"], retry_after="1")
    sampler = make_sampler(proxy.base_url, server.model)
    draw(sampler, range(1))
    rejected, accepted = proxy.requests
    assert rejected.fault == "429"
    assert rejected.body_digest == accepted.body_digest
    assert accepted.arrived - rejected.arrived >= 0.95


def test_requests_follow_blocks_of_n() -> None:
    sampler = OpenAISampler(
        OpenAISampler.Options(base_url="http://127.0.0.1:1/v1", model="m", n=4, prompts=["a", "b"])
    )
    calls = sampler._plan(SampleRequest(indices=list(range(3, 11)), seed=0))
    assert [call.indices for call in calls] == [(3,), (4, 5, 6, 7), (8, 9, 10)]
    assert [sampler._prompt_for(call.indices[0]) for call in calls] == ["a", "b", "a"]


def test_backoff_grows_with_jitter() -> None:
    sampler = OpenAISampler(
        OpenAISampler.Options(
            base_url="http://127.0.0.1:1/v1", model="m", backoff_initial=1, backoff_max=8
        )
    )
    delays = [[sampler._backoff(attempt, None) for _ in range(50)] for attempt in range(5)]
    for attempt, ceiling in enumerate([1, 2, 4, 8, 8]):
        assert all(ceiling / 2 <= d <= ceiling for d in delays[attempt])
        assert len(set(delays[attempt])) > 1
    assert sampler._backoff(0, 500.0) == 300.0


def test_retries_exhausted_raise(server: Server, make_proxy) -> None:
    proxy = make_proxy(["500"] * 10)
    sampler = make_sampler(proxy.base_url, server.model, max_retries=2)
    with pytest.raises(SamplingFailedError, match="failed 3 times, last with status 500"):
        draw(sampler, range(1))
    assert len(proxy.requests) == 3


def test_response_without_choices_raises(server: Server, make_proxy) -> None:
    proxy = make_proxy(["empty"] * 5)
    sampler = make_sampler(proxy.base_url, server.model, n=2)
    with pytest.raises(SamplingFailedError, match="returned no choice for samples 0-1"):
        draw(sampler, range(2))
    assert len(proxy.requests) == 1


def test_unauthorized_not_retried_and_key_scrubbed(
    server: Server, make_proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-secret-0123456789")
    proxy = make_proxy(["401"])
    sampler = make_sampler(proxy.base_url, server.model, api_key_env=KEY_ENV)
    with pytest.raises(SamplingFailedError, match="status 401") as raised:
        draw(sampler, range(1))
    assert len(proxy.requests) == 1
    assert proxy.requests[0].authorization == "Bearer sk-test-secret-0123456789"
    assert "sk-test-secret-0123456789" not in str(raised.value)
    assert "***" in str(raised.value)


# Through the command line, killed and resumed


def write_config(directory: Path, base_url: str, model: str, n_samples: int) -> Path:
    config = {
        "taxonomy": "demo",
        "sampler": {
            "name": "openai",
            "options": {
                "base_url": base_url,
                "model": model,
                "api_key_env": KEY_ENV,
                "prompts": PROMPTS,
                "n_samples": n_samples,
                "max_tokens": 12,
                "batch_size": 3,
                "concurrency": 2,
                "timeout": 10.0,
                "backoff_initial": 0.05,
                "backoff_max": 0.2,
            },
        },
        "run_dir": str(directory / "run"),
    }
    path = directory / "audit.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def run_sample_command(config: Path, env: dict[str, str], kill_after_lines: int | None) -> str:
    """Run ``llmsurgeon sample``; with ``kill_after_lines``, SIGKILL it once that many are written.

    Returns its output, standard error included.
    """
    samples = config.parent / "run" / "samples.jsonl"
    command = [str(Path(sys.executable).with_name("llmsurgeon")), "sample", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if kill_after_lines is not None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            lines = samples.read_bytes().count(b"\n") if samples.exists() else 0
            if lines >= kill_after_lines:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    output, _ = process.communicate(timeout=120)
    return output.decode("utf-8", errors="replace")


def test_cli_resumes_after_kill_and_hides_key(server: Server, make_proxy, tmp_path: Path) -> None:
    n_samples = 30
    expected = texts(draw(make_sampler(server.base_url, server.model), range(n_samples)))
    rng = random.Random(7)
    faults = [rng.choice(["ok", "ok", "ok", "429", "500", "drop"]) for _ in range(40)]
    proxy = make_proxy(faults, retry_after="0.2", delay_seconds=0.05)
    key = f"sk-test-{rng.getrandbits(64):016x}"
    env = {**os.environ, KEY_ENV: key, "OMP_NUM_THREADS": "1"}
    config = write_config(tmp_path, proxy.base_url, server.model, n_samples)
    outputs = []
    for kill_after in sorted(rng.sample(range(1, n_samples), 2)):
        outputs.append(run_sample_command(config, env, kill_after))
    outputs.append(run_sample_command(config, env, None))
    # The killed runs printed no summary, and the last one finished the file.
    assert all("samples in" not in output for output in outputs[:-1])
    assert "30 samples in" in outputs[-1]

    run_dir = tmp_path / "run"
    records = read_samples(run_dir / "samples.jsonl")
    assert [r["id"] for r in records] == list(range(n_samples))
    assert [r["text"] for r in records] == expected
    assert {r.authorization for r in proxy.requests} == {f"Bearer {key}"}

    manifest = json.loads((run_dir / "manifest.json").read_text())
    usage = manifest["stages"]["sample"]["usage"]
    assert usage["completion_tokens"] > 0
    assert usage["requests"] >= manifest["stages"]["sample"]["drawn"]
    sampling = json.loads((run_dir / "sampling.json").read_text())
    assert sampling["options"]["api_key_env"] == KEY_ENV

    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"samples.jsonl", "sampling.json", "manifest.json"}
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    for output in outputs:
        assert key not in output

"""Tests of the ``file`` sampler on files the tests write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmsurgeon_core import ConfigError, SampleRequest, load_registry
from llmsurgeon_core.config import load_config
from llmsurgeon_core.pipeline import Run
from llmsurgeon_core.sampling import read_samples
from llmsurgeon_file import FileSampler


def make_sampler(path: Path, **options: object) -> FileSampler:
    sampler = FileSampler(FileSampler.Options.model_validate({"path": str(path), **options}))
    sampler.prepare(path)
    return sampler


def all_texts(sampler: FileSampler) -> list[str]:
    request = SampleRequest(indices=list(range(sampler.n_samples)), seed=0)
    return [sample.text for sample in sampler.generate(request)]


@pytest.fixture
def jsonl_file(tmp_path: Path) -> Path:
    path = tmp_path / "collected.jsonl"
    lines = [
        json.dumps({"text": "first text here", "prompt": "Once"}),
        "",
        json.dumps("a bare string"),
        json.dumps(
            {
                "text": "stored record",
                "n_tokens": 9,
                "finish_reason": "eos",
                "metadata": {"generated_domain": "speech"},
            }
        ),
        json.dumps({"text": "   "}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_entry_point_registers_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSURGEON_LOAD_PLUGINS", "llmsurgeon-file")
    registry = load_registry()
    assert registry.get("sampler", "file").obj is FileSampler
    assert registry.load_errors() == {}


def test_options_fields_have_descriptions() -> None:
    missing = [n for n, f in FileSampler.Options.model_fields.items() if not f.description]
    assert missing == []


def test_options_reject_unknown_key() -> None:
    with pytest.raises(ValidationError, match="text_key"):
        FileSampler.Options.model_validate({"path": "x", "text_key": "body"})


def test_options_reject_same_fields() -> None:
    with pytest.raises(ValidationError, match="different keys"):
        FileSampler.Options.model_validate({"path": "x", "prompt_field": "text"})


def test_jsonl_records(jsonl_file: Path) -> None:
    sampler = make_sampler(jsonl_file)
    assert sampler.n_samples == 3
    first, bare, stored = sampler.generate(SampleRequest(indices=[0, 1, 2], seed=0))
    assert (first.prompt, first.text, first.n_tokens) == ("Once", "first text here", 3)
    assert first.finish_reason == "unknown"
    assert first.metadata == {"source": "collected.jsonl", "line": 1, "n_tokens_unit": "words"}
    assert (bare.prompt, bare.text) == ("", "a bare string")
    assert bare.metadata["line"] == 3
    assert stored.n_tokens == 9
    assert stored.finish_reason == "eos"
    assert stored.metadata == {"generated_domain": "speech", "source": "collected.jsonl", "line": 4}


def test_empty_texts_kept_on_request(jsonl_file: Path) -> None:
    assert make_sampler(jsonl_file, skip_empty=False).n_samples == 4


def test_text_field_option(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"body": "hello world", "text": 3}) + "\n", encoding="utf-8")
    assert all_texts(make_sampler(path, text_field="body")) == ["hello world"]


def test_missing_text_field_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"body": "hello world"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 1 has no string under key 'text'.*keys: body"):
        make_sampler(path)


def test_invalid_json_line_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        make_sampler(path)


def test_invalid_utf8_rejected(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        make_sampler(path)


def test_missing_path_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        make_sampler(tmp_path / "nothing")


def test_empty_folder_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="contains no texts"):
        make_sampler(tmp_path)


def test_folder_read_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("second file", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first file", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "third"}) + "\n", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("skipped", encoding="utf-8")
    sampler = make_sampler(tmp_path)
    assert all_texts(sampler) == ["first file", "second file", "third"]
    names = [f["name"] for f in sampler.protocol()["files"]]
    assert names == ["a.txt", "b/two.txt", "c.jsonl"]


def test_glob_selects_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("kept", encoding="utf-8")
    (tmp_path / "b.md").write_text("dropped", encoding="utf-8")
    assert all_texts(make_sampler(tmp_path, glob="*.txt")) == ["kept"]


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("file", ["one\ntwo\n\nthree\n"]),
        ("paragraph", ["one\ntwo", "three\n"]),
        ("line", ["one", "two", "three"]),
    ],
)
def test_text_split(tmp_path: Path, split: str, expected: list[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    assert all_texts(make_sampler(path, split=split)) == expected


def test_n_samples_takes_first(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"line {i}" for i in range(10)), encoding="utf-8")
    assert all_texts(make_sampler(path, split="line", n_samples=3)) == [
        "line 0",
        "line 1",
        "line 2",
    ]


def test_n_samples_above_available_rejected(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="contains only 2 texts"):
        make_sampler(path, split="line", n_samples=3)


def test_shuffle_is_seeded(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"line {i}" for i in range(50)), encoding="utf-8")
    first = all_texts(make_sampler(path, split="line", shuffle=True, n_samples=20))
    again = all_texts(make_sampler(path, split="line", shuffle=True, n_samples=20))
    other = all_texts(make_sampler(path, split="line", shuffle=True, n_samples=20, seed=1))
    assert first == again
    assert first != other
    assert first != [f"line {i}" for i in range(20)]
    assert len(set(first)) == 20


def test_protocol_records_file_digest(jsonl_file: Path) -> None:
    import hashlib

    protocol = make_sampler(jsonl_file).protocol()
    digest = hashlib.sha256(jsonl_file.read_bytes()).hexdigest()
    assert protocol["files"] == [
        {"name": "collected.jsonl", "bytes": jsonl_file.stat().st_size, "sha256": digest}
    ]
    assert protocol["n_available"] == 3
    assert protocol["path"] == str(jsonl_file)


def test_decoding_has_no_settings(jsonl_file: Path) -> None:
    assert make_sampler(jsonl_file).decoding() == {}


# Through the audit pipeline


def write_config(tmp_path: Path, source: Path, **options: object) -> Path:
    config = {
        "taxonomy": "demo",
        "sampler": {"name": "file", "options": {"path": str(source), **options}},
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "audit.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_run_writes_samples_and_protocol(tmp_path: Path) -> None:
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(f"text number {i}" for i in range(30)), encoding="utf-8")
    run = Run(load_config(write_config(tmp_path, source, split="line", batch_size=7)))
    records = run.sample()
    assert [r["id"] for r in records] == list(range(30))
    assert records[4]["text"] == "text number 4"
    assert set(records[0]) == {"id", "prompt", "text", "n_tokens", "finish_reason", "metadata"}
    assert read_samples(run.run_dir / "samples.jsonl") == records
    sampling = json.loads((run.run_dir / "sampling.json").read_text())
    assert sampling["sampler"] == "file"
    assert sampling["protocol"]["files"][0]["name"] == "lines.txt"
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["sample"]["n_samples"] == 30


def test_run_resumes_after_torn_write(tmp_path: Path) -> None:
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(f"text number {i}" for i in range(30)), encoding="utf-8")
    config = load_config(write_config(tmp_path, source, split="line", batch_size=7))
    complete = Run(config).sample()
    samples = Path(config.run_dir) / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    # A crash after 11 complete lines and part of the 12th.
    samples.write_bytes(b"".join(lines[:11]) + lines[11][:5])
    assert Run(config).sample() == complete
    assert read_samples(samples) == complete


def test_samples_of_a_run_audited_again(tmp_path: Path) -> None:
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(f"text number {i}" for i in range(12)), encoding="utf-8")
    first = Run(load_config(write_config(tmp_path, source, split="line"))).sample()
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    config = write_config(again_dir, tmp_path / "run" / "samples.jsonl")
    second = Run(load_config(config)).sample()
    assert [r["text"] for r in second] == [r["text"] for r in first]
    assert [r["n_tokens"] for r in second] == [r["n_tokens"] for r in first]
    # The stored metadata is kept, and the source now names the samples file.
    assert second[0]["metadata"]["part"] == 0
    assert second[0]["metadata"]["source"] == "samples.jsonl"


def run_plugins_command(*arguments: str) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("llmsurgeon")), "plugins", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_cli_plugins_lists_file() -> None:
    listed = json.loads(run_plugins_command("--json"))
    names = {info["name"]: info["components"] for info in listed}
    assert names["file"] == {"sampler": ["file"]}


def test_cli_plugins_lists_shipped_samplers() -> None:
    # The project's requirements install every shipped sampler plugin; vllm
    # registers its sampler without importing vllm.
    listed = json.loads(run_plugins_command("--json"))
    samplers = {name for info in listed for name in info["components"].get("sampler", [])}
    assert {"hf", "vllm", "openai", "file"} <= samplers
    lines = [line.strip() for line in run_plugins_command().splitlines()]
    for name in ("hf", "vllm", "openai", "file"):
        assert f"sampler: {name}" in lines

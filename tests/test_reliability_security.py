"""Secrets stay out of logs and run files, remote code and pickles run only when trusted."""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmsurgeon_core import ConfigError, load_registry, secrets
from llmsurgeon_core.calibration import Calibration
from llmsurgeon_core.errors import CalibrationError
from llmsurgeon_core.storage import atomic_write_json, atomic_write_text

REPOSITORY = Path(__file__).resolve().parents[1]
OPENAI_TESTS = REPOSITORY / "plugins" / "llmsurgeon-openai" / "tests"
SECRET = "sk-reliability-0123456789abcdef"


@pytest.fixture
def registered_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(secrets, "_registered", set())
    secrets.register_secret(SECRET)
    return SECRET


# Redaction


def test_redact_masks_registered_and_environment_secrets(registered_secret, monkeypatch):
    monkeypatch.setenv("EXAMPLE_API_KEY", "env-secret-value-42")
    monkeypatch.setenv("EXAMPLE_PATH", "not-a-secret-value")
    text = f"key {registered_secret}, env-secret-value-42 and not-a-secret-value"

    assert secrets.redact(text) == "key ***, *** and not-a-secret-value"


def test_short_values_are_not_masked(monkeypatch):
    monkeypatch.setattr(secrets, "_registered", set())
    secrets.register_secret("none")

    assert secrets.redact("api key none") == "api key none"


def test_log_filter_masks_message_arguments_and_traceback(registered_secret):
    stream_logger = logging.getLogger("llmsurgeon_core.test_secrets")
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = ListHandler()
    stream_logger.addHandler(handler)
    secrets.install_log_filter(stream_logger)
    try:
        stream_logger.warning("request with key %s failed", registered_secret)
        try:
            raise RuntimeError(f"server echoed {registered_secret}")
        except RuntimeError:
            stream_logger.exception("request failed")
    finally:
        stream_logger.removeHandler(handler)

    assert records[0] == "request with key *** failed"
    assert "server echoed ***" in records[1]
    assert all(registered_secret not in record for record in records)


def test_written_text_and_json_are_masked(registered_secret, tmp_path):
    atomic_write_text(tmp_path / "report.md", f"key: {registered_secret}\n")
    atomic_write_json(tmp_path / "manifest.json", {"note": f"Bearer {registered_secret}"})

    assert (tmp_path / "report.md").read_text() == "key: ***\n"
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"note": "Bearer ***"}


# The openai sampler's key file


def openai_options(**values: object):
    from llmsurgeon_openai import OpenAISampler

    base = {"base_url": "http://127.0.0.1:9/v1", "model": "m", **values}
    return OpenAISampler, OpenAISampler.Options.model_validate(base)


def test_key_file_is_read_and_registered(tmp_path, monkeypatch):
    monkeypatch.setattr(secrets, "_registered", set())
    key_file = tmp_path / "key"
    key_file.write_text(f"  {SECRET}\n")
    key_file.chmod(0o600)
    cls, options = openai_options(api_key_file=str(key_file))
    sampler = cls(options)

    sampler.prepare(None)

    assert sampler._api_key == SECRET
    assert SECRET in secrets.known_secrets()
    assert SECRET not in json.dumps(sampler.protocol())


@pytest.mark.parametrize(
    ("mode", "content", "fragment"),
    [
        (0o644, SECRET, "run `chmod 600"),
        (0o640, SECRET, "group or others can access it"),
        (0o600, "  \n", "is empty"),
    ],
)
def test_bad_key_file_rejected(tmp_path, mode, content, fragment):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    key_file.chmod(mode)
    cls, options = openai_options(api_key_file=str(key_file))

    with pytest.raises(ConfigError, match=fragment) as raised:
        cls(options).prepare(None)
    assert SECRET not in str(raised.value)


def test_missing_key_file_rejected(tmp_path):
    cls, options = openai_options(api_key_file=str(tmp_path / "absent"))

    with pytest.raises(ConfigError, match="not found"):
        cls(options).prepare(None)


def test_key_file_and_variable_both_set_rejected(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="remove one of them"):
        openai_options(api_key_file=str(tmp_path / "key"), api_key_env="OPENAI_API_KEY")


def test_no_option_takes_a_secret_value():
    # A secret in an option would reach the config, the manifest and sampling.json.
    registry = load_registry()
    secret_name = re.compile(r"(api_key|token|secret|password)$", re.IGNORECASE)
    offending = []
    for kind in ("sampler", "classifier", "solver"):
        for name in registry.names(kind):
            options = registry.get(kind, name).obj.Options
            offending.extend(
                f"{kind} {name}: {f}" for f in options.model_fields if secret_name.search(f)
            )
    assert offending == []


# A real audit through the openai sampler, searched for its key


def _load_word_model_builder():
    spec = importlib.util.spec_from_file_location("tiny_model", OPENAI_TESTS / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.save_word_model


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def openai_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Serve a tiny word-level GPT-2 with ``transformers serve`` on 127.0.0.1.

    Yields the base URL and the model name.
    """
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"transformers serve needs {module}: pip install 'transformers[serving]'")
    model_dir = _load_word_model_builder()(tmp_path / "word-model")
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("transformers")),
        *("serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"),
    ]
    log = tmp_path / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("transformers serve was not healthy after 180 s") from None
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1", str(model_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.mark.slow
def test_openai_audit_never_writes_key(small_audit, openai_server, tmp_path):
    base_url, model = openai_server
    key = f"sk-audit-{os.getpid()}-{time.time_ns():x}"
    key_file = tmp_path / "openai.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    config = yaml.safe_load(small_audit.config.read_text())
    config["sampler"] = {
        "name": "openai",
        "options": {
            "base_url": base_url,
            "model": model,
            "api_key_file": str(key_file),
            "prompts": ["w1 w2", "w3"],
            "n_samples": 12,
            "max_tokens": 10,
            "batch_size": 4,
            "timeout": 30.0,
        },
    }
    small_audit.config.write_text(yaml.safe_dump(config))
    cache = tmp_path / "cache"
    # The key is also in a secret-named variable, where a library that logs
    # its environment would find it. Debug logging is the most verbose there is.
    env = {**os.environ, "LLMSURGEON_CACHE_DIR": str(cache), "OPENAI_API_KEY": key}
    command = [str(Path(sys.executable).with_name("llmsurgeon")), "-vv", "audit"]
    completed = subprocess.run(
        [*command, str(small_audit.config)], capture_output=True, env=env, timeout=300
    )

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output.decode(errors="replace")[-3000:]
    assert b"DEBUG" in completed.stderr
    assert key.encode() not in output
    run_dir = small_audit.root / "run"
    written = [p for p in [*run_dir.rglob("*"), *cache.rglob("*")] if p.is_file()]
    assert {"samples.jsonl", "result.json", "manifest.json", "report.md"} <= {
        p.name for p in written
    }
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["sampler"]["options"]["api_key_file"] == str(key_file)
    assert manifest["stages"]["sample"]["usage"]["requests"] >= 12


# Remote code


def _model_with_remote_code(directory: Path, marker: Path) -> Path:
    """Save a tiny GPT-2 whose config points at Python code that creates ``marker``."""
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=8)).save_pretrained(
        directory
    )
    backend = Tokenizer(models.WordLevel({"<s>": 0, "a": 1, "<unk>": 2}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>").save_pretrained(directory)
    (directory / "remote_gpt2.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).touch()\n"
        "from transformers import GPT2Config, GPT2LMHeadModel\n"
        "class RemoteConfig(GPT2Config):\n"
        "    model_type = 'remote-gpt2'\n"
        "class RemoteModel(GPT2LMHeadModel):\n"
        "    config_class = RemoteConfig\n"
    )
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "remote-gpt2"
    config["auto_map"] = {
        "AutoConfig": "remote_gpt2.RemoteConfig",
        "AutoModelForCausalLM": "remote_gpt2.RemoteModel",
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.slow
def test_hf_sampler_runs_remote_code_only_when_trusted(tmp_path):
    from llmsurgeon_hf import HFSampler

    marker = tmp_path / "remote-code-ran"
    model = _model_with_remote_code(tmp_path / "model", marker)
    options = HFSampler.Options(model=str(model))
    assert options.trust_remote_code is False

    with pytest.raises(ConfigError, match="contains custom code"):
        HFSampler(options).prepare(tmp_path / "cache")
    assert not marker.exists()

    trusted = HFSampler.Options(model=str(model), trust_remote_code=True)
    HFSampler(trusted).prepare(tmp_path / "cache")
    assert marker.exists()


# Pickles


class _CreatesFile:
    """An object whose unpickling creates a file: the proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_calibration_with_pickled_arrays_is_not_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"
    directory = tmp_path / "calibration"
    directory.mkdir()
    (directory / "calibration.json").write_text(json.dumps({"format": 2, "domains": ["a", "b"]}))
    payload = np.array([_CreatesFile(marker)], dtype=object)
    np.savez(directory / "predictions.npz", oof_probs=payload, labels=payload)

    with pytest.raises(CalibrationError):
        Calibration.load(directory, lambda name, options, path: None)
    assert not marker.exists()


@pytest.mark.slow
def test_pickled_prediction_cache_is_recomputed(small_audit):
    from click.testing import CliRunner

    from llmsurgeon_core.cli import cli

    config = str(small_audit.config)
    assert CliRunner().invoke(cli, ["audit", config]).exit_code == 0
    marker = small_audit.root / "pickle-ran"
    cache = small_audit.root / "run" / "predictions.npz"
    payload = np.array([_CreatesFile(marker)], dtype=object)
    np.savez(cache, probs=payload, key=payload)

    result = CliRunner().invoke(cli, ["estimate", config])

    assert result.exit_code == 0, result.output
    assert not marker.exists()
    with np.load(cache, allow_pickle=False) as recomputed:
        assert recomputed["probs"].dtype == np.float64


def _calls(tree: ast.AST, module_names: set[str], function: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == function
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in module_names
        ):
            yield node


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _product_sources() -> list[Path]:
    roots = [REPOSITORY / "llmsurgeon_core", *(REPOSITORY / "plugins").glob("*/llmsurgeon_*")]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_product_code_loads_no_untrusted_pickle():
    problems = []
    for path in _product_sources():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        name = path.relative_to(REPOSITORY)
        for call in _calls(tree, {"np", "numpy"}, "load"):
            if _keyword(call, "allow_pickle") is not False:
                problems.append(f"{name}:{call.lineno}: np.load without allow_pickle=False")
        for call in _calls(tree, {"torch"}, "load"):
            if _keyword(call, "weights_only") is not True:
                problems.append(f"{name}:{call.lineno}: torch.load without weights_only=True")
        unpickling = [
            *_calls(tree, {"pickle", "joblib", "cloudpickle", "dill"}, "load"),
            *_calls(tree, {"pickle", "cloudpickle", "dill"}, "loads"),
        ]
        # A pickle may be read only behind the trust_pickle opt-in.
        if unpickling and "trust_pickle" not in source:
            problems.extend(
                f"{name}:{c.lineno}: unpickling without trust_pickle" for c in unpickling
            )
    assert problems == []


def test_product_code_passes_no_trusted_remote_code():
    problems = []
    for path in _product_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is not False:
                    problems.append(f"{path.relative_to(REPOSITORY)}:{node.value.lineno}")
    assert problems == []

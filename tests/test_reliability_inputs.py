"""Bad input through the command line: exit status 2, one line that names the value and
the fix, and every file that was already written left as it was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llmsurgeon_core import registry as registry_module
from llmsurgeon_core.cli import cli
from llmsurgeon_core.sampling import read_samples

# A tfidf classifier with two faults that its options switch on: NaN rows for
# texts that contain `poison`, and a constant prediction that makes C singular.
FAULTY_CLASSIFIER = """
import numpy as np
from llmsurgeon_core import hookimpl
from llmsurgeon_tfidf import TfidfClassifier, TfidfOptions


class FaultyOptions(TfidfOptions):
    poison: str = ""
    constant: bool = False


class FaultyClassifier(TfidfClassifier):
    Options = FaultyOptions

    def predict_proba(self, texts):
        texts = list(texts)
        probs = np.array(super().predict_proba(texts), dtype=float)
        if self.options.constant:
            probs[:] = 1.0 / probs.shape[1]
        for row, text in enumerate(texts):
            if self.options.poison and self.options.poison in text:
                probs[row] = np.nan
        return probs


@hookimpl
def register_classifiers(register):
    register("faulty", FaultyClassifier)
"""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path) -> dict[Path, bytes]:
    """Return the bytes of every file under ``root``."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        assert path.exists(), f"{path} was removed"
        assert path.read_bytes() == data, f"{path} was changed"


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Check exit status 2 and a single ``error:`` line, the last of stderr, with ``fragments``."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert errors[0] == lines[-1].split("\r")[-1], lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def faulty_classifier(install_plugin, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin("acme-faulty", "acme_faulty", FAULTY_CLASSIFIER)
    # The command line uses the process-wide registry, so it is loaded afresh.
    monkeypatch.setattr(registry_module, "_default_registry", None)


@pytest.fixture
def calibrated(small_audit):
    """Return the small audit after `llmsurgeon calibrate` and a first `sample`."""
    result = invoke("calibrate", small_audit.config)
    assert result.exit_code == 0, result.output
    result = invoke("sample", small_audit.config, "--set", "sampler.options.n_samples=16")
    assert result.exit_code == 0, result.output
    return small_audit


# Reference corpus


@pytest.mark.parametrize(
    ("emptied", "kept_files", "expected"),
    [
        (["legal", "speech", "python"], 0, "has 0 reference chunks"),
        (["speech"], 0, "domain 'speech'"),
        (["python"], 1, "fewer than the 3 required"),
    ],
    ids=["empty-corpus", "domain-without-texts", "fewer-than-folds"],
)
def test_too_little_reference_text_rejected(small_audit, emptied, kept_files, expected):
    for domain in emptied:
        directory = small_audit.domain_dir(domain)
        files = sorted(directory.iterdir())
        for path in files[kept_files:]:
            path.unlink()
        if kept_files:
            # One short document gives fewer chunks than the three folds need.
            files[0].write_text(" ".join(f"word{i}" for i in range(40)))
    before = snapshot(small_audit.root)

    result = invoke("calibrate", small_audit.config)

    assert_one_line_error(result, expected, "add sources to it or lower reference.folds")
    assert_unchanged(before)
    assert not (small_audit.root / "run" / "calibration").exists()


def test_unusable_reference_files_rejected(small_audit):
    directory = small_audit.domain_dir("speech")
    for path in directory.iterdir():
        path.unlink()
    (directory / "empty.txt").write_bytes(b"")
    (directory / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (directory / "latin1.txt").write_bytes("caf\xe9 cr\xe8me ".encode("latin-1") * 200)
    (directory / "nul.txt").write_bytes(b"text with a nul\x00 byte " * 200)

    result = invoke("calibrate", small_audit.config)

    assert_one_line_error(result, "domain 'speech'", "0 reference chunks")


def test_unusable_reference_files_skipped_beside_good_ones(small_audit, caplog):
    directory = small_audit.domain_dir("speech")
    # Four speeches give fewer chunks than the domain's cap, so every file is read.
    for path in sorted(directory.iterdir())[4:]:
        path.unlink()
    (directory / "empty.txt").write_bytes(b"")
    (directory / "binary.bin").write_bytes(bytes(range(256)) * 64)
    (directory / "latin1.txt").write_bytes("caf\xe9 cr\xe8me ".encode("latin-1") * 200)

    result = invoke("calibrate", small_audit.config)

    assert result.exit_code == 0, result.output
    assert "skipping unreadable reference file" in caplog.text
    assert "latin1.txt" in caplog.text


def test_huge_reference_text_is_capped(small_audit):
    # One 8 MB document of real text on a single line.
    words = (small_audit.domain_dir("legal") / "0BSD.txt").read_text().split()
    line = " ".join(words * (8_000_000 // (len(" ".join(words)) + 1)))
    (small_audit.domain_dir("legal") / "huge.txt").write_text(line)

    result = invoke("calibrate", small_audit.config)

    assert result.exit_code == 0, result.output
    summary = json.loads(
        (small_audit.root / "run" / "calibration" / "calibration.json").read_text()
    )
    assert summary["counts"][0] <= 40


# Config values that the taxonomy or the registry do not know


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("truth={legal: 0.5, bogus: 0.5}", ["'truth'", "bogus", "allowed: legal, speech, python"]),
        ("truth=no-such-recipe", ["'truth'", "no-such-recipe"]),
        ("merge=[[legal, bogus]]", ["'merge'", "bogus"]),
        ("solver.name=nsls", ["unknown solver 'nsls'", "did you mean 'nnls'?"]),
        ("classifier.name=tfdif", ["unknown classifier 'tfdif'", "did you mean 'tfidf'?"]),
        ("sampler.name=fiel", ["unknown sampler 'fiel'", "did you mean 'file'?"]),
        (
            "sampler.options.batch_sise=4",
            ["'sampler.options.batch_sise'", "did you mean 'batch_size'?"],
        ),
        ("bootstrp.seed=1", ["'bootstrp'", "did you mean 'bootstrap'?"]),
        ("reference.folds=1", ["'reference.folds'", "greater than or equal to 2"]),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_unknown_config_value_rejected_before_work(small_audit, override, fragments):
    before = snapshot(small_audit.root)

    result = invoke("audit", small_audit.config, "--set", override)

    assert_one_line_error(result, *fragments)
    assert_unchanged(before)
    assert not (small_audit.root / "run").exists()


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("broken.yaml", "taxonomy: [demo\nsampler: {name: file", "is not valid YAML"),
        ("broken.toml", 'taxonomy = "demo\n[sampler]\nname = file\n', "is not valid TOML"),
        ("list.yaml", "- taxonomy\n- demo\n", "must hold a mapping at top level"),
        ("latin1.yaml", "taxonomy: caf\xe9\n", "cannot read config file"),
        ("audit.json", '{"taxonomy": "demo"}', "must end in .yaml, .yml or .toml"),
    ],
)
def test_malformed_config_file_rejected(tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))

    result = invoke("audit", path)

    assert_one_line_error(result, fragment, name)
    assert path.read_bytes() == text.encode("latin-1")


def test_malformed_taxonomy_file_rejected(small_audit):
    small_audit.taxonomy.write_text("domains: [{id: legal, sources: [{kind: files}]\n")

    result = invoke("calibrate", small_audit.config)

    assert_one_line_error(result, "small.yaml", "while parsing a flow mapping", "line 1")


def test_invalid_taxonomy_file_rejected(small_audit):
    small_audit.taxonomy.write_text("domains: [{id: legal, sources: [{kind: files}]}]\n")

    result = invoke("calibrate", small_audit.config)

    assert_one_line_error(result, "invalid taxonomy file", "small.yaml")


# Missing and unreadable paths


@pytest.mark.parametrize(
    ("command", "override", "fragment"),
    [
        ("calibrate", "taxonomy=missing/taxonomy.yaml", "not found"),
        ("calibrate", "calibration=missing/calibration", "is not a calibration directory"),
        ("sample", "sampler.options.path=missing/texts.jsonl", "not found"),
    ],
)
def test_missing_path_rejected(small_audit, command, override, fragment):
    result = invoke(command, small_audit.config, "--set", override)

    assert_one_line_error(result, fragment, "missing/")


def test_missing_config_file_rejected(tmp_path):
    result = invoke("audit", tmp_path / "absent.yaml")

    assert_one_line_error(result, "absent.yaml", "not found")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_file_rejected(small_audit):
    small_audit.config.chmod(0)
    try:
        result = invoke("audit", small_audit.config)
    finally:
        small_audit.config.chmod(0o644)

    assert_one_line_error(result, "cannot read config file", "audit.yaml")


def test_run_dir_that_is_a_file_rejected(small_audit):
    before = snapshot(small_audit.root)

    result = invoke("sample", small_audit.config, "--set", f"run_dir={small_audit.samples}")

    assert_one_line_error(result, "texts.jsonl", "choose another run_dir")
    assert_unchanged(before)


# The file sampler's input


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "contains no texts"),
        (b"\n  \n\t\n", "contains no texts"),
        (bytes(range(256)) * 16, "is not valid UTF-8"),
        ("caf\xe9\n".encode("latin-1"), "is not valid UTF-8"),
        (b'{"text": "one"}\n{"text": \n', "line 2 is not valid JSON"),
        (b'{"body": "one"}\n', "set sampler option text_field"),
    ],
    ids=["empty", "blank", "binary", "latin1", "torn-json", "no-text-field"],
)
def test_bad_sampler_input_rejected(calibrated, content, fragment):
    texts = calibrated.root / "collected.jsonl"
    texts.write_bytes(content)
    run_dir = calibrated.root / "run2"
    before = snapshot(calibrated.root)

    result = invoke(
        "sample", calibrated.config, "--set", f"sampler.options.path={texts}", "--run-dir", run_dir
    )

    assert_one_line_error(result, fragment)
    assert_unchanged(before)
    assert read_samples(run_dir / "samples.jsonl") == []


@pytest.mark.slow
def test_huge_sampler_text_is_audited(small_audit):
    records = [json.loads(line) for line in small_audit.samples.read_text().splitlines()]
    records[0]["text"] = " ".join([records[0]["text"]] * 5_000)  # about 1 MB
    small_audit.samples.write_text("".join(json.dumps(r) + "\n" for r in records))

    result = invoke("audit", small_audit.config)

    assert result.exit_code == 0, result.output
    stored = read_samples(small_audit.root / "run" / "samples.jsonl")
    assert stored[0]["text"] == records[0]["text"]


def test_fewer_samples_than_domains_rejected(calibrated):
    before = snapshot(calibrated.root)

    result = invoke("estimate", calibrated.config, "--set", "sampler.options.n_samples=2")

    assert_one_line_error(result, "2 samples for 3 domains", "n_samples")
    assert_unchanged(before)
    assert not (calibrated.root / "run" / "result.json").exists()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"id": 3, "text": 5}', "line 4 has no string 'text' field"),
        (b'{"id": 3}', "line 4 has no string 'text' field"),
        (b"\x00\x01garbage", "line 4 is not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "line 4 is not valid UTF-8 JSON"),
        (b"[1, 2]", "line 4 is a JSON list, not a sample object"),
    ],
    ids=["text-not-string", "no-text", "control-bytes", "not-utf8", "list"],
)
def test_damaged_samples_line_rejected(calibrated, line, fragment):
    samples = calibrated.root / "run" / "samples.jsonl"
    lines = samples.read_bytes().splitlines(keepends=True)
    lines[3] = line + b"\n"
    samples.write_bytes(b"".join(lines))
    before = snapshot(calibrated.root)

    result = invoke("estimate", calibrated.config, "--set", "sampler.options.n_samples=16")

    assert_one_line_error(result, "samples.jsonl", fragment, "fix or remove that line")
    assert_unchanged(before)


def test_fewer_samples_than_configured_warned(calibrated, caplog):
    with caplog.at_level("WARNING", logger="llmsurgeon_core.pipeline"):
        result = invoke("estimate", calibrated.config, "--set", "sampler.options.n_samples=20")

    assert result.exit_code == 0, result.output
    assert "estimating from 16 of the 20 samples" in caplog.text
    stored = json.loads((calibrated.root / "run" / "result.json").read_text())
    assert stored["n_samples"] == 16


def test_cache_dir_that_is_a_file_rejected(small_audit, tmp_path, monkeypatch):
    not_a_directory = tmp_path / "cache-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("LLMSURGEON_CACHE_DIR", str(not_a_directory))
    before = snapshot(small_audit.root)

    result = invoke("audit", small_audit.config)

    assert_one_line_error(result, "cache-file", "is not a directory", "LLMSURGEON_CACHE_DIR")
    assert_unchanged(before)
    assert not (small_audit.root / "run" / "calibration").exists()


# A classifier that misbehaves


def test_non_finite_reference_predictions_rejected(small_audit, faulty_classifier):
    # Every reference text contains a space, so every prediction is NaN.
    result = invoke(
        "calibrate",
        small_audit.config,
        "--set",
        "classifier={name: faulty, options: {poison: ' '}}",
    )

    assert_one_line_error(result, "non-finite probabilities", "reference chunks")
    assert not (small_audit.root / "run" / "calibration").exists()


def test_non_finite_sample_predictions_rejected(small_audit, faulty_classifier):
    records = [json.loads(line) for line in small_audit.samples.read_text().splitlines()]
    records[3]["text"] += " zzpoisonzz"
    small_audit.samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    override = "classifier={name: faulty, options: {poison: zzpoisonzz}}"
    assert invoke("calibrate", small_audit.config, "--set", override).exit_code == 0
    assert invoke("sample", small_audit.config, "--set", override).exit_code == 0
    before = snapshot(small_audit.root)

    result = invoke("estimate", small_audit.config, "--set", override)

    assert_one_line_error(result, "non-finite probabilities for 1 of", "choose another classifier")
    assert_unchanged(before)
    assert not (small_audit.root / "run" / "result.json").exists()


def test_singular_confusion_matrix_rejected(small_audit, faulty_classifier):
    override = "classifier={name: faulty, options: {constant: true}}"

    result = invoke("audit", small_audit.config, "--set", override)

    assert_one_line_error(result, "is singular", "legal, speech, python", "merge them")
    run_dir = small_audit.root / "run"
    assert not (run_dir / "samples.jsonl").exists()
    # A rerun reuses the saved calibration and is rejected the same way.
    assert_one_line_error(invoke("calibrate", small_audit.config, "--set", override), "singular")


# A run directory that cannot be written


def file_name(descriptor: int) -> str:
    return os.readlink(f"/proc/self/fd/{descriptor}").rsplit("/", 1)[-1]


def test_full_disk_on_append_keeps_samples(calibrated, monkeypatch: pytest.MonkeyPatch):
    run_dir = calibrated.root / "run"
    before = snapshot(calibrated.root)
    real_fsync = os.fsync
    failures = []

    def full_disk(descriptor: int) -> None:
        # fsync is where a write-back file system reports a full disk; the
        # disk has room again once the failed append is cut off.
        if file_name(descriptor) == "samples.jsonl" and not failures:
            failures.append(descriptor)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    result = invoke("sample", calibrated.config, "--set", "sampler.options.n_samples=40")
    monkeypatch.undo()

    assert_one_line_error(
        result, "samples.jsonl", "No space left on device", "choose another run_dir"
    )
    assert failures
    # The command rewrites sampling.json, with the new n_samples, before it draws.
    before.pop(run_dir / "sampling.json")
    assert_unchanged(before)
    assert [r["id"] for r in read_samples(run_dir / "samples.jsonl")] == list(range(16))
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".samp")]


def test_full_disk_on_report_keeps_old_result(calibrated, monkeypatch: pytest.MonkeyPatch):
    assert (
        invoke("estimate", calibrated.config, "--set", "sampler.options.n_samples=16").exit_code
        == 0
    )
    before = snapshot(calibrated.root)
    real_fsync = os.fsync

    def full_disk(descriptor: int) -> None:
        if file_name(descriptor).startswith(".result.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    result = invoke("estimate", calibrated.config)
    monkeypatch.undo()

    assert_one_line_error(result, "result.json", "No space left on device")
    assert_unchanged(before)
    leftovers = [p.name for p in (calibrated.root / "run").iterdir() if p.name.startswith(".")]
    assert leftovers == [".lock"]


@contextlib.contextmanager
def mounted(options: str, source: str, target: Path) -> Iterator[None]:
    """Mount ``source`` on ``target`` for the block, or skip the test where mounting fails."""
    target.mkdir(exist_ok=True)
    command = ["mount", *options.split(), source, str(target)]
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a file system here ({error}); the fsync test covers this")
    try:
        yield
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_full_tmpfs_keeps_samples(calibrated, tmp_path):
    disk = tmp_path / "disk"
    run_size = sum(p.stat().st_size for p in (calibrated.root / "run").rglob("*") if p.is_file())
    # Room for the run as it is, its folders and a few samples, not for 500 samples.
    size_kb = run_size // 1024 + 128
    with mounted(f"-t tmpfs -o size={size_kb}k", "tmpfs", disk):
        shutil.copytree(calibrated.root / "run" / "calibration", disk / "run" / "calibration")
        before = snapshot(disk)
        records = [json.loads(line) for line in calibrated.samples.read_text().splitlines()]
        big = calibrated.root / "big.jsonl"
        big.write_text("".join(json.dumps(r) + "\n" for r in records * 200))
        result = invoke(
            "sample",
            calibrated.config,
            "--run-dir",
            disk / "run",
            "--set",
            f"sampler.options.path={big}",
        )
        assert_one_line_error(result, "No space left on device")
        assert_unchanged(before)
        stored = read_samples(disk / "run" / "samples.jsonl")
        assert [r["id"] for r in stored] == list(range(len(stored)))


def test_read_only_run_dir_rejected(calibrated, tmp_path):
    run_dir = calibrated.root / "run"
    before = snapshot(run_dir)
    if os.geteuid() != 0:
        for path in [run_dir, *run_dir.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        target = run_dir
        context = contextlib.nullcontext()
    else:
        target = tmp_path / "read-only"
        context = mounted("--bind -o ro", str(run_dir), target)
    with context:
        result = invoke("sample", calibrated.config, "--run-dir", target)
        assert_one_line_error(result, "cannot write run directory", "choose another run_dir")
    if os.geteuid() != 0:
        for path in [run_dir, *run_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert_unchanged(before)


# Names that become paths


@pytest.mark.parametrize("name", ["../escape", "/tmp/absolute", "nested/name", "..", "a\\b"])
def test_plugin_name_cannot_escape_folder(tmp_path, name):
    result = invoke("plugin", "new", name, "--kind", "solver", "--dir", tmp_path / "out")

    assert_one_line_error(result, "invalid plugin name", "lowercase letters")
    assert not any(tmp_path.rglob("*.py"))

"""The ``file`` sampler: an audit of texts that were collected before the audit.

It reads a JSONL file, a text file or a folder of them, and hands the texts
to the audit in a fixed order, with the same records as a generating sampler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from llmsurgeon_core import ComponentOptions, ConfigError, GeneratedText, Sampler, SampleRequest

__all__ = ["FileSampler", "FileSamplerOptions"]

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


class FileSamplerOptions(ComponentOptions):
    """Options of the ``file`` sampler."""

    path: str = Field(
        description="A JSONL file, a text file, or a folder whose files matching `glob` are "
        "read in sorted path order."
    )
    glob: str = Field(
        "**/*",
        description="Pattern of the files read from a folder, relative to it; files and "
        "folders whose names start with a dot are skipped.",
    )
    format: Literal["auto", "jsonl", "text"] = Field(
        "auto",
        description="'jsonl': one JSON object (or string) per line; 'text': plain text split "
        "by `split`; 'auto': jsonl for names ending in .jsonl or .ndjson, text otherwise.",
    )
    text_field: str = Field("text", description="Key of the text in each JSONL object.")
    prompt_field: str = Field(
        "prompt",
        description="Key of the prompt in each JSONL object; a missing key gives an empty prompt.",
    )
    split: Literal["file", "paragraph", "line"] = Field(
        "file",
        description="How a text file is cut into samples: the whole file, paragraphs "
        "separated by blank lines, or single lines.",
    )
    skip_empty: bool = Field(True, description="Drop texts that are empty or only whitespace.")
    n_samples: int | None = Field(
        None,
        ge=1,
        description="Number of texts to audit; unset audits all of them. With `shuffle`, "
        "they are a seeded random subset, otherwise the first ones in file order.",
    )
    shuffle: bool = Field(
        False, description="Audit the texts in an order drawn from `seed` instead of file order."
    )
    seed: int = Field(0, description="Seed of the order used by `shuffle`.")
    batch_size: int = Field(
        256, ge=1, description="Number of texts appended to samples.jsonl at a time."
    )

    @model_validator(mode="after")
    def _check_json_keys(self) -> FileSamplerOptions:
        if self.text_field == self.prompt_field:
            raise ValueError("text_field and prompt_field must name different keys")
        return self


@dataclass(frozen=True)
class _SourceFile:
    path: Path
    name: str
    sha256: str
    size: int


class FileSampler(Sampler):
    """Reads collected texts in place of generating them.

    A JSONL object may carry ``n_tokens``, ``finish_reason`` and ``metadata``
    as a generating sampler writes them, so the ``samples.jsonl`` of another
    run can be audited again. Where ``n_tokens`` is missing it is the number
    of whitespace-separated words, and ``metadata["n_tokens_unit"]`` is
    ``"words"``. ``metadata`` also records the source file and its line or
    part number.

    All texts are read into memory when the sampler first needs them.
    """

    Options = FileSamplerOptions
    options: FileSamplerOptions

    def __init__(self, options: FileSamplerOptions) -> None:
        super().__init__(options)
        self._texts: list[GeneratedText] | None = None
        self._files: list[_SourceFile] = []
        self._n_available = 0

    @property
    def n_samples(self) -> int:
        texts = self._load()
        return len(texts)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    def prepare(self, cache_dir: Path) -> None:
        """Read and check every file, so a malformed one fails before sampling starts."""
        self._load()

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        """Return the collected texts at the indices of ``request``, in order.

        ``request.seed`` is not used: the order is fixed by the options.
        """
        texts = self._load()
        return [texts[index] for index in request.indices]

    def protocol(self) -> dict[str, Any]:
        """Return the options and the name, size and SHA-256 of every file read."""
        self._load()
        protocol = super().protocol()
        protocol["files"] = [
            {"name": f.name, "bytes": f.size, "sha256": f.sha256} for f in self._files
        ]
        protocol["n_available"] = self._n_available
        return protocol

    def decoding(self) -> dict[str, Any]:
        """Return no settings, because the decoding of collected texts is unknown."""
        return {}

    # Reading

    def _load(self) -> list[GeneratedText]:
        if self._texts is not None:
            return self._texts
        root = Path(self.options.path)
        texts: list[GeneratedText] = []
        for path, name in self._source_paths(root):
            data = path.read_bytes()
            self._files.append(_SourceFile(path, name, hashlib.sha256(data).hexdigest(), len(data)))
            try:
                content = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ConfigError(
                    f"file {str(path)!r} is not valid UTF-8 (byte {error.start}); "
                    "convert it to UTF-8 or exclude it with sampler option glob"
                ) from None
            if self._is_jsonl(path):
                texts.extend(self._read_jsonl(content, path, name))
            else:
                texts.extend(self._read_text(content, name))
        if self.options.skip_empty:
            texts = [t for t in texts if t.text.strip()]
        if not texts:
            raise ConfigError(
                f"sampler option path {str(root)!r} contains no texts; check path, glob, "
                "format and text_field"
            )
        self._n_available = len(texts)
        if self.options.shuffle:
            random.Random(self.options.seed).shuffle(texts)
        wanted = self.options.n_samples
        if wanted is not None:
            if wanted > len(texts):
                raise ConfigError(
                    f"sampler option n_samples is {wanted}, but {str(root)!r} contains only "
                    f"{len(texts)} texts; lower n_samples or leave it unset"
                )
            texts = texts[:wanted]
        logger.info("read %d texts from %d files under %s", len(texts), len(self._files), root)
        self._texts = texts
        return texts

    def _source_paths(self, root: Path) -> list[tuple[Path, str]]:
        if root.is_file():
            return [(root, root.name)]
        if not root.is_dir():
            raise ConfigError(
                f"sampler option path {str(root)!r} not found; set it to a JSONL file, "
                "a text file or a folder"
            )
        paths = []
        for path in sorted(root.glob(self.options.glob)):
            relative = path.relative_to(root)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue
            paths.append((path, relative.as_posix()))
        return paths

    def _is_jsonl(self, path: Path) -> bool:
        if self.options.format != "auto":
            return self.options.format == "jsonl"
        return path.suffix.lower() in JSONL_SUFFIXES

    def _read_jsonl(self, content: str, path: Path, name: str) -> list[GeneratedText]:
        texts = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"{str(path)!r} line {number} is not valid JSON ({error.msg}); fix that "
                    "line, or set sampler option format to 'text'"
                ) from None
            texts.append(self._record_to_text(record, path, number, name))
        return texts

    def _record_to_text(self, record: Any, path: Path, number: int, name: str) -> GeneratedText:
        where = f"{str(path)!r} line {number}"
        if isinstance(record, str):
            record = {self.options.text_field: record}
        if not isinstance(record, dict):
            raise ConfigError(f"{where} is neither a JSON object nor a string")
        text = record.get(self.options.text_field)
        if not isinstance(text, str):
            raise ConfigError(
                f"{where} has no string under key {self.options.text_field!r}; set sampler "
                f"option text_field to the key of the text (keys: {', '.join(sorted(record))})"
            )
        prompt = record.get(self.options.prompt_field, "")
        if not isinstance(prompt, str):
            raise ConfigError(f"{where}: {self.options.prompt_field!r} is not a string")
        stored = record.get("metadata")
        metadata: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        metadata.update({"source": name, "line": number})
        n_tokens = record.get("n_tokens")
        if not isinstance(n_tokens, int) or isinstance(n_tokens, bool):
            n_tokens = len(text.split())
            metadata["n_tokens_unit"] = "words"
        finish_reason = record.get("finish_reason")
        if not isinstance(finish_reason, str):
            finish_reason = "unknown"
        return GeneratedText(prompt, text, n_tokens, finish_reason, metadata)

    def _read_text(self, content: str, name: str) -> list[GeneratedText]:
        if self.options.split == "file":
            parts = [content]
        elif self.options.split == "paragraph":
            parts = _BLANK_LINE.split(content)
        else:
            parts = content.splitlines()
        return [
            GeneratedText(
                "",
                part,
                len(part.split()),
                "unknown",
                {"source": name, "part": number, "n_tokens_unit": "words"},
            )
            for number, part in enumerate(parts)
        ]

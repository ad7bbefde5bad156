"""Reference corpora: reading a taxonomy's sources and cutting them into chunks."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import logging
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import TaxonomyError
from .taxonomy import (
    DistributionSource,
    FilesSource,
    JsonlSource,
    PackageReadmesSource,
    Source,
    Taxonomy,
)

__all__ = ["ReferenceCorpus", "build_reference_corpus", "chunk_text", "iter_domain_chunks"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Document:
    """A reference text that is read only when needed."""

    key: str
    read: Callable[[], str]


@dataclass
class ReferenceCorpus:
    """Labelled reference chunks; ``labels[i]`` indexes ``domains``."""

    texts: list[str]
    labels: np.ndarray
    domains: list[str]

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.domains))

    def digest(self) -> str:
        """Return a SHA-256 of the texts and labels, to tie calibrations to it."""
        hasher = hashlib.sha256()
        for text, label in zip(self.texts, self.labels):
            hasher.update(f"{int(label)}\0{len(text)}\0".encode())
            hasher.update(text.encode("utf-8", "surrogatepass"))
        return hasher.hexdigest()


def chunk_text(text: str, words: int, min_words: int | None = None) -> list[str]:
    """Cut ``text`` into runs of ``words`` whitespace-separated words.

    Each chunk is a slice of the original text, so newlines and indentation
    (which matter for code) survive. A trailing run shorter than ``min_words``
    (default: half of ``words``) is dropped.
    """
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}")
    min_words = words // 2 if min_words is None else min_words
    spans = [match.span() for match in _WORD.finditer(text)]
    chunks = []
    for start in range(0, len(spans), words):
        run = spans[start : start + words]
        if len(run) < max(min_words, 1):
            break
        chunks.append(text[run[0][0] : run[-1][1]])
    return chunks


def _read_text_file(path: Path, encoding: str = "utf-8") -> str:
    try:
        text = path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as error:
        logger.debug("skipping unreadable reference file %s: %s", path, error)
        return ""
    if "\0" in text:
        logger.debug("skipping binary reference file %s", path)
        return ""
    return text


def _files_documents(source: FilesSource, base_dir: Path) -> list[Document]:
    pattern = Path(source.glob).expanduser()
    if not pattern.is_absolute():
        pattern = base_dir / pattern
    paths = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True))
    return [
        Document(str(p), lambda p=p: _read_text_file(p, source.encoding))
        for p in paths
        if p.is_file()
    ]


def _jsonl_documents(source: JsonlSource, base_dir: Path) -> list[Document]:
    path = Path(source.path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TaxonomyError(f"reference file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TaxonomyError(f"cannot read reference file {str(path)!r}: {error}") from None
    documents = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record[source.text_field]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise TaxonomyError(
                f"{str(path)!r} line {number}: expected a JSON object with a "
                f"{source.text_field!r} string field"
            ) from None
        if isinstance(text, str):
            documents.append(Document(f"{path}:{number}", lambda text=text: text))
    return documents


def _distribution_documents(source: DistributionSource) -> list[Document]:
    try:
        distribution = metadata.distribution(source.distribution)
    except metadata.PackageNotFoundError:
        raise TaxonomyError(
            f"distribution {source.distribution!r} is not installed; "
            f"install it with `pip install {source.distribution}`"
        ) from None
    files = sorted(str(f) for f in distribution.files or [])
    matched = [f for f in files if fnmatch.fnmatch(f, source.glob)]
    return [
        Document(f, lambda f=f: _read_text_file(Path(distribution.locate_file(f)))) for f in matched
    ]


def _readme_documents(source: PackageReadmesSource) -> list[Document]:
    excluded = {name.lower() for name in source.exclude}
    documents = {}
    for distribution in metadata.distributions():
        name = distribution.metadata.get("Name") or ""
        if not name or name.lower() in excluded or name.lower() in documents:
            continue
        description = distribution.metadata.get_payload() or ""
        if not isinstance(description, str) or len(description) < source.min_chars:
            continue
        documents[name.lower()] = Document(f"{name}/METADATA", lambda d=description: d)
    return [documents[key] for key in sorted(documents)]


def list_documents(source: Source, base_dir: Path) -> list[Document]:
    """Return the documents of one reference source, in a stable order."""
    if isinstance(source, FilesSource):
        return _files_documents(source, base_dir)
    if isinstance(source, JsonlSource):
        return _jsonl_documents(source, base_dir)
    if isinstance(source, DistributionSource):
        return _distribution_documents(source)
    if isinstance(source, PackageReadmesSource):
        return _readme_documents(source)
    raise TypeError(f"unsupported source {source!r}")


def iter_domain_chunks(
    taxonomy: Taxonomy,
    domain_id: str,
    chunk_words: int,
    seed: int,
    max_chunks_per_document: int | None = None,
) -> Iterator[str]:
    """Yield chunks of one domain's documents, visiting documents in random order."""
    domain = next(d for d in taxonomy.domains if d.id == domain_id)
    documents = [doc for s in domain.sources for doc in list_documents(s, taxonomy.base_dir)]
    random.Random(f"{seed}:{domain_id}").shuffle(documents)
    rng = random.Random(f"{seed}:{domain_id}:chunks")
    for document in documents:
        chunks = chunk_text(document.read(), chunk_words)
        if max_chunks_per_document is not None and len(chunks) > max_chunks_per_document:
            chunks = rng.sample(chunks, max_chunks_per_document)
        yield from chunks


def build_reference_corpus(
    taxonomy: Taxonomy,
    max_per_domain: int,
    chunk_words: int,
    seed: int,
    min_per_domain: int = 1,
    max_chunks_per_document: int = 8,
) -> ReferenceCorpus:
    """Assemble at most ``max_per_domain`` chunks for every domain.

    Documents are drawn in a seeded random order and at most
    ``max_chunks_per_document`` chunks are taken from each, so one long file
    cannot fill a domain.

    Raises:
        TaxonomyError: if a domain yields fewer than ``min_per_domain`` chunks.
    """
    texts: list[str] = []
    labels: list[int] = []
    for index, domain in enumerate(taxonomy.domains):
        chunks = []
        for chunk in iter_domain_chunks(
            taxonomy, domain.id, chunk_words, seed, max_chunks_per_document
        ):
            chunks.append(chunk)
            if len(chunks) >= max_per_domain:
                break
        if len(chunks) < min_per_domain:
            raise TaxonomyError(
                f"domain {domain.id!r} of taxonomy {taxonomy.name!r} has {len(chunks)} "
                f"reference chunks, fewer than the {min_per_domain} required; add sources "
                "to it or lower reference.folds"
            )
        logger.info("domain %s: %d reference chunks", domain.id, len(chunks))
        texts.extend(chunks)
        labels.extend([index] * len(chunks))
    return ReferenceCorpus(texts, np.asarray(labels, dtype=np.int64), taxonomy.domain_ids)

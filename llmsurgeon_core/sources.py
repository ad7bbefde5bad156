"""Reading a taxonomy's reference sources into documents.

`datasets` and `pyarrow` are imported only when a source of their kind is
read, so the core starts without them; install them with the ``datasets``
extra (``pip install 'llmsurgeon-core[datasets]'``).
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import TaxonomyError
from .paths import cache_dir
from .storage import atomic_write_text
from .taxonomy import (
    CsvSource,
    DistributionSource,
    FilesSource,
    HfDatasetSource,
    JsonlSource,
    PackageReadmesSource,
    ParquetSource,
    Source,
)

__all__ = ["Document", "hf_cache_path", "list_documents", "matches_where"]

logger = logging.getLogger(__name__)

_EXTRA_HINT = "install it with `pip install 'llmsurgeon-core[datasets]'`"


@dataclass(frozen=True)
class Document:
    """A reference text that is read only when needed."""

    key: str
    read: Callable[[], str]


def _resolve(path: str, base_dir: Path) -> Path:
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base_dir / resolved


def _glob_paths(pattern: str, base_dir: Path) -> list[Path]:
    """Return the files matching ``pattern``, sorted, or raise if there are none."""
    resolved = _resolve(pattern, base_dir)
    paths = sorted(Path(p) for p in glob.glob(str(resolved), recursive=True))
    files = [p for p in paths if p.is_file()]
    if not files:
        raise TaxonomyError(f"reference path {str(resolved)!r} matches no file")
    return files


def field_value(record: Mapping[str, Any], dotted: str) -> Any:
    """Return ``record[a][b]`` for ``a.b``, or None where a level is missing."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def matches_where(record: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Return whether every ``where`` field of ``record`` has an allowed value."""
    for key, expected in where.items():
        allowed = expected if isinstance(expected, list) else [expected]
        if field_value(record, key) not in allowed:
            return False
    return True


def _record_documents(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    text_field: str,
    where: Mapping[str, Any],
    label: str,
) -> list[Document]:
    """Turn ``(key, record)`` pairs into documents, keeping those ``where`` selects."""
    documents = []
    for key, record in records:
        if not matches_where(record, where):
            continue
        text = field_value(record, text_field)
        if text is None and text_field not in record:
            raise TaxonomyError(f"{key}: record has no field {text_field!r}; set text_field")
        if isinstance(text, str) and text:
            documents.append(Document(key, lambda text=text: text))
    logger.debug("%s: %d documents", label, len(documents))
    return documents


def _read_text_file(path: Path, encoding: str = "utf-8") -> str:
    try:
        text = path.read_text(encoding=encoding)
    except LookupError:
        raise TaxonomyError(
            f"unknown encoding {encoding!r} for reference file {str(path)!r}; "
            "set the source's encoding to one Python knows, such as utf-8 or latin-1"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        logger.warning("skipping unreadable reference file %s: %s", path, error)
        return ""
    if "\0" in text:
        logger.debug("skipping binary reference file %s", path)
        return ""
    return text


def _files_documents(source: FilesSource, base_dir: Path) -> list[Document]:
    pattern = _resolve(source.glob, base_dir)
    paths = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True))
    return [
        Document(str(p), lambda p=p: _read_text_file(p, source.encoding))
        for p in paths
        if p.is_file()
    ]


def _jsonl_records(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TaxonomyError(f"reference file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TaxonomyError(f"cannot read reference file {str(path)!r}: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise TaxonomyError(f"{str(path)!r} line {number}: expected a JSON object")
        yield f"{path}:{number}", record


def _jsonl_documents(source: JsonlSource, base_dir: Path) -> list[Document]:
    path = _resolve(source.path, base_dir)
    documents = []
    for key, record in _jsonl_records(path):
        if not matches_where(record, source.where):
            continue
        text = field_value(record, source.text_field)
        if not isinstance(text, str):
            raise TaxonomyError(
                f"{key}: expected a JSON object with a {source.text_field!r} string field"
            )
        documents.append(Document(key, lambda text=text: text))
    return documents


def _csv_records(source: CsvSource, base_dir: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    # Reference texts are often longer than the csv module's default field limit.
    previous_limit = csv.field_size_limit(2**31 - 1)
    try:
        for path in _glob_paths(source.path, base_dir):
            try:
                with path.open(encoding=source.encoding, newline="") as handle:
                    reader = csv.DictReader(handle, delimiter=source.delimiter)
                    if reader.fieldnames is None or source.text_field not in reader.fieldnames:
                        raise TaxonomyError(
                            f"{str(path)!r} has no column {source.text_field!r}; columns: "
                            f"{', '.join(reader.fieldnames or [])}"
                        )
                    for number, row in enumerate(reader, start=2):
                        yield f"{path}:{number}", row
            except (OSError, UnicodeDecodeError, csv.Error) as error:
                raise TaxonomyError(f"cannot read CSV file {str(path)!r}: {error}") from None
    finally:
        csv.field_size_limit(previous_limit)


def _parquet_records(
    source: ParquetSource, base_dir: Path
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise TaxonomyError(f"parquet sources need pyarrow; {_EXTRA_HINT}") from None
    columns = sorted({source.text_field.split(".")[0], *(k.split(".")[0] for k in source.where)})
    for path in _glob_paths(source.path, base_dir):
        try:
            table = parquet.read_table(path, columns=columns)
        except (OSError, ValueError, KeyError) as error:
            raise TaxonomyError(f"cannot read parquet file {str(path)!r}: {error}") from None
        for number, row in enumerate(table.to_pylist()):
            yield f"{path}:{number}", row


def hf_cache_path(source: HfDatasetSource, base_dir: Path) -> Path:
    """Return the cache file of an `hf-dataset` source, keyed by what selects its texts."""
    spec = source.model_dump(mode="json", exclude={"strip", "cache", "streaming"})
    if source.data_files is not None:
        files = [source.data_files] if isinstance(source.data_files, str) else source.data_files
        spec["data_files"] = [str(_resolve(f, base_dir)) for f in files]
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "reference" / f"{digest}.jsonl"


def _stream_hf_texts(source: HfDatasetSource, base_dir: Path) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise TaxonomyError(f"hf-dataset sources need `datasets`; {_EXTRA_HINT}") from None
    data_files: Any = source.data_files
    if isinstance(data_files, str):
        data_files = str(_resolve(data_files, base_dir))
    elif isinstance(data_files, list):
        data_files = [str(_resolve(f, base_dir)) for f in data_files]
    label = f"dataset {source.path!r}" + (f" config {source.name!r}" if source.name else "")
    try:
        dataset = datasets.load_dataset(
            source.path,
            source.name,
            split=source.split,
            data_files=data_files,
            revision=source.revision,
            streaming=source.streaming,
        )
        texts = []
        for scanned, record in enumerate(dataset, start=1):
            if matches_where(record, source.where):
                text = field_value(record, source.text_field)
                if isinstance(text, str) and text:
                    texts.append(text)
            if len(texts) >= source.max_documents:
                break
            if source.max_scanned is not None and scanned >= source.max_scanned:
                break
    except (OSError, ValueError) as error:
        raise TaxonomyError(
            f"cannot read {label} split {source.split!r}: {error}; check the name, or work "
            "offline from a cached copy"
        ) from None
    if not texts:
        logger.warning("%s split %s: no record matched %s", label, source.split, source.where)
    return texts


def _hf_documents(source: HfDatasetSource, base_dir: Path) -> list[Document]:
    path = hf_cache_path(source, base_dir)
    if source.cache and path.is_file():
        logger.info("reading %s from the cache %s", source.path, path)
        texts = [r["text"] for _, r in _jsonl_records(path)]
    else:
        texts = _stream_hf_texts(source, base_dir)
        # An empty result is not cached, so a corrected filter or a later online run can fill it.
        if source.cache and texts:
            atomic_write_text(path, "".join(json.dumps({"text": t}) + "\n" for t in texts))
    return [Document(f"{source.path}:{n}", lambda t=t: t) for n, t in enumerate(texts)]


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
    """Return the documents of one reference source, in a stable order.

    Raises:
        TaxonomyError: if the source cannot be read.
    """
    if isinstance(source, FilesSource):
        return _files_documents(source, base_dir)
    if isinstance(source, JsonlSource):
        return _jsonl_documents(source, base_dir)
    if isinstance(source, CsvSource):
        records = _csv_records(source, base_dir)
        return _record_documents(records, source.text_field, source.where, source.path)
    if isinstance(source, ParquetSource):
        records = _parquet_records(source, base_dir)
        return _record_documents(records, source.text_field, source.where, source.path)
    if isinstance(source, HfDatasetSource):
        return _hf_documents(source, base_dir)
    if isinstance(source, DistributionSource):
        return _distribution_documents(source)
    if isinstance(source, PackageReadmesSource):
        return _readme_documents(source)
    raise TypeError(f"unsupported source {source!r}")

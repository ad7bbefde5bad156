"""Every reference source kind, cleaners, deduplication and per-domain caps."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmsurgeon_core import TaxonomyError, build_reference_corpus
from llmsurgeon_core.cleaning import (
    strip_email_headers,
    strip_html,
    strip_latex_preamble,
    strip_licence_headers,
)
from llmsurgeon_core.sources import hf_cache_path, list_documents
from llmsurgeon_core.taxonomy import load_taxonomy_file

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _text(seed: int, words: int = 40) -> str:
    return " ".join(f"{WORDS[(seed + i) % len(WORDS)]}{seed}" for i in range(words))


def _records() -> list[dict]:
    return [
        {
            "text": _text(i),
            "meta": {"set": "law" if i % 2 else "news"},
            "set": "law" if i % 2 else "news",
        }
        for i in range(10)
    ]


def _taxonomy(tmp_path: Path, sources_law: str, sources_news: str, extra: str = ""):
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: t
            {extra}
            domains:
              - id: law
                sources: [{sources_law}]
              - id: news
                sources: [{sources_news}]
            """
        )
    )
    return load_taxonomy_file(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("LLMSURGEON_CACHE_DIR", str(tmp_path / "cache"))


def test_jsonl_source_with_where(tmp_path):
    with (tmp_path / "data.jsonl").open("w") as handle:
        for record in _records():
            handle.write(json.dumps(record) + "\n")
    source = "{kind: jsonl, path: data.jsonl, where: {meta.set: %s}}"
    taxonomy = _taxonomy(tmp_path, source % "law", source % "news")
    corpus = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=10, seed=0)
    assert corpus.counts().tolist() == [20, 20]
    assert all(text.endswith(("1", "3", "5", "7", "9")) for text in corpus.texts[:20])


def test_csv_source_reads_long_fields(tmp_path):
    with (tmp_path / "data.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["body", "set"])
        writer.writeheader()
        for record in _records():
            writer.writerow({"body": record["text"], "set": record["set"]})
        writer.writerow({"body": "x " * 100_000, "set": "other"})
    source = "{kind: csv, path: '*.csv', text_field: body, where: {set: %s}}"
    taxonomy = _taxonomy(tmp_path, source % "law", source % "news")
    corpus = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=10, seed=0)
    assert corpus.counts().tolist() == [20, 20]


def test_csv_missing_column_names_columns(tmp_path):
    (tmp_path / "data.csv").write_text("body,set\nhello,law\n")
    taxonomy = _taxonomy(tmp_path, "{kind: csv, path: data.csv}", "{kind: csv, path: data.csv}")
    with pytest.raises(TaxonomyError, match="has no column 'text'; columns: body, set"):
        build_reference_corpus(taxonomy, max_per_domain=5, chunk_words=4, seed=0)


def test_csv_no_match_raises(tmp_path):
    taxonomy = _taxonomy(tmp_path, "{kind: csv, path: '*.csv'}", "{kind: csv, path: x.csv}")
    with pytest.raises(TaxonomyError, match=r"matches no file"):
        build_reference_corpus(taxonomy, max_per_domain=5, chunk_words=4, seed=0)


def test_parquet_source_with_nested_where(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    parquet.write_table(pa.Table.from_pylist(_records()), tmp_path / "data.parquet")
    source = "{kind: parquet, path: data.parquet, where: {meta.set: %s}}"
    taxonomy = _taxonomy(tmp_path, source % "law", source % "news")
    corpus = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=10, seed=0)
    assert corpus.counts().tolist() == [20, 20]


def test_hf_dataset_offline_then_cached(tmp_path, offline, monkeypatch):
    with (tmp_path / "data.jsonl").open("w") as handle:
        for record in _records():
            handle.write(json.dumps(record) + "\n")
    source = (
        "{kind: hf-dataset, path: json, data_files: data.jsonl, "
        "where: {meta.set: %s}, max_documents: 3}"
    )
    taxonomy = _taxonomy(tmp_path, source % "law", source % "news")
    first = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=10, seed=0)
    assert first.counts().tolist() == [12, 12]
    law = taxonomy.domain("law").sources[0]
    assert hf_cache_path(law, taxonomy.base_dir).is_file()

    import datasets

    def fail(*args, **kwargs):
        raise AssertionError("load_dataset called although the cache holds the texts")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    second = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=10, seed=0)
    assert second.digest() == first.digest()


def test_hf_dataset_unknown_name_offline_raises(tmp_path, offline):
    source = "{kind: hf-dataset, path: no-such-owner/no-such-dataset, streaming: false}"
    taxonomy = _taxonomy(tmp_path, source, source)
    with pytest.raises(TaxonomyError, match="cannot read dataset 'no-such-owner/no-such-dataset'"):
        list_documents(taxonomy.domain("law").sources[0], taxonomy.base_dir)


def test_core_start_imports_no_datasets():
    code = (
        "import sys, llmsurgeon_core.cli; "
        "print(sorted({'datasets', 'pyarrow', 'pandas'} & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "[]"


def test_files_source_with_cleaners_and_dedup(tmp_path):
    (tmp_path / "mail").mkdir()
    (tmp_path / "tex").mkdir()
    for i in range(3):
        body = _text(i)
        (tmp_path / "mail" / f"{i}.eml").write_text(
            f"From: a@example.com\nSubject: note {i}\n  folded\n\n{body}\n"
        )
    # A second copy of message 0 with other headers is a duplicate once they go.
    (tmp_path / "mail" / "copy.eml").write_text(f"From: b@example.com\n\n{_text(0)}\n")
    for i in range(3):
        (tmp_path / "tex" / f"{i}.tex").write_text(
            "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
            f"{_text(10 + i)} % a comment\n\\end{{document}}\n"
        )
    taxonomy = _taxonomy(
        tmp_path,
        "{kind: files, glob: 'mail/*.eml', strip: [email-headers]}",
        "{kind: files, glob: 'tex/*.tex', strip: [latex-preamble]}",
        extra="preprocess: {deduplicate: true}",
    )
    corpus = build_reference_corpus(taxonomy, max_per_domain=50, chunk_words=40, seed=0)
    assert corpus.counts().tolist() == [3, 3]
    joined = "\n".join(corpus.texts)
    for tell in ("From:", "Subject", "documentclass", "usepackage", "comment"):
        assert tell not in joined


def test_domain_caps_chunks_and_words(tmp_path):
    with (tmp_path / "data.jsonl").open("w") as handle:
        for record in _records():
            handle.write(json.dumps(record) + "\n")
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: t
            preprocess: {max_chunks: 7}
            domains:
              - id: law
                max_words: 25
                sources: [{kind: jsonl, path: data.jsonl}]
              - id: news
                sources: [{kind: jsonl, path: data.jsonl}]
              - id: other
                max_chunks: 3
                sources: [{kind: jsonl, path: data.jsonl}]
            """
        )
    )
    taxonomy = load_taxonomy_file(path)
    corpus = build_reference_corpus(taxonomy, max_per_domain=5, chunk_words=10, seed=0)
    # law stops at 30 words (3 chunks), news at max_per_domain, other at its own cap.
    assert corpus.counts().tolist() == [3, 5, 3]


def test_one_leaf_taxonomy_is_rejected_for_audit(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("domains:\n  - {id: a}\n  - {id: b, parent: a}\n")
    with pytest.raises(TaxonomyError, match="needs at least two classes"):
        build_reference_corpus(load_taxonomy_file(path), 5, 10, 0)


def test_strip_email_headers_keeps_text_without_headers():
    assert strip_email_headers("Dear all,\nhello\n") == "Dear all,\nhello\n"
    assert strip_email_headers("From: x\nTo: y\n\nBody\n") == "Body\n"


def test_strip_licence_headers():
    code = "/*\n * Copyright 2020 X\n * Licensed under MIT\n */\nint main() {}\n"
    assert strip_licence_headers(code) == "int main() {}\n"
    python = "# SPDX-License-Identifier: MIT\n# Copyright Y\nimport os\n"
    assert strip_licence_headers(python) == "import os\n"
    plain = "# A helper module\nimport os\n"
    assert strip_licence_headers(plain) == plain


def test_strip_latex_preamble_and_html():
    tex = "\\documentclass{article}\n\\begin{document}\nBody 50\\% % note\n\\end{document}"
    assert strip_latex_preamble(tex) == "Body 50\\% "
    html = "<html><head><title>t</title></head><body><p>Hi &amp; bye</p><script>x()</script></body>"
    assert strip_html(html) == "Hi & bye"

"""The packaged taxonomies register and load, and their reference text exists."""

from __future__ import annotations

import pytest

from llmsurgeon_core import build_reference_corpus, load_registry, resolve_taxonomy
from llmsurgeon_taxonomies.plugin import taxonomy_dir


def test_every_file_is_registered_and_valid():
    registry = load_registry()
    files = sorted(taxonomy_dir().glob("*.yaml"))
    assert files
    for path in files:
        registration = registry.get("taxonomy", path.stem)
        assert registration.plugin == "taxonomies"
        taxonomy = resolve_taxonomy(path.stem, registry)
        for recipe in taxonomy.recipes:
            assert sum(taxonomy.recipe_vector(recipe)) == pytest.approx(1.0)


def test_demo_reference_corpus_has_every_domain():
    taxonomy = resolve_taxonomy("demo")
    corpus = build_reference_corpus(taxonomy, max_per_domain=20, chunk_words=40, seed=0)
    assert corpus.counts().tolist() == [20] * len(taxonomy.domains)
    assert all(len(text.split()) >= 20 for text in corpus.texts)

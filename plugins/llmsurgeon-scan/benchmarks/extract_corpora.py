"""Extract the scan taxonomies' reference text from installed Debian packages into JSON Lines.

Each domain gets one ``DOMAIN.jsonl`` file of ``{"text", "source"}`` records
under the output folder. The extraction removes the formatting that would let
a classifier tell domains apart by their markup rather than their language:
dictionary headwords, pronunciations, etymology brackets and cross-reference
braces, verse numbers, roff and POD markup. Source code stays as written,
because its layout is part of the language.

Usage: ``python extract_corpora.py OUTPUT_DIR`` after the packages that
``benchmarks/build_scan_corpora.sh`` installs.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

logger = logging.getLogger("extract_corpora")

DICTD = Path("/usr/share/dictd")
FORTUNES = Path("/usr/share/games/fortunes")
PERL_POD = Path("/usr/share/perl")
MAN = Path("/usr/share/man")
SWIG_EXAMPLES = Path("/usr/share/doc/swig4.0-examples/Examples")
CARGO_REGISTRY = Path("/usr/share/cargo/registry")
INCLUDE = Path("/usr/include")

# Dictionary entries and fortunes joined into one document, so a document is
# a few hundred words like the other domains' documents.
ENTRIES_PER_DOCUMENT = 8
# Keep every n-th dictionary entry, spread over the alphabet, to bound the size.
DICTIONARY_STRIDE = {"gcide": 3, "wn": 3, "foldoc": 1, "jargon": 1}
MAX_MAN_PAGES = 700
MAN_PAGE_PACKAGES = ("manpages", "manpages-dev")
MAX_FILES_PER_EXTRA_SOURCE = 400

# The dictd index encodes offsets and lengths in this base-64 alphabet.
_DICTD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# File extensions of each language among the SWIG examples and the extra sources.
LANGUAGE_EXTENSIONS = {
    "c": (".c", ".h"),
    "cpp": (".cxx", ".cpp", ".hpp", ".cc"),
    "csharp": (".cs",),
    "d": (".d",),
    "go": (".go",),
    "java": (".java",),
    "javascript": (".js",),
    "lua": (".lua",),
    "ocaml": (".ml", ".mli"),
    "octave": (".m",),
    "perl": (".pl", ".pm"),
    "php": (".php",),
    "python": (".py",),
    "r": (".R", ".r"),
    "ruby": (".rb",),
    "rust": (".rs",),
    "scheme": (".scm",),
    "scilab": (".sci",),
    "swig": (".i",),
    "tcl": (".tcl",),
}

BIBLE_BOOKS = (
    "Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth 1Samuel 2Samuel "
    "1Kings 2Kings 1Chronicles 2Chronicles Ezra Nehemiah Esther Job Psalms Proverbs "
    "Ecclesiastes Song Isaiah Jeremiah Lamentations Ezekiel Daniel Hosea Joel Amos "
    "Obadiah Jonah Micah Nahum Habakkuk Zephaniah Haggai Zechariah Malachi Matthew Mark "
    "Luke John Acts Romans 1Corinthians 2Corinthians Galatians Ephesians Philippians "
    "Colossians 1Thessalonians 2Thessalonians 1Timothy 2Timothy Titus Philemon Hebrews "
    "James 1Peter 2Peter 1John 2John 3John Jude Revelation"
).split()


def _write_jsonl(path: Path, records: Iterable[dict[str, str]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            if record["text"].strip():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    logger.info("%s: %d documents", path.name, count)
    return count


def _grouped(texts: Iterable[str], source: str, size: int) -> Iterator[dict[str, str]]:
    group: list[str] = []
    for text in texts:
        group.append(text)
        if len(group) == size:
            yield {"text": "\n\n".join(group), "source": source}
            group = []
    if group:
        yield {"text": "\n\n".join(group), "source": source}


def _squeeze(text: str) -> str:
    """Collapse runs of spaces and strip every line, keeping paragraph breaks."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Dictionaries


def _dictd_number(text: str) -> int:
    value = 0
    for character in text:
        value = value * 64 + _DICTD_ALPHABET.index(character)
    return value


def dictd_entries(name: str) -> Iterator[str]:
    """Yield the raw entries of dictd dictionary ``name``, skipping its database notes."""
    data = gzip.open(DICTD / f"{name}.dict.dz").read()
    index = (DICTD / f"{name}.index").read_text(encoding="utf-8", errors="replace")
    seen: set[int] = set()
    for line in index.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith(("00-database", "00database")):
            continue
        offset = _dictd_number(parts[1])
        if offset in seen:  # several headwords can share one entry
            continue
        seen.add(offset)
        # The index counts bytes, so slice before decoding.
        yield data[offset : offset + _dictd_number(parts[2])].decode("utf-8", "replace")


# A line that holds only part-of-speech abbreviations, such as "n." or "v. t.".
_GCIDE_PART_OF_SPEECH = re.compile(r"^\s*(?:[a-z]{1,5}\.\s*)+$", re.MULTILINE)


def clean_gcide(entry: str) -> str:
    """Drop the headword, pronunciation, etymology and source brackets of a GCIDE entry."""
    entry = re.sub(r"^[^\n\\]*\\[^\\\n]*\\,?", "", entry, flags=re.MULTILINE)
    entry = re.sub(r"\((?:[A-Z][a-z]*\.\s?)+\)", "", entry)
    entry = re.sub(r"\[[^\]]*\]", "", entry, flags=re.DOTALL)
    entry = re.sub(r"--[A-Z][\w. ]*\.", "", entry)
    entry = re.sub(_GCIDE_PART_OF_SPEECH, "", entry)
    entry = re.sub(r"^\s*(?:\d+\.|\([a-z]\))\s+", "", entry, flags=re.MULTILINE)
    entry = entry.replace("{", "").replace("}", "")
    return _squeeze(entry)


def clean_wordnet(entry: str) -> str:
    """Drop the headword, sense numbers and synonym brackets of a WordNet entry."""
    entry = entry.split("\n", 1)[1] if "\n" in entry else ""
    entry = re.sub(r"\[(?:syn|ant|also|see)[^\]]*\]", "", entry, flags=re.DOTALL)
    entry = re.sub(r"^\s*(?:(?:n|v|adj|adv)\s+)?\d+:\s*", "", entry, flags=re.MULTILINE)
    entry = entry.replace("{", "").replace("}", "")
    return _squeeze(entry)


def clean_encyclopedia(entry: str) -> str:
    """Drop the headword, category tags, dates and link braces of a FOLDOC or Jargon entry."""
    entry = entry.split("\n", 1)[1] if "\n" in entry else ""
    entry = re.sub(r"<[^>\n]*>", "", entry)
    entry = re.sub(r"\(\d{4}-\d{2}-\d{2}\)", "", entry)
    entry = re.sub(r"^\s*\d+\.\s+", "", entry, flags=re.MULTILINE)
    entry = entry.replace("{", "").replace("}", "")
    return _squeeze(entry)


def dictionary_documents(name: str, cleaner: Callable[[str], str]) -> Iterator[dict[str, str]]:
    """Yield every ``DICTIONARY_STRIDE``-th cleaned entry of ``name``, grouped into documents."""
    stride = DICTIONARY_STRIDE[name]
    entries = (cleaner(e) for i, e in enumerate(dictd_entries(name)) if i % stride == 0)
    return _grouped((e for e in entries if len(e.split()) >= 4), name, ENTRIES_PER_DOCUMENT)


# Prose


def fortune_documents() -> Iterator[dict[str, str]]:
    """Yield fortunes grouped by file, without the art files whose text is pictures."""
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or path.is_symlink() or "art" in path.name or not path.is_file():
            continue
        quotes = [_squeeze(q) for q in path.read_text(errors="replace").split("\n%\n")]
        yield from _grouped((q for q in quotes if q), f"fortunes/{path.name}", ENTRIES_PER_DOCUMENT)


def bible_documents() -> Iterator[dict[str, str]]:
    """Yield the King James Bible chapter by chapter, without verse numbers."""
    for book in BIBLE_BOOKS:
        chapter = 1
        while True:
            output = subprocess.run(
                ["bible", "-f", f"{book}{chapter}:1-200"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                check=False,
            ).stdout
            # Past a book's last chapter the program prints the last chapter
            # again, so the chapter number of the first verse ends the book.
            reference = re.match(r"(.*?)(\d+):\d+", output)
            if reference is None or int(reference.group(2)) != chapter:
                break
            text = re.sub(r"^\S+\d+:\d+\s+", "", output, flags=re.MULTILINE)
            yield {"text": text.strip(), "source": f"kjv/{book}{chapter}"}
            chapter += 1


def _run_text(command: list[str], environment: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False, errors="replace"
    )
    return result.stdout


# A line of capitals only, such as "NAME" or "SEE ALSO": a man page or POD heading.
_SECTION_HEADING = re.compile(r"^[A-Z][A-Z /-]*$\n?", re.MULTILINE)


def _package_files(packages: Iterable[str]) -> list[Path]:
    """Return the files that the installed Debian ``packages`` own, sorted."""
    files: set[str] = set()
    for package in packages:
        listing = Path("/var/lib/dpkg/info") / f"{package}.list"
        files.update(listing.read_text(errors="replace").splitlines())
    return sorted(Path(f) for f in files)


def perl_documents() -> Iterator[dict[str, str]]:
    """Yield Perl's manuals and FAQ as plain text (pod2text), without the change logs."""
    for path in sorted(PERL_POD.glob("*/pod/*.pod")):
        if "delta" in path.name:
            continue
        text = _run_text(["pod2text", str(path)])
        yield {"text": _squeeze(_SECTION_HEADING.sub("", text)), "source": f"perl/{path.name}"}


def man_documents() -> Iterator[dict[str, str]]:
    """Yield man pages rendered by man as plain text, without headings, header and footer."""
    environment = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"}
    # The Linux man-pages project's pages, so the corpus does not depend on
    # what else a machine has installed.
    owned = _package_files(MAN_PAGE_PACKAGES)
    paths = [p for p in owned if p.parent.parent == MAN and p.suffix == ".gz" and p.is_file()]
    stride = max(1, len(paths) // MAX_MAN_PAGES)
    for path in paths[::stride]:
        text = _run_text(["man", "--nh", "--nj", "-l", "-P", "cat", str(path)], environment)
        text = re.sub(r".\x08", "", text)
        lines = text.strip().splitlines()[1:-1]
        body = _SECTION_HEADING.sub("", "\n".join(lines))
        yield {"text": _squeeze(body), "source": f"man/{path.name}"}


# Code


def _read_code(path: Path) -> str:
    if path.suffix == ".gz":
        return gzip.open(path).read().decode("utf-8", "replace")
    return path.read_text(encoding="utf-8", errors="replace")


def _language(path: Path) -> str | None:
    name = path.name.removesuffix(".gz")
    for language, extensions in LANGUAGE_EXTENSIONS.items():
        if name.endswith(extensions):
            return language
    return None


def _extra_code_paths() -> dict[str, list[Path]]:
    """Return more code than the SWIG examples hold, for the languages Debian ships it in."""
    return {
        "rust": sorted(CARGO_REGISTRY.glob("*/src/**/*.rs"))[:MAX_FILES_PER_EXTRA_SOURCE],
        "perl": sorted(PERL_POD.glob("*/[A-Z]*/*.pm"))[:MAX_FILES_PER_EXTRA_SOURCE],
        "c": sorted(INCLUDE.glob("*.h"))[:MAX_FILES_PER_EXTRA_SOURCE],
    }


def code_documents() -> dict[str, list[dict[str, str]]]:
    """Return the code files of every language, SWIG's examples first."""
    documents: dict[str, list[dict[str, str]]] = {language: [] for language in LANGUAGE_EXTENSIONS}
    for path in sorted(SWIG_EXAMPLES.rglob("*")):
        language = _language(path)
        if language is not None and path.is_file():
            source = f"swig/{path.relative_to(SWIG_EXAMPLES)}"
            documents[language].append({"text": _read_code(path), "source": source})
    for language, paths in _extra_code_paths().items():
        for path in paths:
            documents[language].append({"text": _read_code(path), "source": str(path.name)})
    return documents


def main(output_dir: Path) -> None:
    prose = output_dir / "prose"
    _write_jsonl(prose / "gcide.jsonl", dictionary_documents("gcide", clean_gcide))
    _write_jsonl(prose / "wordnet.jsonl", dictionary_documents("wn", clean_wordnet))
    _write_jsonl(
        prose / "computing.jsonl",
        [
            *dictionary_documents("foldoc", clean_encyclopedia),
            *dictionary_documents("jargon", clean_encyclopedia),
        ],
    )
    _write_jsonl(prose / "fortunes.jsonl", fortune_documents())
    _write_jsonl(prose / "kjv.jsonl", bible_documents())
    _write_jsonl(prose / "perl-docs.jsonl", perl_documents())
    _write_jsonl(prose / "manpages.jsonl", man_documents())
    for language, records in code_documents().items():
        _write_jsonl(output_dir / "code" / f"{language}.jsonl", records)
    # The corpora are built on each machine, so git ignores them.
    (output_dir / ".gitignore").write_text("*\n", encoding="utf-8")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) != 2:
        sys.exit("usage: python extract_corpora.py OUTPUT_DIR")
    main(Path(sys.argv[1]))

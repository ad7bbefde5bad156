"""Cleaners that strip formatting tells from reference documents.

A classifier trained on raw documents learns that legal text starts with a
licence header and email starts with ``From:``. Samples of a model rarely
carry those tells, so the cleaners remove them and leave the domain's prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser

__all__ = ["CLEANERS", "clean_text"]

_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:[ \t]")
_LICENCE_WORDS = re.compile(
    r"copyright|licen[cs]e|spdx-license-identifier|permission is hereby granted|"
    r"all rights reserved|warranty",
    re.IGNORECASE,
)
_SPDX_LINE = re.compile(r"^.*SPDX-License-Identifier:.*\n?", re.MULTILINE)
_BLOCK_COMMENT = re.compile(r"\A\s*/\*.*?\*/[ \t]*\n?", re.DOTALL)
_LINE_COMMENTS = re.compile(r"\A(?:[ \t]*(?:#|//|--|;|%)[^\n]*\n)+")
_DOCSTRING = re.compile(r'\A\s*(?:"""|\'\'\').*?(?:"""|\'\'\')[ \t]*\n?', re.DOTALL)
_LATEX_COMMENT = re.compile(r"(?<!\\)%.*$", re.MULTILINE)
_BEGIN_DOCUMENT = re.compile(r"\\begin\{document\}")
_END_DOCUMENT = re.compile(r"\\end\{document\}")


def strip_email_headers(text: str) -> str:
    """Remove a leading RFC 822 header block: header lines, folded lines and the blank line."""
    lines = text.splitlines(keepends=True)
    end = 0
    while end < len(lines):
        line = lines[end]
        if _HEADER_LINE.match(line) or (end > 0 and line[:1] in (" ", "\t") and line.strip()):
            end += 1
        elif line.startswith("From ") and end == 0:
            end += 1  # the mbox separator line
        else:
            break
    if end == 0 or (end < len(lines) and lines[end].strip()):
        return text  # no header block, or one not ended by a blank line
    return "".join(lines[end:]).lstrip("\n")


def strip_licence_headers(text: str) -> str:
    """Remove a leading comment or docstring that states a licence, and SPDX tag lines."""
    for pattern in (_BLOCK_COMMENT, _LINE_COMMENTS, _DOCSTRING):
        match = pattern.match(text)
        if match and _LICENCE_WORDS.search(match.group(0)):
            text = text[match.end() :]
            break
    return _SPDX_LINE.sub("", text).lstrip("\n")


def strip_latex_preamble(text: str) -> str:
    """Keep the body of the document environment and drop LaTeX comments."""
    begin = _BEGIN_DOCUMENT.search(text)
    if begin:
        text = text[begin.end() :]
    end = _END_DOCUMENT.search(text)
    if end:
        text = text[: end.start()]
    return _LATEX_COMMENT.sub("", text).strip("\n")


class _TextExtractor(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "head", "noscript"})
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "pre", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Return the text of an HTML document without tags, scripts and styles."""
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


CLEANERS: dict[str, Callable[[str], str]] = {
    "email-headers": strip_email_headers,
    "licence-headers": strip_licence_headers,
    "latex-preamble": strip_latex_preamble,
    "html": strip_html,
}


def clean_text(text: str, cleaners: Iterable[str]) -> str:
    """Apply the named cleaners to ``text`` in order."""
    for name in cleaners:
        text = CLEANERS[name](text)
    return text

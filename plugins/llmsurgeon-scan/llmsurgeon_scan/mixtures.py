"""The known mixtures of a scan and the file-safe names of their runs."""

from __future__ import annotations

import difflib
import hashlib
import json
import re

import numpy as np

from llmsurgeon_core import ConfigError, Taxonomy

from .config import DirichletDraw, ScanConfig

__all__ = ["draw_mixtures", "mixture_run_name", "safe_name", "scan_mixtures"]

# Characters kept as they are in a run name. Every other character of a
# domain id, "_" included, is written as its code point in hex between two
# "_", so distinct ids give distinct names ("c++" becomes "c_2b__2b_").
_SAFE_CHARACTER = re.compile(r"[A-Za-z0-9-]")
# Domains named in a run name, largest share first; the digest covers the rest.
NAMED_DOMAINS = 3
# Hex digits of the mixture's digest in a run name.
DIGEST_LENGTH = 8


def safe_name(text: str) -> str:
    """Return ``text`` with every character outside ``[A-Za-z0-9-]`` spelled as ``_<hex>_``."""
    return "".join(c if _SAFE_CHARACTER.match(c) else f"_{ord(c):x}_" for c in text)


def mixture_run_name(index: int, mixture: dict[str, float]) -> str:
    """Return a file-safe run name for mixture number ``index``.

    The name starts with the index, lists the largest shares in percent, and
    ends with a digest of the whole mixture, so two mixtures never share a
    name, for example ``m03-python46-legal21-speech18-1f2e3d4c``.
    """
    largest = sorted(mixture.items(), key=lambda item: (-item[1], item[0]))[:NAMED_DOMAINS]
    parts = [f"{safe_name(d)}{round(100 * share)}" for d, share in largest if share > 0]
    encoded = json.dumps(mixture, sort_keys=True).encode()
    digest = hashlib.sha256(encoded).hexdigest()[:DIGEST_LENGTH]
    return "-".join([f"m{index:02d}", *parts, digest])


def draw_mixtures(draw: DirichletDraw, domain_ids: list[str]) -> list[dict[str, float]]:
    """Draw ``draw.count`` mixtures from a symmetric Dirichlet, rounded to ``draw.decimals``.

    A draw that rounds to all zeros (possible only for tiny ``alpha``) is drawn again.
    """
    generator = np.random.default_rng(draw.seed)
    mixtures: list[dict[str, float]] = []
    while len(mixtures) < draw.count:
        shares = np.round(generator.dirichlet([draw.alpha] * len(domain_ids)), draw.decimals)
        if shares.sum() <= 0:
            continue
        shares = shares / shares.sum()
        mixtures.append(dict(zip(domain_ids, shares.tolist(), strict=True)))
    return mixtures


def _full_mixture(index: int, given: dict[str, float], taxonomy: Taxonomy) -> dict[str, float]:
    known = taxonomy.domain_ids
    for domain_id in given:
        if domain_id not in known:
            close = difflib.get_close_matches(domain_id, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(
                f"config key 'mixtures.{index}' names domain {domain_id!r}, which taxonomy "
                f"{taxonomy.name!r} lacks{hint} Known domains: {', '.join(known)}."
            )
    total = sum(given.values())
    return {domain_id: given.get(domain_id, 0.0) / total for domain_id in known}


def scan_mixtures(config: ScanConfig, taxonomy: Taxonomy) -> list[dict[str, float]]:
    """Return the given mixtures, then the drawn ones, each over every leaf domain.

    Raises:
        ConfigError: if a mixture names an unknown domain, or there is no mixture.
    """
    mixtures = [_full_mixture(i, m, taxonomy) for i, m in enumerate(config.mixtures)]
    if config.draw is not None:
        mixtures.extend(draw_mixtures(config.draw, taxonomy.domain_ids))
    if not mixtures:
        raise ConfigError(
            "the scan config has no mixture; set 'mixtures' to a list of shares by domain, "
            "or 'draw' to draw them, for example draw: {count: 5, seed: 0}"
        )
    return mixtures

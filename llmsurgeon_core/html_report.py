"""``report.html``: one self-contained page that lets an auditor check a run.

The page holds the mixture chart, the confusion heatmap, every diagnostic,
the sampling protocol and a sample explorer that shows, for each explored
sample, its predicted domain probabilities and its nearest reference texts
in the classifier's representation. It links no script, stylesheet, font or
image from elsewhere, so it opens offline. Sample texts are untrusted model
output, so every value goes through Jinja2 with autoescaping on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .corpus import build_reference_corpus
from .errors import TaxonomyError
from .storage import atomic_write_json

if TYPE_CHECKING:
    import jinja2

    from .calibration import Calibration
    from .config import ReportConfig
    from .taxonomy import Taxonomy

__all__ = [
    "EXPLORER_FILE",
    "Explorer",
    "ExplorerSample",
    "Neighbour",
    "ReportDetails",
    "build_explorer",
    "classifier_context",
    "explore_samples",
    "nearest_references",
    "render_html",
    "select_samples",
]

logger = logging.getLogger(__name__)

EXPLORER_FILE = "explorer.json"
EXPLORER_FORMAT = 1

# Characters of a sample and of a reference text shown in the explorer. Longer
# texts are cut and marked, which keeps the page to an estimated 2 MB or less for 500
# samples with 3 neighbours each.
SAMPLE_TEXT_LIMIT = 1500
REFERENCE_TEXT_LIMIT = 600

# Rows scored against the reference texts at a time, which bounds the dense
# similarity block at this many rows times the number of reference texts.
SIMILARITY_BATCH = 64
EMBED_BATCH = 256

# Categorical colours for domains (the first ten are Tableau 10), repeated
# for taxonomies with more domains.
DOMAIN_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#8c564b",
)

# Figures that the classifier diagnostics may leave in the run directory or
# its calibration directory, embedded as data URIs when present.
CLASSIFIER_FIGURES = {
    "reliability.png": "Reliability of the predicted probabilities",
    "confusion.png": "Confusion of the classifier",
}

# Diagnostics keys that the page renders in sections of their own; every
# other key is listed under "other diagnostics".
_RENDERED_DIAGNOSTICS = {
    "condition_number",
    "smallest_singular_value",
    "residual_norm",
    "reference_accuracy",
    "probabilistic_naive",
    "confused_pairs",
    "merge_groups",
    "solver",
    "cramer_rao_std",
    "bootstrap_std",
    "wide_intervals",
    "label_shift",
    "too_few_samples",
    "merged",
    "generation",
    "decoding",
    "classifier",
}


# The sample explorer


@dataclass
class Neighbour:
    """A reference text near a sample in the classifier's representation."""

    domain: str
    similarity: float
    text: str


@dataclass
class ExplorerSample:
    """One sample as the explorer shows it; ``probs`` follow the taxonomy's domain order."""

    id: int
    text: str
    probs: list[float]
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass
class Explorer:
    """The explored samples of a run and, when neighbours are missing, the reason."""

    samples: list[ExplorerSample]
    n_samples: int
    neighbours_note: str | None = None

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Explorer:
        samples = [
            ExplorerSample(
                id=s["id"],
                text=s["text"],
                probs=s["probs"],
                neighbours=[Neighbour(**n) for n in s["neighbours"]],
            )
            for s in value["samples"]
        ]
        return cls(samples, value["n_samples"], value.get("neighbours_note"))


@dataclass
class ReportDetails:
    """Inputs of ``report.html`` beyond ``result.json``: the confusion matrix and the explorer."""

    confusion: np.ndarray | None = None
    explorer: Explorer | None = None


def select_samples(predicted: np.ndarray, limit: int) -> np.ndarray:
    """Return the sorted indices of at most ``limit`` samples, balanced by predicted domain.

    Every predicted domain gets an equal share of ``limit`` (a domain with
    fewer samples gives the rest to the others), so a filter by a rare domain
    still finds samples. Within a domain the chosen samples are evenly spaced
    in run order, which spreads them over a file-ordered source too.
    """
    predicted = np.asarray(predicted)
    if len(predicted) <= limit:
        return np.arange(len(predicted))
    groups = sorted((np.flatnonzero(predicted == k) for k in np.unique(predicted)), key=len)
    chosen = []
    remaining = limit
    for position, group in enumerate(groups):
        quota = min(len(group), remaining // (len(groups) - position))
        chosen.append(group[(np.arange(quota) * len(group)) // max(quota, 1)])
        remaining -= quota
    return np.sort(np.concatenate(chosen))


def _embed(classifier: Any, texts: list[str], desc: str) -> Any:
    from scipy import sparse
    from sklearn.preprocessing import normalize

    batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
    rows = [classifier.embed(b) for b in tqdm(batches, desc=desc, unit="batch", leave=False)]
    if any(sparse.issparse(r) for r in rows):
        stacked = sparse.vstack([sparse.csr_matrix(r) for r in rows]).tocsr()
    else:
        stacked = np.vstack([np.asarray(r, dtype=float) for r in rows])
    return normalize(stacked)


def nearest_references(
    classifier: Any, sample_texts: list[str], reference_texts: list[str], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``(n, k)`` indices and cosine similarities of each sample's nearest references.

    Both sides go through ``classifier.embed``; rows are sorted from the most
    similar reference text down.
    """
    k = min(k, len(reference_texts))
    if k == 0 or not sample_texts:
        return np.zeros((len(sample_texts), 0), int), np.zeros((len(sample_texts), 0))
    references = _embed(classifier, reference_texts, "embed reference")
    samples = _embed(classifier, sample_texts, "embed samples")
    indices = np.empty((len(sample_texts), k), dtype=int)
    similarities = np.empty((len(sample_texts), k))
    for start in range(0, len(sample_texts), SIMILARITY_BATCH):
        block = samples[start : start + SIMILARITY_BATCH] @ references.T
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        rows = slice(start, start + len(block))
        indices[rows] = np.take_along_axis(top, order, axis=1)
        similarities[rows] = np.take_along_axis(top_scores, order, axis=1)
    return indices, similarities


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " […]"


def build_explorer(
    calibration: Calibration,
    records: list[dict[str, Any]],
    probs: np.ndarray,
    reference: tuple[list[str], np.ndarray] | None,
    limits: ReportConfig,
    neighbours_note: str | None = None,
) -> Explorer:
    """Choose the explored samples and find their nearest reference texts.

    Args:
        reference: the calibration's reference texts and their domain
            indices, or None to leave neighbours out, with the reason in
            ``neighbours_note``.
    """
    chosen = select_samples(probs.argmax(axis=1), limits.explorer_samples)
    texts = [records[i]["text"] for i in chosen]
    samples = [
        ExplorerSample(int(records[i]["id"]), _cut(records[i]["text"], SAMPLE_TEXT_LIMIT), p)
        for i, p in zip(chosen, probs[chosen].round(4).tolist())
    ]
    if reference is not None and limits.neighbours > 0:
        reference_texts, labels = reference
        indices, similarities = nearest_references(
            calibration.classifier, texts, reference_texts, limits.neighbours
        )
        for sample, row, scores in zip(samples, indices, similarities):
            sample.neighbours = [
                Neighbour(
                    calibration.domains[labels[j]],
                    round(float(s), 4),
                    _cut(reference_texts[j], REFERENCE_TEXT_LIMIT),
                )
                for j, s in zip(row, scores)
            ]
    return Explorer(samples, len(records), neighbours_note)


def _rebuild_reference(
    taxonomy: Taxonomy, calibration: Calibration
) -> tuple[tuple[list[str], np.ndarray] | None, str | None]:
    """Cut the calibration's reference corpus again, or return why that is impossible.

    The corpus is a deterministic function of the taxonomy and the reference
    settings that the calibration records, and its digest must match the
    stored one, so sources that changed since calibrating are detected.
    """
    settings = calibration.metadata.get("reference") or {}
    needed = {"max_per_domain", "chunk_words", "seed", "max_chunks_per_document"}
    if not needed <= set(settings) or "corpus_digest" not in calibration.metadata:
        return None, "the calibration does not record its reference corpus settings"
    try:
        corpus = build_reference_corpus(
            taxonomy,
            max_per_domain=settings["max_per_domain"],
            chunk_words=settings["chunk_words"],
            seed=settings["seed"],
            max_chunks_per_document=settings["max_chunks_per_document"],
        )
    except (TaxonomyError, OSError) as error:
        return None, f"the reference corpus could not be read again ({error})"
    if corpus.digest() != calibration.metadata["corpus_digest"]:
        return None, (
            "the reference sources changed since calibrating, so the texts behind the "
            "calibration cannot be shown; calibrate again to see them"
        )
    return (corpus.texts, corpus.labels), None


def _explorer_key(
    calibration: Calibration, records: list[dict[str, Any]], limits: ReportConfig
) -> str:
    hasher = hashlib.sha256()
    header = [
        EXPLORER_FORMAT,
        calibration.metadata.get("key"),
        calibration.metadata.get("corpus_digest"),
        limits.model_dump(mode="json"),
    ]
    hasher.update(json.dumps(header, sort_keys=True, default=str).encode())
    for record in records:
        hasher.update(f"{record['id']}\0{len(record['text'])}\0".encode())
        hasher.update(record["text"].encode("utf-8", "surrogatepass"))
    return hasher.hexdigest()


def explore_samples(
    run_dir: Path,
    calibration: Calibration,
    taxonomy: Taxonomy,
    records: list[dict[str, Any]],
    probs: np.ndarray,
    limits: ReportConfig,
) -> Explorer | None:
    """Return the run's sample explorer, cached in ``explorer.json`` in ``run_dir``.

    Finding neighbours cuts the reference corpus again and embeds it. For
    the demo taxonomy's 2,500 reference chunks and 500 samples with ``tfidf``
    that took about 11 s on 2 shared CPU cores, against 15 s for the rest of
    ``llmsurgeon estimate``, so a rerun over the same samples and
    calibration reads the cached explorer.
    ``None`` when ``limits.explorer_samples`` is 0.
    """
    if limits.explorer_samples == 0:
        return None
    path = Path(run_dir) / EXPLORER_FILE
    key = _explorer_key(calibration, records, limits)
    if path.exists():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                return Explorer.from_json(cached["explorer"])
        except (ValueError, KeyError, TypeError) as error:
            # The file is only a cache, so a damaged one is computed again.
            logger.warning("recomputing the damaged explorer cache %s: %s", path, error)
    reference, note = None, None
    if limits.neighbours > 0:
        reference, note = _rebuild_reference(taxonomy, calibration)
        if note:
            logger.warning("the sample explorer shows no reference texts: %s", note)
    explorer = build_explorer(calibration, records, probs, reference, limits, note)
    if note is None:
        # An explorer without neighbours is not cached, so a rerun after the
        # sources are restored finds them.
        atomic_write_json(path, {"key": key, "explorer": asdict(explorer)})
    return explorer


# Rendering


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("llmsurgeon_core", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["percent"] = format_percent
    environment.filters["number"] = format_number
    return environment


def render_template(name: str, **context: Any) -> str:
    """Render one of the package's HTML templates, autoescaping every value."""
    return _environment().get_template(name).render(**context)


def format_percent(value: float | None, digits: int = 1) -> str:
    """Format a share as a percentage without the sign; empty for ``None``."""
    return "" if value is None else f"{100 * value:.{digits}f}"


def format_number(value: Any) -> str:
    """Format a diagnostic value compactly: 4 significant digits for floats."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "null"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def domain_colours(domains: list[str]) -> dict[str, str]:
    return {d: DOMAIN_COLOURS[i % len(DOMAIN_COLOURS)] for i, d in enumerate(domains)}


# Axis ranges of the mixture chart and their tick steps, in shares.
_AXIS_STEPS = (
    (0.05, 0.01),
    (0.1, 0.02),
    (0.2, 0.05),
    (0.3, 0.05),
    (0.4, 0.1),
    (0.5, 0.1),
    (0.6, 0.1),
    (0.8, 0.2),
    (1.0, 0.2),
)


def _axis_range(value: float) -> tuple[float, float]:
    """Return the first axis maximum in :data:`_AXIS_STEPS` that covers ``value``, and its step."""
    for maximum, step in _AXIS_STEPS:
        if value <= maximum + 1e-12:
            return maximum, step
    return _AXIS_STEPS[-1]


def mixture_chart(result: dict[str, Any]) -> dict[str, Any]:
    """Lay out the mixture chart: one row per domain, positions in SVG pixels.

    The estimate is a bar with its interval as a whisker. The naive baseline,
    the known mixture and the generated mixture are markers on the same row.
    """
    domains = result["domains"]
    interval = result["interval"] or {}
    series = {"naive": result["naive"]}
    if result["truth"]:
        series["known"] = result["truth"]
    generation = result["diagnostics"].get("generation")
    if generation:
        series["generated"] = generation["mixture"]
    values = [result["estimate"][d] for d in domains]
    values += [hi for _, hi in interval.values()]
    values += [v for s in series.values() for v in s.values()]
    maximum, step = _axis_range(max(values, default=0.0) * 1.02)
    left, width, row_height, top = 150, 560, 30, 34
    scale = width / maximum

    def x(share: float) -> float:
        return round(left + scale * min(max(share, 0.0), maximum), 1)

    rows = []
    for index, domain in enumerate(domains):
        middle = top + row_height * index + row_height / 2
        bounds = interval.get(domain)
        rows.append(
            {
                "domain": domain,
                "y": middle,
                "bar_end": x(result["estimate"][domain]),
                "estimate": result["estimate"][domain],
                "whisker": [x(bounds[0]), x(bounds[1])] if bounds else None,
                "markers": {name: x(s[domain]) for name, s in series.items() if domain in s},
            }
        )
    ticks = [
        {"x": x(share), "label": f"{100 * share:g}%"}
        for share in np.arange(0, maximum + step / 2, step)
    ]
    return {
        "rows": rows,
        "ticks": ticks,
        "left": left,
        "right": left + width,
        "top": top,
        "bottom": top + row_height * len(domains),
        "height": top + row_height * len(domains) + 30,
        "width": left + width + 70,
        "series": list(series),
        "has_interval": bool(interval),
    }


def confusion_heatmap(domains: list[str], confusion: np.ndarray | None) -> list[dict[str, Any]]:
    """Return the heatmap's rows: per true domain, each predicted share with its cell shade."""
    if confusion is None:
        return []
    return [
        {
            "domain": domain,
            "cells": [
                {"value": float(v), "alpha": round(float(v) ** 0.7, 3), "diagonal": i == j}
                for j, v in enumerate(row)
            ],
        }
        for i, (domain, row) in enumerate(zip(domains, np.asarray(confusion)))
    ]


def report_warnings(result: dict[str, Any]) -> list[str]:
    """List what makes the estimate less trustworthy, as report.md warns of it."""
    diagnostics = result["diagnostics"]
    warnings = []
    if diagnostics.get("too_few_samples"):
        warnings.append(diagnostics["too_few_samples"])

    solver_info = diagnostics.get("solver") or {}
    if solver_info.get("converged") is False:
        warnings.append(
            f"The solver stopped after {solver_info.get('iterations')} iterations without "
            "converging; raise solver.options.max_iter."
        )

    shifted = (diagnostics.get("label_shift") or {}).get("shifted_domains") or []
    if shifted:
        warnings.append(
            f"Label shift: the classifier scores the samples of {', '.join(shifted)} "
            "differently from their reference texts, so those shares can be biased by more "
            "than the intervals show."
        )

    decoding = diagnostics.get("decoding") or {}
    if decoding.get("truncated"):
        warnings.append(
            "The samples were drawn with truncated decoding ("
            + "; ".join(decoding.get("reasons", []))
            + "), which shifts the sampled mixture towards the model's most likely domains."
        )

    bound = diagnostics.get("cramer_rao_std") or {}
    spread = diagnostics.get("bootstrap_std") or {}
    below = [d for d in bound if d in spread and spread[d] < bound[d]]
    if below:
        warnings.append(
            f"The bootstrap spread of {', '.join(below)} is below the Cramér–Rao value, so "
            "the classifier is likely less sure of the samples than of reference text and "
            "the estimate carries a bias that the intervals do not include."
        )
    return warnings


def per_domain_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row of per-domain diagnostics per domain, in taxonomy order."""
    diagnostics = result["diagnostics"]
    tests = {t["domain"]: t for t in (diagnostics.get("label_shift") or {}).get("tests", [])}
    rows = []
    for domain in result["domains"]:
        rows.append(
            {
                "domain": domain,
                "probabilistic_naive": (diagnostics.get("probabilistic_naive") or {}).get(domain),
                "cramer_rao_std": (diagnostics.get("cramer_rao_std") or {}).get(domain),
                "bootstrap_std": (diagnostics.get("bootstrap_std") or {}).get(domain),
                "label_shift": tests.get(domain),
            }
        )
    return rows


def _read_json(path: Path) -> Any:
    """Read a JSON file of the run directory for display; ``None`` if absent or damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("report.html leaves out %s, which cannot be read: %s", path, error)
        return None


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _classifier_figures(run_dir: Path) -> list[dict[str, str]]:
    figures = []
    for name, caption in CLASSIFIER_FIGURES.items():
        for folder in (run_dir, run_dir / "calibration"):
            if (folder / name).is_file():
                figures.append({"src": png_data_uri((folder / name).read_bytes()), "alt": caption})
                break
    return figures


def classifier_context(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Split ``diagnostics.classifier`` into headline scores, a per-domain table and the rest.

    ``per_domain`` may map each domain to its scores or list them as mappings
    with a ``domain`` key.
    """
    if not metrics:
        return None
    headline = ("accuracy", "macro_f1", "ece")
    scores = [(key, metrics[key]) for key in headline if key in metrics]
    per_domain = metrics.get("per_domain") or {}
    if isinstance(per_domain, list):
        per_domain = {row["domain"]: row for row in per_domain if isinstance(row, dict)}
    rows = [(domain, values) for domain, values in per_domain.items() if isinstance(values, dict)]
    columns = list(dict.fromkeys(k for _, values in rows for k in values if k != "domain"))
    extra = {k: v for k, v in metrics.items() if k not in (*headline, "per_domain")}
    return {"scores": scores, "rows": rows, "columns": columns, "extra": extra}


def _explorer_context(explorer: Explorer | None, domains: list[str]) -> dict[str, Any] | None:
    if explorer is None:
        return None
    samples = []
    for sample in explorer.samples:
        best = int(np.argmax(sample.probs))
        ranked = sorted(range(len(domains)), key=lambda k: -sample.probs[k])
        nearest = sample.neighbours[0].domain if sample.neighbours else None
        samples.append(
            {
                "sample": sample,
                "predicted": domains[best],
                "confidence": sample.probs[best],
                "ranked": [(domains[k], sample.probs[k]) for k in ranked[:3]],
                "disagrees": nearest is not None and nearest != domains[best],
            }
        )
    counts = {d: sum(1 for s in samples if s["predicted"] == d) for d in domains}
    return {"explorer": explorer, "samples": samples, "counts": counts}


def render_html(result: dict[str, Any], run_dir: Path, details: ReportDetails | None = None) -> str:
    """Render ``report.html`` from the result, the run directory's files and ``details``."""
    details = details or ReportDetails()
    run_dir = Path(run_dir)
    domains = result["domains"]
    diagnostics = result["diagnostics"]
    other = {k: v for k, v in diagnostics.items() if k not in _RENDERED_DIAGNOSTICS}
    return render_template(
        "report.html.j2",
        result=result,
        domains=domains,
        colours=domain_colours(domains),
        level=round(100 * result["interval_level"]),
        chart=mixture_chart(result),
        heatmap=confusion_heatmap(domains, details.confusion),
        warnings=report_warnings(result),
        per_domain=per_domain_rows(result),
        diagnostics=diagnostics,
        other_diagnostics=other,
        classifier=classifier_context(diagnostics.get("classifier")),
        classifier_figures=_classifier_figures(run_dir),
        sampling=_read_json(run_dir / "sampling.json"),
        manifest=_read_json(run_dir / "manifest.json"),
        explorer=_explorer_context(details.explorer, domains),
    )

"""``llmsurgeon evaluate``: metrics of a finished result against a known mixture.

Both the result and the known mixture can be summed to a coarser level of the
taxonomy's tree, and merged by a merge map, before they are compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import InvalidInputError, TaxonomyError
from .metrics import compare_mixtures
from .taxonomy import Taxonomy, apply_merge, parse_merge_spec, resolve_taxonomy

__all__ = ["evaluate_result"]


def _read_truth_file(path: Path) -> dict[str, float]:
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InvalidInputError(f"cannot read truth file {str(path)!r}: {error}") from None
    if isinstance(mapping, dict):
        mapping = mapping.get("mixture", mapping)
    if not isinstance(mapping, dict):
        raise InvalidInputError(f"truth file {str(path)!r} must map domain ids to shares")
    try:
        return {str(k): float(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise InvalidInputError(f"truth file {str(path)!r}: every share must be a number") from None


def _normalized(mapping: Mapping[str, float], label: str) -> dict[str, float]:
    values = np.array(list(mapping.values()), dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInputError(
            f"known mixture {label!r} must have finite, non-negative shares; got {values.tolist()}"
        )
    if values.sum() <= 0:
        raise InvalidInputError(f"known mixture {label!r} must have at least one positive share")
    return {k: float(v) / float(values.sum()) for k, v in mapping.items()}


def _taxonomy_or_none(name: str) -> Taxonomy | None:
    try:
        return resolve_taxonomy(name)
    except TaxonomyError:
        return None


def _truth_mapping(
    truth: str, taxonomy: Taxonomy | None, taxonomy_name: str, domains: list[str]
) -> tuple[dict[str, float], str | int | None]:
    """Return the known mixture keyed by domain id, and the finest level it is defined at."""
    path = Path(truth)
    if path.is_file():
        mapping = _read_truth_file(path)
        allowed = taxonomy.all_ids if taxonomy is not None else domains
        unknown = sorted(set(mapping) - set(allowed))
        if unknown:
            raise InvalidInputError(
                f"truth file {truth!r} names unknown domains {unknown}; allowed: {allowed}"
            )
        inner = [taxonomy.depth(d) for d in mapping if taxonomy and d not in taxonomy.domain_ids]
        return mapping, (min(inner) if inner else None)
    if taxonomy is None:
        raise InvalidInputError(
            f"taxonomy {taxonomy_name!r} of the result cannot be found, so recipe {truth!r} "
            "cannot be read; pass --taxonomy with its file, or the known mixture as a file"
        )
    return dict(taxonomy.recipe(truth).mixture), taxonomy.recipe_level(truth)


def _read_result(result_path: Path) -> dict[str, Any]:
    try:
        result = json.loads(Path(result_path).read_text(encoding="utf-8"))
        domains = result["domains"]
        result["estimate"] = {d: float(result["estimate"][d]) for d in domains}
        result["naive"] = {d: float(result["naive"][d]) for d in domains}
    except FileNotFoundError:
        raise InvalidInputError(f"result file {str(result_path)!r} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(
            f"{str(result_path)!r} is not a llmsurgeon result.json: {error}"
        ) from None
    return result


def evaluate_result(
    result_path: Path,
    truth: str,
    level: str | int | None = None,
    merge: str | None = None,
    taxonomy_name: str | None = None,
) -> dict[str, Any]:
    """Return the metrics of the estimate and of the naive baseline in ``result_path``.

    Args:
        truth: a recipe of the result's taxonomy, or a YAML/JSON file that maps
            domain ids (of any level) to shares.
        level: a level name or depth of the taxonomy to sum everything to;
            by default the finest level at which ``truth`` is defined.
        merge: a merge map of the taxonomy, or a spec ``web=commoncrawl+c4``,
            applied after the sum to ``level``.
        taxonomy_name: a registered name or file path of the taxonomy, for a
            result whose taxonomy came from a file (result.json stores its name only).
    """
    result = _read_result(result_path)
    domains = result["domains"]
    if taxonomy_name is not None:
        result["taxonomy"] = taxonomy_name
    taxonomy = _taxonomy_or_none(result["taxonomy"])
    if taxonomy is not None and taxonomy.domain_ids != domains:
        raise InvalidInputError(
            f"taxonomy {result['taxonomy']!r} no longer has the result's domains; "
            "pass the known mixture as a file"
        )
    truth_mapping, truth_level = _truth_mapping(truth, taxonomy, result["taxonomy"], domains)
    if level is None:
        level = truth_level
    if taxonomy is None:
        if level is not None:
            raise InvalidInputError(
                f"taxonomy {result['taxonomy']!r} cannot be found, so --level cannot be used"
            )
        mixtures = {"estimate": result["estimate"], "naive": result["naive"]}
        truth_vector = {d: truth_mapping.get(d, 0.0) for d in domains}
    else:
        mixtures = {k: taxonomy.sum_to_level(result[k], level) for k in ("estimate", "naive")}
        truth_vector = taxonomy.sum_to_level(truth_mapping, level)
    if merge is not None:
        merge_map = (
            taxonomy.merge_map(merge)
            if taxonomy is not None and "=" not in merge
            else parse_merge_spec(merge)
        )
        mixtures = {k: apply_merge(v, merge_map) for k, v in mixtures.items()}
        truth_vector = apply_merge(truth_vector, merge_map)
    truth_vector = _normalized(truth_vector, truth)
    keys = list(truth_vector)
    target = np.array([truth_vector[k] for k in keys])
    return {
        "level": None
        if level is None or taxonomy is None
        else taxonomy.level_name(taxonomy.level_index(level)),
        "merge": merge,
        "domains": keys,
        "truth": truth_vector,
        "mixtures": mixtures,
        "estimate": compare_mixtures(np.array([mixtures["estimate"][k] for k in keys]), target),
        "naive": compare_mixtures(np.array([mixtures["naive"][k] for k in keys]), target),
    }

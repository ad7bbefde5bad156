"""``llmsurgeon evaluate``: metrics of a finished result against a known mixture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import InvalidInputError
from .metrics import compare_mixtures
from .taxonomy import resolve_taxonomy

__all__ = ["evaluate_result"]


def _load_truth(truth: str, taxonomy_name: str, domains: list[str]) -> np.ndarray:
    path = Path(truth)
    if path.is_file():
        try:
            mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise InvalidInputError(f"cannot read truth file {truth!r}: {error}") from None
        if not isinstance(mapping, dict):
            raise InvalidInputError(f"truth file {truth!r} must map domain ids to shares")
        mapping = mapping.get("mixture", mapping)
        unknown = sorted(set(mapping) - set(domains))
        if unknown:
            raise InvalidInputError(
                f"truth file {truth!r} names unknown domains {unknown}; allowed: {domains}"
            )
        vector = np.array([float(mapping.get(d, 0.0)) for d in domains])
    else:
        taxonomy = resolve_taxonomy(taxonomy_name)
        if taxonomy.domain_ids != domains:
            raise InvalidInputError(
                f"taxonomy {taxonomy_name!r} no longer has the result's domains; "
                "pass the known mixture as a file"
            )
        vector = np.array(taxonomy.recipe_vector(truth))
    if np.any(vector < 0) or vector.sum() <= 0:
        raise InvalidInputError(f"known mixture {truth!r} must have non-negative shares")
    return vector / vector.sum()


def evaluate_result(result_path: Path, truth: str) -> dict[str, Any]:
    """Return the metrics of the estimate and of the naive baseline in ``result_path``."""
    try:
        result = json.loads(Path(result_path).read_text(encoding="utf-8"))
        domains = result["domains"]
        estimate = np.array([result["estimate"][d] for d in domains])
        naive = np.array([result["naive"][d] for d in domains])
    except FileNotFoundError:
        raise InvalidInputError(f"result file {str(result_path)!r} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(
            f"{str(result_path)!r} is not a llmsurgeon result.json: {error}"
        ) from None
    vector = _load_truth(truth, result["taxonomy"], domains)
    return {
        "truth": dict(zip(domains, vector.tolist())),
        "estimate": compare_mixtures(estimate, vector),
        "naive": compare_mixtures(naive, vector),
    }

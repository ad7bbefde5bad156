"""Input checks and saved-model metadata shared by classifier plugins."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .components import ComponentOptions

if TYPE_CHECKING:
    import logging

__all__ = ["check_labels", "check_texts", "read_saved_metadata", "warn_on_changed_options"]


def check_texts(texts: Iterable[str]) -> list[str]:
    """Return ``texts`` as a list, raising ``TypeError`` for any item that is not a string."""
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is a {type(text).__name__}, expected str")
    return texts


def check_labels(labels: Any, n_texts: int, n_classes: int, classifier: str) -> np.ndarray:
    """Return ``labels`` as int64 after checking them against the texts and classes.

    Raises:
        ValueError: if there are no texts, the shape does not match them, or a
            label is not an integer in ``[0, n_classes)``.
    """
    labels = np.asarray(labels)
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    if labels.shape != (n_texts,):
        raise ValueError(
            f"labels must have shape ({n_texts},) to match the texts, got {labels.shape}"
        )
    if n_texts == 0:
        raise ValueError(f"cannot fit the {classifier} classifier on zero texts")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got values from {labels.min()} to {labels.max()}"
        )
    return labels.astype(np.int64)


def read_saved_metadata(path: Path, formats: Collection[int], distribution: str) -> dict[str, Any]:
    """Read a saved classifier's JSON metadata and check that its format is one of ``formats``.

    Raises:
        ValueError: if the file is not valid JSON or has another format.
    """
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") not in formats:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        ordered = sorted(formats)
        if len(ordered) == 1:
            readable = f"format {ordered[0]}"
        else:
            readable = "formats " + ", ".join(map(str, ordered[:-1])) + f" and {ordered[-1]}"
        raise ValueError(
            f"{path} has format {found!r}, but this version of {distribution} reads "
            f"{readable}; calibrate again"
        )
    return metadata


def warn_on_changed_options(
    saved: ComponentOptions,
    requested: ComponentOptions,
    classifier: str,
    logger: logging.Logger,
    ignored: Collection[str] = (),
) -> None:
    """Warn on ``logger`` about each option whose saved value differs from the requested one.

    Options in ``ignored`` only affect how the model runs (device, batch
    size), so a saved model may differ in them without a warning.
    """
    saved_values = saved.model_dump(mode="json")
    requested_values = requested.model_dump(mode="json")
    changed = sorted(
        name
        for name in saved_values
        if name not in ignored and saved_values[name] != requested_values.get(name)
    )
    if changed:
        logger.warning(
            "the saved %s classifier was fitted with other options than requested (%s); "
            "using the saved ones. Calibrate again to apply the requested options.",
            classifier,
            ", ".join(
                f"{name}: saved {saved_values[name]!r}, requested {requested_values.get(name)!r}"
                for name in changed
            ),
        )

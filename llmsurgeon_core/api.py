"""The Python API: run an audit or one of its stages from a notebook or a script.

Each function takes the config as a file path, a mapping or an
``AuditConfig``, and keyword overrides of its top-level keys, merged into the
config before validation:

```python
import llmsurgeon_core as ls

result = ls.audit("audit.yaml", run_dir="runs/try", sampler={"options": {"n_samples": 200}})
result["estimate"]
```

They run the same code as the command line and raise the same
``LlmsurgeonError`` subclasses (from ``llmsurgeon_core.errors``) where the
command line would exit with an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import ValidationError

from .config import AuditConfig, format_validation_error, load_config
from .errors import ConfigError

if TYPE_CHECKING:
    from .calibration import Calibration
    from .pipeline import Run
    from .registry import Registry

__all__ = ["ConfigLike", "audit", "calibrate", "estimate", "resolve_config"]

ConfigLike: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | AuditConfig | None
"""A config as the API takes it: a YAML or TOML path, a mapping, a validated
config, or ``None`` for the embedded demo config."""


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in; nested mappings merge key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(dict(current), value)
        else:
            merged[key] = value
    return merged


def resolve_config(config: ConfigLike = None, **overrides: Any) -> AuditConfig:
    """Validate ``config`` with ``overrides`` merged into its top-level keys.

    A path is read as ``llmsurgeon_core.config.load_config`` reads it, so a
    relative taxonomy path is found beside the config file. A mapping override
    merges into the mapping it replaces, so ``sampler={"options": {"seed": 1}}``
    keeps the sampler's name and other options.

    Raises:
        ConfigError: with one line that names the invalid key.
    """
    if isinstance(config, AuditConfig):
        raw = config.model_dump(mode="python", exclude_unset=True)
    elif isinstance(config, Mapping):
        raw = dict(config)
    elif config is None or isinstance(config, (str, os.PathLike)):
        raw = load_config(config).model_dump(mode="python", exclude_unset=True)
    else:
        raise ConfigError(
            f"invalid config {config!r} of type {type(config).__name__}; pass a file path, "
            "a mapping or an AuditConfig"
        )
    raw = _merge(raw, overrides)
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, AuditConfig)) from None


def _checked_run(
    config: ConfigLike, overrides: Mapping[str, Any], registry: Registry | None
) -> Run:
    from .pipeline import Run, check_run

    run = Run(resolve_config(config, **overrides), registry)
    check_run(run)
    return run


def audit(
    config: ConfigLike = None, *, registry: Registry | None = None, **overrides: Any
) -> dict[str, Any]:
    """Run every stage of an audit and return its result.

    Calibrates (or reuses the run directory's calibration), draws the samples
    that ``samples.jsonl`` still lacks, classifies them and solves for the
    mixture, as ``llmsurgeon audit`` does.

    Args:
        config: a config file path, a mapping, an ``AuditConfig``, or ``None``
            for the embedded demo.
        registry: the plugins to take components from; default: the
            installed ones.
        **overrides: top-level config keys merged into ``config``.

    Returns:
        The mapping written to ``result.json``: ``estimate``, ``interval``,
        ``naive``, ``diagnostics`` and the rest, each listing the domains in
        taxonomy order.
    """
    run = _checked_run(config, overrides, registry)
    with run.locked():
        return run.audit()


def calibrate(
    config: ConfigLike = None, *, registry: Registry | None = None, **overrides: Any
) -> Calibration:
    """Fit the classifier and its out-of-fold confusion matrix, or load the stored ones.

    Takes the same arguments as ``audit``.

    Returns:
        The calibration: ``confusion`` is the ``(K, K)`` soft confusion matrix,
        ``classifier`` the model fitted on every reference chunk and
        ``accuracy`` its out-of-fold accuracy.
    """
    run = _checked_run(config, overrides, registry)
    with run.locked():
        return run.calibrate()


def estimate(
    config: ConfigLike = None, *, registry: Registry | None = None, **overrides: Any
) -> dict[str, Any]:
    """Classify the run directory's samples and solve for the mixture.

    Takes the same arguments as ``audit`` and returns the same mapping.
    Calibrates first when the run has no calibration, but never samples.

    Raises:
        RunDirectoryError: if the run directory has no samples yet.
    """
    run = _checked_run(config, overrides, registry)
    run.check_samples_exist()
    with run.locked():
        return run.estimate()

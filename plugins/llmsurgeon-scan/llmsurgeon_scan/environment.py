"""The machine, library versions and seeds a scan ran with, for its Markdown record."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from .config import ScanConfig

__all__ = ["describe_environment", "render_environment"]

# Distributions whose versions a scan record lists, where they are installed.
LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "scikit-learn",
    "numpy",
    "scipy",
    "cvxpy",
    "llmsurgeon-core",
    "llmsurgeon-hf",
    "llmsurgeon-scan",
)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe_environment() -> dict[str, Any]:
    """Return the platform, processor, usable cores, thread settings and library versions."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": _usable_cores(),
        "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "versions": _versions(),
    }


def _seeds(config: ScanConfig) -> dict[str, int]:
    seeds = {
        "target": int(config.target.get("seed", 0)),
        "sampling": config.sampling.seed,
        "reference": config.reference.seed,
        "bootstrap": config.bootstrap.seed,
    }
    if config.draw is not None:
        seeds["dirichlet draw"] = config.draw.seed
    return seeds


def _describe_calibration(config: ScanConfig) -> str:
    settings = config.calibrate
    mapped = "" if settings.method == "none" else f", calibration map {settings.method}"
    if settings.mode == "reference":
        return f"C from out-of-fold predictions of reference text{mapped}"
    return (
        f"C from each target's continuations of {settings.prompts_per_domain} reference "
        f"prefixes of {settings.prefix_words} words per domain{mapped}"
    )


def render_environment(
    command: str, config: ScanConfig, environment: dict[str, Any], seconds: float, counts: dict
) -> str:
    """Return Markdown lines with the command, machine, versions, seeds, wall time and counts."""
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    threads = ", ".join(f"{k}={v}" for k, v in environment["threads"].items() if v is not None)
    seeds = ", ".join(f"{name} {seed}" for name, seed in _seeds(config).items())
    done = ", ".join(f"{name} {count}" for name, count in counts.items())
    return "\n".join(
        [
            f"- command: `{command}`",
            f"- machine: {environment['platform']}, {environment['processor']}, "
            f"{environment['cores']} usable cores" + (f" ({threads})" if threads else ""),
            f"- libraries: {versions}",
            f"- seeds: {seeds}",
            f"- calibration: {_describe_calibration(config)}",
            f"- wall time: {seconds / 60:.1f} minutes, for the work not read from the cache "
            f"({done})",
        ]
    )

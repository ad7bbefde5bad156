"""The scan config: pydantic models, file loading, ``--quick`` and ``--set`` overrides."""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmsurgeon_core import ConfigError
from llmsurgeon_core.config import (
    BootstrapConfig,
    CalibrateConfig,
    ComponentConfig,
    ReferenceConfig,
    apply_overrides,
    format_validation_error,
    parse_config_text,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DirichletDraw",
    "ScanConfig",
    "ScanSampling",
    "default_config_text",
    "load_scan_config",
]

# The packaged config that `llmsurgeon scan` runs when no CONFIG is given.
DEFAULT_CONFIG = "scan-coarse.yaml"

# TargetTraining fields that the scan sets itself for every mixture.
_SCAN_SET_TRAINING_FIELDS = ("taxonomy", "recipe", "mixture")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DirichletDraw(_Strict):
    """Mixtures drawn from a symmetric Dirichlet distribution over the leaf domains."""

    count: int = Field(5, ge=1, description="Number of mixtures to draw.")
    alpha: float = Field(
        1.0, gt=0, description="Concentration; below 1 favours sparse mixtures, above 1 even ones."
    )
    seed: int = Field(0, description="Seed of the draws.")
    decimals: int = Field(
        2,
        ge=1,
        le=6,
        description="Shares are rounded to this many decimals, so 2 gives whole percent and "
        "shares below 0.005 become 0.",
    )


class ScanSampling(_Strict):
    """Sampling options of every target; the hf sampler's other options keep their defaults."""

    n_samples: int = Field(500, ge=1, description="Number of texts drawn from each target.")
    max_new_tokens: int = Field(64, ge=1, description="Maximum number of tokens per text.")
    batch_size: int = Field(50, ge=1, description="Number of texts generated together.")
    seed: int = Field(0, description="Sampling seed of every target.")


class ScanConfig(_Strict):
    """A recipe-verifiable benchmark: targets trained at known mixtures, each audited."""

    taxonomy: str = Field(description="A registered taxonomy name or a taxonomy YAML path.")
    mixtures: list[dict[str, float]] = Field(
        default_factory=list,
        description="Known mixtures to train targets at, as shares by domain id "
        "(renormalized); absent domains get 0.",
    )
    draw: DirichletDraw | None = Field(
        None, description="Also draw this many mixtures from a Dirichlet distribution."
    )
    target: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of every target (the hf plugin's TargetTraining, without "
        "taxonomy, recipe and mixture): tokens, context, vocab_size, n_layer, n_embd, ...",
    )
    sampling: ScanSampling = Field(default_factory=ScanSampling)
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    classifiers: list[ComponentConfig] = Field(
        default_factory=lambda: [ComponentConfig(name="tfidf")],
        min_length=1,
        description="Classifiers to audit every target with; each is calibrated once.",
    )
    solvers: list[ComponentConfig] | None = Field(
        None,
        description="Solvers to audit every target with; null uses every installed solver "
        "with its default options.",
    )
    calibrate: CalibrateConfig = Field(
        default_factory=CalibrateConfig,
        description="How C is measured, as in an audit config. In generation mode every "
        "target gets its own calibration, from its continuations of reference prefixes.",
    )
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    quick: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides that --quick applies, as a nested mapping of config keys.",
    )
    scan_dir: Path = Field(
        Path("llmsurgeon-runs/scan"),
        description="Directory of the targets, samples, calibrations, audits and the tables.",
    )
    targets_dir: Path | None = Field(
        None,
        description="Directory of the trained targets and their samples (default: scan_dir). "
        "Scans that differ only in classifiers, solvers, calibration or bootstrap can share "
        "one, so the second trains and samples nothing.",
    )

    @field_validator("mixtures")
    @classmethod
    def _check_mixtures(cls, mixtures: list[dict[str, float]]) -> list[dict[str, float]]:
        for index, mixture in enumerate(mixtures):
            for domain_id, share in mixture.items():
                if not math.isfinite(share) or share < 0:
                    raise ValueError(
                        f"mixture {index} gives domain {domain_id!r} the share {share}; "
                        "shares must be finite and non-negative"
                    )
            if sum(mixture.values()) <= 0:
                raise ValueError(f"mixture {index} has no positive share; give a domain a share")
        return mixtures

    @field_validator("target")
    @classmethod
    def _check_target(cls, target: dict[str, Any]) -> dict[str, Any]:
        fixed = sorted(set(target) & set(_SCAN_SET_TRAINING_FIELDS))
        if fixed:
            raise ValueError(
                f"target sets {', '.join(fixed)}, which the scan sets for every mixture; "
                "remove them"
            )
        return target


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``changes`` merged in, nested mappings key by key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def default_config_text() -> str:
    """Return the YAML of the packaged default scan config."""
    configs = resources.files("llmsurgeon_scan").joinpath("configs")
    return configs.joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")


def _resolve_relative_paths(raw: dict[str, Any], config_dir: Path) -> None:
    """Read a relative taxonomy file path against the config file's folder, if it is there."""
    taxonomy = raw.get("taxonomy")
    if not isinstance(taxonomy, str) or not taxonomy.endswith((".yaml", ".yml")):
        return
    candidate = Path(taxonomy).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        beside = config_dir / candidate
        if beside.exists():
            raw["taxonomy"] = str(beside)


def load_scan_config(
    path: str | Path | None, *, quick: bool = False, overrides: list[str] = ()
) -> ScanConfig:
    """Load a scan config, apply ``quick`` then ``overrides``, and validate it.

    ``None`` loads the packaged default config (the coarse scan).

    Raises:
        ConfigError: with one line that names the offending key.
    """
    if path is None:
        raw = parse_config_text(default_config_text(), ".yaml", DEFAULT_CONFIG)
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"scan config file {str(path)!r} not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read scan config file {str(path)!r}: {error}") from None
        raw = parse_config_text(text, path.suffix.lower(), str(path))
        _resolve_relative_paths(raw, path.parent)
    if quick:
        changes = raw.get("quick") or {}
        if not isinstance(changes, dict):
            raise ConfigError("config key 'quick' must be a mapping of config keys to values")
        raw = _merge(raw, changes)
    raw = apply_overrides(raw, list(overrides), example="sampling.n_samples=500")
    try:
        return ScanConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, ScanConfig)) from None

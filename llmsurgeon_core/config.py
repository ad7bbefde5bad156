"""The audit config: pydantic models, file loading and ``--set`` overrides."""

from __future__ import annotations

import difflib
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "AuditConfig",
    "BootstrapConfig",
    "CalibrateConfig",
    "ComponentConfig",
    "ReferenceConfig",
    "ReportConfig",
    "apply_overrides",
    "demo_config_text",
    "format_validation_error",
    "load_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentConfig(_Strict):
    """A component chosen by its registered name, with its own options."""

    name: str = Field(description="Registered name of the component (see `llmsurgeon plugins`).")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options validated by the component's Options model."
    )


class ReferenceConfig(_Strict):
    """Settings for cutting the reference corpus from the taxonomy's sources."""

    max_per_domain: int = Field(2000, ge=2, description="Maximum reference chunks per domain.")
    chunk_words: int = Field(
        48, ge=4, description="Words per reference chunk; match the length of the samples."
    )
    max_chunks_per_document: int = Field(
        8, ge=1, description="Maximum chunks taken from one document, for variety."
    )
    folds: int = Field(
        5, ge=2, description="Cross-fitting folds for the out-of-fold confusion matrix."
    )
    seed: int = Field(0, description="Seed for document order, chunk choice and folds.")


class CalibrateConfig(_Strict):
    """Settings for measuring the confusion matrix and calibrating the classifier."""

    method: Literal["none", "ts", "bcts"] = Field(
        "none",
        description=(
            "Calibration map fitted on the out-of-fold predictions and applied to them and to "
            "every sample's probabilities: 'ts' (temperature scaling), 'bcts' (bias-corrected "
            "temperature scaling) or 'none'."
        ),
    )
    mode: Literal["reference", "generation"] = Field(
        "reference",
        description=(
            "'reference' builds C from out-of-fold predictions of reference chunks; "
            "'generation' builds it from the target's continuations of prefixes of reference "
            "chunks (prefix removed), each scored by the fold model that never saw its chunk."
        ),
    )
    prompts_per_domain: int = Field(
        100, ge=1, description="Reference chunks per domain whose prefixes prompt the target."
    )
    prefix_words: int = Field(
        8, ge=1, description="Words of each chunk's start given to the target as the prompt."
    )
    trust_pickle: bool = Field(
        False,
        description=(
            "Load a calibration whose classifier files are pickles; unpickling can run any "
            "code, so set it only for a calibration you trust."
        ),
    )


# Mean number of each domain's reference predictions that a bootstrap resample
# adds to the target samples: the half count of Jeffreys' prior.
PSEUDO_SAMPLES = 0.5


class BootstrapConfig(_Strict):
    """Percentile bootstrap over target samples and calibration predictions."""

    n_resamples: int = Field(200, ge=0, description="Bootstrap resamples; 0 turns intervals off.")
    level: float = Field(0.9, gt=0, lt=1, description="Coverage of the reported intervals.")
    seed: int = Field(0, description="Seed of the resampling.")
    pseudo_samples: float = Field(
        PSEUDO_SAMPLES,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description=(
            "Mean number of each domain's reference predictions added to the target samples "
            "of every resample (a Poisson count). They keep the interval of a domain with few "
            "or no samples from shrinking onto its estimate, and raise every share of a "
            "resample by pseudo_samples / n for n samples. 0 leaves them out."
        ),
    )


class ReportConfig(_Strict):
    """Limits of the sample explorer in ``report.html``."""

    explorer_samples: int = Field(
        500, ge=0, description="Maximum samples shown in the sample explorer; 0 leaves it out."
    )
    neighbours: int = Field(
        3, ge=0, description="Nearest reference texts shown beside each explored sample."
    )


class AuditConfig(_Strict):
    """Everything one audit needs; see `llmsurgeon config schema`."""

    taxonomy: str = Field(description="A registered taxonomy name or a taxonomy YAML path.")
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    sampler: ComponentConfig = Field(description="Sampler that draws texts from the target model.")
    classifier: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="tfidf"),
        description="Domain classifier.",
    )
    solver: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="nnls"),
        description="Solver for the mixture on the simplex.",
    )
    executor: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="local"),
        description="Where sampling and classification run: 'local' (this process) or an "
        "executor plugin such as 'ray'.",
    )
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    merge: list[list[str]] | Literal["suggested"] | None = Field(
        None,
        description=(
            "Also solve at a coarser level: a list of domain groups to merge, or 'suggested' "
            "for the groups of domains that the confusion matrix cannot separate. The coarse "
            "estimate and intervals are reported beside the full ones."
        ),
    )
    calibration: Path | None = Field(
        None,
        description="Reuse this calibration directory instead of calibrating in the run directory.",
    )
    truth: str | dict[str, float] | None = Field(
        None,
        description="Known mixture to evaluate against: a recipe of the taxonomy or a mapping.",
    )
    run_dir: Path = Field(Path("runs/audit"), description="Directory for every file of the run.")

    @field_validator("run_dir", mode="before")
    @classmethod
    def _check_run_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("run_dir must name a directory, for example runs/my-audit")
        return value


def _allowed_keys(model: type[BaseModel], location: tuple[Any, ...]) -> list[str] | None:
    """Return the field names of the model at ``location``, if it is a model."""
    current: Any = model
    for part in location:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            break
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def format_validation_error(
    error: ValidationError, model: type[BaseModel], prefix: str = ""
) -> str:
    """Render the first error of ``error`` as one line naming the key and what is allowed."""
    first = error.errors()[0]
    location = tuple(first["loc"])
    key = ".".join(str(part) for part in (*([prefix] if prefix else []), *location))
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, location[:-1]) or []
        close = difflib.get_close_matches(str(location[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown config key {key!r}; {hint}allowed keys here: {', '.join(allowed)}"
    if first["type"] == "missing":
        return f"missing config key {key!r}"
    value = first.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid config key {key!r}{shown}: {message}"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {str(path)!r}: {error}") from None
    return parse_config_text(text, path.suffix.lower(), str(path))


def parse_config_text(text: str, suffix: str, label: str) -> dict[str, Any]:
    """Parse YAML (``.yaml``, ``.yml``) or TOML (``.toml``) config text."""
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {label!r} must end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        detail = " ".join(str(error).split())
        raise ConfigError(
            f"config file {label!r} is not valid {suffix[1:].upper()}: {detail}"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {label!r} must hold a mapping at top level")
    return raw


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], example: str = "sampler.options.n_samples=500"
) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML scalars.

    ``example`` is the override that the error for a malformed one shows.
    """
    for override in overrides:
        key, separator, value_text = override.partition("=")
        if not separator or not key.strip():
            raise ConfigError(
                f"invalid override {override!r}; expected KEY=VALUE, for example {example}"
            )
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else ""
        except yaml.YAMLError:
            value = value_text
        parts = key.strip().split(".")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"invalid override {override!r}: {prefix!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw


def _resolve_taxonomy_path(raw: dict[str, Any], config_dir: Path) -> None:
    """Read a relative taxonomy file path against the config file's folder.

    Sources inside a taxonomy are relative to the taxonomy file, so a config
    that sits beside its taxonomy works from any working directory. A path
    that exists relative to the working directory is kept as it is.
    """
    taxonomy = raw.get("taxonomy")
    if not isinstance(taxonomy, str) or not taxonomy.endswith((".yaml", ".yml")):
        return
    candidate = Path(taxonomy).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return
    beside = config_dir / candidate
    if beside.exists():
        raw["taxonomy"] = str(beside)


def demo_config_text() -> str:
    """Return the YAML of the embedded demo audit."""
    return resources.files("llmsurgeon_core").joinpath("demo.yaml").read_text(encoding="utf-8")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> AuditConfig:
    """Load, override and validate a config file; ``None`` loads the demo config.

    Raises:
        ConfigError: with one line that names the offending key.
    """
    if path is None:
        raw = parse_config_text(demo_config_text(), ".yaml", "demo.yaml")
    else:
        raw = _read_config_file(Path(path))
        _resolve_taxonomy_path(raw, Path(path).parent)
    raw = apply_overrides(raw, list(overrides))
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, AuditConfig)) from None

"""Taxonomies: ordered domains, their reference sources and known mixtures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import PluginError, TaxonomyError

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "DistributionSource",
    "Domain",
    "FilesSource",
    "JsonlSource",
    "PackageReadmesSource",
    "Recipe",
    "Source",
    "Taxonomy",
    "load_taxonomy_file",
    "resolve_taxonomy",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilesSource(_Strict):
    """Local text files matched by a glob, relative to the taxonomy file."""

    kind: Literal["files"]
    glob: str = Field(description="Glob pattern; `**` matches any depth.")
    encoding: str = Field("utf-8", description="Text encoding of the files.")


class JsonlSource(_Strict):
    """A JSON Lines file with one text per line."""

    kind: Literal["jsonl"]
    path: str = Field(description="Path of the file, relative to the taxonomy file.")
    text_field: str = Field("text", description="Key of the text in each record.")


class DistributionSource(_Strict):
    """Files inside an installed Python distribution, found by importlib.metadata."""

    kind: Literal["distribution"]
    distribution: str = Field(description="Distribution name, as `pip` installs it.")
    glob: str = Field(description="Glob over the distribution's installed file paths.")


class PackageReadmesSource(_Strict):
    """Long descriptions (READMEs) in installed distributions' metadata."""

    kind: Literal["package-readmes"]
    exclude: list[str] = Field(default_factory=list, description="Distribution names to leave out.")
    min_chars: int = Field(400, ge=0, description="Skip descriptions shorter than this.")


Source = Annotated[
    FilesSource | JsonlSource | DistributionSource | PackageReadmesSource,
    Field(discriminator="kind"),
]


class Domain(_Strict):
    """One class of the taxonomy."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    description: str = ""
    parent: str | None = Field(None, description="Id of the coarser domain this refines.")
    sources: list[Source] = Field(default_factory=list)


class Recipe(_Strict):
    """A known mixture, for example one a model report published."""

    description: str = ""
    source: str = Field("", description="Citation of the numbers.")
    mixture: dict[str, float]


class Taxonomy(_Strict):
    """An ordered list of domains with their reference sources and recipes."""

    name: str
    description: str = ""
    domains: list[Domain] = Field(min_length=2)
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    base_dir: Path = Field(Path("."), exclude=True, description="Directory for relative paths.")

    @model_validator(mode="after")
    def _check_references(self) -> Taxonomy:
        ids = [d.id for d in self.domains]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate domain ids: {', '.join(duplicates)}")
        for domain in self.domains:
            if domain.parent is not None and domain.parent not in ids:
                raise ValueError(f"domain {domain.id!r} names unknown parent {domain.parent!r}")
        for name, recipe in self.recipes.items():
            unknown = sorted(set(recipe.mixture) - set(ids))
            if unknown:
                raise ValueError(f"recipe {name!r} names unknown domains: {', '.join(unknown)}")
            if any(not math.isfinite(v) or v < 0 for v in recipe.mixture.values()):
                raise ValueError(f"recipe {name!r} has a negative or non-finite share")
            if sum(recipe.mixture.values()) <= 0:
                raise ValueError(f"recipe {name!r} has no positive share")
        return self

    @property
    def domain_ids(self) -> list[str]:
        return [d.id for d in self.domains]

    def recipe_vector(self, name: str) -> list[float]:
        """Return recipe ``name`` in domain order, renormalized to sum to 1.

        Published tables are often in percent or round to 99.9 or 100.1, so
        the shares are divided by their sum; absent domains count as 0.
        """
        if name not in self.recipes:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise TaxonomyError(
                f"taxonomy {self.name!r} has no recipe {name!r}; known recipes: {known}"
            )
        mixture = self.recipes[name].mixture
        total = sum(mixture.values())
        return [mixture.get(i, 0.0) / total for i in self.domain_ids]


def load_taxonomy_file(path: str | Path) -> Taxonomy:
    """Read and validate a taxonomy YAML file.

    Raises:
        TaxonomyError: naming the file and the first invalid field.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TaxonomyError(f"cannot read taxonomy file {str(path)!r}: {error}") from None
    if not isinstance(raw, dict):
        raise TaxonomyError(f"taxonomy file {str(path)!r} must hold a mapping at top level")
    raw.setdefault("name", path.stem)
    raw["base_dir"] = path.resolve().parent
    try:
        return Taxonomy.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise TaxonomyError(
            f"invalid taxonomy file {str(path)!r}: {location}: {first['msg']}"
        ) from None


def resolve_taxonomy(name_or_path: str | Path, registry: Registry | None = None) -> Taxonomy:
    """Return the taxonomy a config names: a registered name or a YAML file path."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or candidate.is_file():
        return load_taxonomy_file(candidate)
    if registry is None:
        from .registry import default_registry

        registry = default_registry()
    try:
        source = registry.get("taxonomy", text).obj
    except PluginError as error:
        raise TaxonomyError(f"{error}; or pass the path of a taxonomy YAML file") from None
    if isinstance(source, Taxonomy):
        return source
    return load_taxonomy_file(source)

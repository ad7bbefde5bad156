"""Taxonomies: a tree of domains, their reference sources, known mixtures and merge maps.

The leaves of the tree are the classes an audit estimates. A domain that names
a ``parent`` refines it, so one file can hold coarse, mid and fine levels, and
a mixture over the leaves sums to any coarser level (see :meth:`Taxonomy.groups`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from .errors import PluginError, TaxonomyError

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "CsvSource",
    "DistributionSource",
    "Domain",
    "FilesSource",
    "HfDatasetSource",
    "JsonlSource",
    "PackageReadmesSource",
    "ParquetSource",
    "Preprocess",
    "Recipe",
    "Source",
    "Taxonomy",
    "TaxonomyValidationError",
    "apply_merge",
    "load_taxonomy_file",
    "parse_merge_spec",
    "resolve_taxonomy",
    "taxonomy_json_schema",
    "validate_taxonomy_data",
]

Cleaner = Literal["email-headers", "licence-headers", "latex-preamble", "html"]
FieldValue = str | int | float | bool
Where = dict[str, FieldValue | list[FieldValue]]

_STRIP_DESCRIPTION = (
    "Cleaners applied to every document before chunking: `email-headers` (a leading "
    "RFC 822 header block), `licence-headers` (a leading comment that states a licence, "
    "and SPDX tags), `latex-preamble` (everything outside the document environment, and "
    "comments), `html` (tags, scripts and styles). Unset: the taxonomy's `preprocess.strip`."
)
_WHERE_DESCRIPTION = (
    "Keep only records whose fields equal these values (a list matches any of its "
    "values); a dotted key such as `meta.pile_set_name` reads a nested field."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SourceBase(_Strict):
    strip: list[Cleaner] | None = Field(None, description=_STRIP_DESCRIPTION)


class FilesSource(_SourceBase):
    """Local text files matched by a glob, relative to the taxonomy file."""

    kind: Literal["files"]
    glob: str = Field(description="Glob pattern; `**` matches any depth.")
    encoding: str = Field("utf-8", description="Text encoding of the files.")


class JsonlSource(_SourceBase):
    """A JSON Lines file with one text per line."""

    kind: Literal["jsonl"]
    path: str = Field(description="Path of the file, relative to the taxonomy file.")
    text_field: str = Field("text", description="Key of the text in each record.")
    where: Where = Field(default_factory=dict, description=_WHERE_DESCRIPTION)


class CsvSource(_SourceBase):
    """CSV files with a header row, one text per row."""

    kind: Literal["csv"]
    path: str = Field(description="Path or glob of the files, relative to the taxonomy file.")
    text_field: str = Field("text", description="Column that contains the text.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")
    encoding: str = Field("utf-8", description="Text encoding of the files.")
    where: Where = Field(default_factory=dict, description=_WHERE_DESCRIPTION)


class ParquetSource(_SourceBase):
    """Parquet files, one text per row; read with pyarrow."""

    kind: Literal["parquet"]
    path: str = Field(description="Path or glob of the files, relative to the taxonomy file.")
    text_field: str = Field("text", description="Column that contains the text.")
    where: Where = Field(default_factory=dict, description=_WHERE_DESCRIPTION)


class HfDatasetSource(_SourceBase):
    """A Hugging Face dataset read with `datasets.load_dataset`, cached locally.

    The first ``max_documents`` matching texts are written to a JSON Lines file
    in the llmsurgeon cache directory, and later reads use that file.
    """

    kind: Literal["hf-dataset"]
    path: str = Field(
        description="Dataset id on the Hub (`monology/pile-uncopyrighted`) or a builder "
        "such as `json`, `csv` or `parquet` for local data files."
    )
    name: str | None = Field(None, description="Dataset config name.")
    split: str = Field("train", description="Split to read.")
    data_files: str | list[str] | None = Field(
        None, description="Data files for a builder; relative paths start at the taxonomy file."
    )
    revision: str | None = Field(None, description="Git revision of the dataset repository.")
    text_field: str = Field("text", description="Field that contains the text.")
    where: Where = Field(default_factory=dict, description=_WHERE_DESCRIPTION)
    streaming: bool = Field(True, description="Stream records instead of downloading the split.")
    max_documents: int = Field(2000, ge=1, description="Matching records to read and cache.")
    max_scanned: int | None = Field(
        None, ge=1, description="Stop after this many records even if fewer matched."
    )
    cache: bool = Field(True, description="Keep the texts read in the llmsurgeon cache.")


class DistributionSource(_SourceBase):
    """Files inside an installed Python distribution, found by importlib.metadata."""

    kind: Literal["distribution"]
    distribution: str = Field(description="Distribution name, as `pip` installs it.")
    glob: str = Field(description="Glob over the distribution's installed file paths.")


class PackageReadmesSource(_SourceBase):
    """Long descriptions (READMEs) in installed distributions' metadata."""

    kind: Literal["package-readmes"]
    exclude: list[str] = Field(default_factory=list, description="Distribution names to leave out.")
    min_chars: int = Field(400, ge=0, description="Skip descriptions shorter than this.")


Source = Annotated[
    FilesSource
    | JsonlSource
    | CsvSource
    | ParquetSource
    | HfDatasetSource
    | DistributionSource
    | PackageReadmesSource,
    Field(discriminator="kind"),
]


class Domain(_Strict):
    """One node of the taxonomy tree; the leaves are the classes an audit estimates."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    description: str = ""
    parent: str | None = Field(None, description="Id of the coarser domain this refines.")
    sources: list[Source] = Field(
        default_factory=list, description="Reference text; only leaf domains may have sources."
    )
    max_chunks: int | None = Field(
        None,
        ge=1,
        description="Cap on this domain's reference chunks (with reference.max_per_domain).",
    )
    max_words: int | None = Field(
        None,
        ge=1,
        description="Budget of this domain's reference text in whitespace-separated words.",
    )


class Preprocess(_Strict):
    """Cleaning, deduplication and caps applied to every domain's documents."""

    deduplicate: bool = Field(
        False,
        description="Drop exact duplicate documents and chunks (after cleaning and collapsing "
        "whitespace), across all domains; the first domain in file order keeps a duplicate.",
    )
    strip: list[Cleaner] = Field(default_factory=list, description=_STRIP_DESCRIPTION)
    max_chunks: int | None = Field(None, ge=1, description="Default of `Domain.max_chunks`.")
    max_words: int | None = Field(None, ge=1, description="Default of `Domain.max_words`.")


class Recipe(_Strict):
    """A known mixture, for example one a model report published.

    ``mixture`` may name domains of any level, but not a domain together with
    one of its ancestors. Shares are renormalized to sum to 1 when used.
    """

    description: str = ""
    source: str = Field("", description="Citation of the numbers.")
    confirmed: bool = Field(
        True, description="False when the numbers could not be checked against a primary source."
    )
    notes: str = Field(
        "", description="Merges, renormalization or mappings applied to the numbers."
    )
    total: float | None = Field(
        None,
        gt=0,
        description="What the shares should sum to (100 for percent); checked within `tolerance`.",
    )
    tolerance: float = Field(0.5, ge=0, description="Allowed gap between the sum and `total`.")
    sum_note: str = Field(
        "", description="Why the shares do not sum to `total`; turns the check into a warning."
    )
    mixture: dict[str, float]


class Taxonomy(_Strict):
    """A tree of domains with their reference sources, known mixtures and merge maps."""

    name: str
    description: str = ""
    levels: list[str] = Field(
        default_factory=list,
        description="Names of the tree's depths, coarsest first, e.g. [source, component].",
    )
    preprocess: Preprocess = Field(default_factory=Preprocess)
    domains: list[Domain] = Field(min_length=2)
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    merges: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Named merge maps: each maps a new domain id to the domains it sums.",
    )
    base_dir: SkipJsonSchema[Path] = Field(
        Path("."), exclude=True, description="Directory for relative paths."
    )

    @model_validator(mode="after")
    def _check_references(self) -> Taxonomy:
        problems = _reference_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # Tree

    @property
    def all_ids(self) -> list[str]:
        """Every domain id, in file order."""
        return [d.id for d in self.domains]

    @property
    def domain_ids(self) -> list[str]:
        """Ids of the leaf domains, the classes an audit estimates, in file order."""
        parents = {d.parent for d in self.domains}
        return [d.id for d in self.domains if d.id not in parents]

    @property
    def leaves(self) -> list[Domain]:
        leaf_ids = set(self.domain_ids)
        return [d for d in self.domains if d.id in leaf_ids]

    def domain(self, domain_id: str) -> Domain:
        for domain in self.domains:
            if domain.id == domain_id:
                return domain
        raise TaxonomyError(
            f"taxonomy {self.name!r} has no domain {domain_id!r}; "
            f"domains: {', '.join(self.all_ids)}"
        )

    def ancestors(self, domain_id: str) -> list[str]:
        """Return the ids above ``domain_id``, nearest first."""
        parents = {d.id: d.parent for d in self.domains}
        chain = []
        current = parents[domain_id]
        while current is not None:
            chain.append(current)
            current = parents[current]
        return chain

    def depth(self, domain_id: str) -> int:
        """Return 0 for a root domain, 1 for its children, and so on."""
        return len(self.ancestors(domain_id))

    @property
    def max_depth(self) -> int:
        return max(self.depth(i) for i in self.all_ids)

    def level_index(self, level: str | int) -> int:
        """Return the depth that a level name, or a depth given as a number, denotes."""
        if isinstance(level, int) or str(level).isdigit():
            depth = int(level)
            if not 0 <= depth <= self.max_depth:
                raise TaxonomyError(
                    f"taxonomy {self.name!r} has depths 0 to {self.max_depth}, not {depth}"
                )
            return depth
        if level in self.levels:
            return self.levels.index(level)
        named = ", ".join(self.levels) or "none, so give a depth from 0"
        raise TaxonomyError(f"taxonomy {self.name!r} has no level {level!r}; levels: {named}")

    def level_name(self, depth: int) -> str:
        return self.levels[depth] if depth < len(self.levels) else str(depth)

    def groups(self, level: str | int | None = None) -> dict[str, list[str]]:
        """Map each domain of ``level`` to the leaves under it, in file order.

        The domains of a level are those at its depth plus the leaves above it,
        so every leaf belongs to exactly one group. ``None`` is the leaf level.
        """
        if level is None:
            return {leaf: [leaf] for leaf in self.domain_ids}
        depth = self.level_index(level)
        groups: dict[str, list[str]] = {}
        for domain_id in self.all_ids:
            chain = [domain_id, *self.ancestors(domain_id)]
            if len(chain) - 1 == depth or (len(chain) - 1 < depth and domain_id in self.domain_ids):
                groups[domain_id] = []
        for leaf in self.domain_ids:
            chain = [leaf, *self.ancestors(leaf)]
            owner = next(i for i in chain if i in groups)
            groups[owner].append(leaf)
        return groups

    # Mixtures

    def sum_to_level(
        self, mixture: Mapping[str, float], level: str | int | None
    ) -> dict[str, float]:
        """Sum a mixture keyed by domain ids to the domains of ``level``.

        ``mixture`` may name domains at ``level`` or finer. A domain coarser
        than ``level`` cannot be split, so it raises.

        Raises:
            TaxonomyError: naming the domain that is coarser than ``level``.
        """
        groups = self.groups(level)
        owner_of: dict[str, str] = {}
        for group in groups:
            owner_of[group] = group
            for domain_id in self.all_ids:
                if group in self.ancestors(domain_id):
                    owner_of[domain_id] = group
        summed = dict.fromkeys(groups, 0.0)
        for domain_id, share in mixture.items():
            if domain_id not in owner_of:
                shown = "the leaf level" if level is None else f"level {level!r}"
                raise TaxonomyError(
                    f"domain {domain_id!r} of taxonomy {self.name!r} is coarser than {shown}, "
                    "so its share cannot be split; evaluate at a coarser level"
                )
            summed[owner_of[domain_id]] += float(share)
        return summed

    def recipe_level(self, name: str) -> int | None:
        """Return the finest level a recipe can be summed to (``None``: the leaves)."""
        mixture = self.recipe(name).mixture
        inner = [self.depth(i) for i in mixture if i not in self.domain_ids]
        return min(inner) if inner else None

    def recipe_mixture(self, name: str, level: str | int | None = None) -> dict[str, float]:
        """Return recipe ``name`` summed to ``level``, renormalized to sum to 1.

        Published tables are often in percent or in tokens and round to 99.9
        or 100.1, so the shares are divided by their sum; absent domains count as 0.
        """
        summed = self.sum_to_level(self.recipe(name).mixture, level)
        total = sum(summed.values())
        return {domain_id: share / total for domain_id, share in summed.items()}

    def recipe_vector(self, name: str) -> list[float]:
        """Return recipe ``name`` over the leaf domains, in order, summing to 1."""
        return list(self.recipe_mixture(name).values())

    def merge_map(self, name: str) -> dict[str, list[str]]:
        if name not in self.merges:
            known = ", ".join(sorted(self.merges)) or "none"
            raise TaxonomyError(
                f"taxonomy {self.name!r} has no merge map {name!r}; merge maps: {known}"
            )
        return self.merges[name]

    def recipe(self, name: str) -> Recipe:
        if name not in self.recipes:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise TaxonomyError(
                f"taxonomy {self.name!r} has no recipe {name!r}; known recipes: {known}"
            )
        return self.recipes[name]


def apply_merge(mixture: Mapping[str, float], merge: Mapping[str, list[str]]) -> dict[str, float]:
    """Sum the members of each merge group into one share, keeping the others.

    A group takes the place of its first member in ``mixture``'s order.

    Raises:
        TaxonomyError: if a member is not a key of ``mixture``.
    """
    group_of = {member: group for group, members in merge.items() for member in members}
    missing = sorted(set(group_of) - set(mixture))
    if missing:
        raise TaxonomyError(
            f"merge members {', '.join(missing)} are not domains of the mixture; "
            f"its domains: {', '.join(mixture)}"
        )
    merged: dict[str, float] = {}
    for domain_id, share in mixture.items():
        key = group_of.get(domain_id, domain_id)
        merged[key] = merged.get(key, 0.0) + float(share)
    return merged


def parse_merge_spec(spec: str) -> dict[str, list[str]]:
    """Parse ``web=commoncrawl+c4;code=github`` into a merge map."""
    merge: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        target, _, members = part.partition("=")
        names = [m.strip() for m in members.split("+") if m.strip()]
        if not target.strip() or not names:
            raise TaxonomyError(
                f"invalid merge {part!r}; write NEW=MEMBER+MEMBER, e.g. web=commoncrawl+c4"
            )
        merge[target.strip()] = names
    return merge


def _parent_problems(taxonomy: Taxonomy) -> list[str]:
    ids = taxonomy.all_ids
    parents = {d.id: d.parent for d in taxonomy.domains}
    problems = []
    for domain in taxonomy.domains:
        if domain.parent is not None and domain.parent not in ids:
            problems.append(
                f"domain {domain.id!r}, field 'parent': unknown parent {domain.parent!r}"
            )
            continue
        seen = {domain.id}
        current = domain.parent
        while current is not None and current in parents:
            if current in seen:
                problems.append(
                    f"domain {domain.id!r}, field 'parent': the parent chain loops back "
                    f"through {current!r}"
                )
                break
            seen.add(current)
            current = parents[current]
    return problems


def _recipe_problems(taxonomy: Taxonomy) -> list[str]:
    ids = set(taxonomy.all_ids)
    problems = []
    for name, recipe in taxonomy.recipes.items():
        unknown = sorted(set(recipe.mixture) - ids)
        if unknown:
            problems.append(
                f"recipe {name!r}, field 'mixture': unknown domains {', '.join(unknown)}"
            )
            continue
        invalid = {d: v for d, v in recipe.mixture.items() if not math.isfinite(v) or v < 0}
        if invalid:
            shares = ", ".join(f"{d}={v!r}" for d, v in invalid.items())
            problems.append(
                f"recipe {name!r}, field 'mixture': shares must be finite and non-negative, "
                f"not {shares}"
            )
            continue
        total = sum(recipe.mixture.values())
        if total <= 0:
            problems.append(f"recipe {name!r}, field 'mixture': no share is positive")
            continue
        for domain_id in recipe.mixture:
            overlap = [a for a in taxonomy.ancestors(domain_id) if a in recipe.mixture]
            if overlap:
                problems.append(
                    f"recipe {name!r}, field 'mixture': names {domain_id!r} and its ancestor "
                    f"{overlap[0]!r}, which would count its share twice"
                )
        if (
            recipe.total is not None
            and abs(total - recipe.total) > recipe.tolerance
            and not recipe.sum_note
        ):
            problems.append(
                f"recipe {name!r}, field 'mixture': shares sum to {total:g}, not total "
                f"{recipe.total:g} within {recipe.tolerance:g}; fix them or say why in 'sum_note'"
            )
    return problems


def _merge_problems(taxonomy: Taxonomy) -> list[str]:
    ids = set(taxonomy.all_ids)
    problems = []
    for name, merge in taxonomy.merges.items():
        seen: dict[str, str] = {}
        for target, members in merge.items():
            if target in ids and target not in members:
                problems.append(
                    f"merge {name!r}, field {target!r}: the new id is already a domain that is "
                    "not among its members"
                )
            for member in members:
                if member not in ids:
                    problems.append(f"merge {name!r}, field {target!r}: unknown domain {member!r}")
                elif member in seen:
                    problems.append(
                        f"merge {name!r}, field {target!r}: domain {member!r} is also merged "
                        f"into {seen[member]!r}"
                    )
                seen[member] = target
    return problems


def _reference_problems(taxonomy: Taxonomy) -> list[str]:
    """Return every cross-reference problem of ``taxonomy``, one message each."""
    ids = taxonomy.all_ids
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        return [f"field 'domains': duplicate domain ids {', '.join(duplicates)}"]
    problems = _parent_problems(taxonomy)
    if problems:
        return problems
    leaves = set(taxonomy.domain_ids)
    for domain in taxonomy.domains:
        if domain.sources and domain.id not in leaves:
            problems.append(
                f"domain {domain.id!r}, field 'sources': only leaf domains are classes, so "
                "the sources of a domain with children are never read; move them to a child"
            )
    if len(taxonomy.levels) > taxonomy.max_depth + 1:
        problems.append(
            f"field 'levels': {len(taxonomy.levels)} names for a tree of "
            f"{taxonomy.max_depth + 1} levels"
        )
    return problems + _recipe_problems(taxonomy) + _merge_problems(taxonomy)


def _format_location(location: tuple[Any, ...], raw: Mapping[str, Any]) -> str:
    """Render a pydantic error location as ``domain 'b' (domains[1]), field 'sources[0].glob'``."""
    parts = list(location)
    prefix = ""
    if len(parts) >= 2 and parts[0] == "domains" and isinstance(parts[1], int):
        domains = raw.get("domains") or []
        entry = domains[parts[1]] if parts[1] < len(domains) else None
        domain_id = entry.get("id") if isinstance(entry, dict) else None
        prefix = f"domain {domain_id!r} (domains[{parts[1]}]), " if domain_id else ""
        prefix = prefix or f"domains[{parts[1]}], "
        parts = parts[2:]
    elif len(parts) >= 2 and parts[0] in ("recipes", "merges"):
        prefix = f"{parts[0][:-1]} {parts[1]!r}, "
        parts = parts[2:]
    field = ""
    for index, part in enumerate(parts):
        after_source = index >= 2 and parts[index - 2] == "sources"
        if isinstance(part, int):
            field += f"[{part}]"
        elif after_source and index == parts.index("sources") + 2 and part in _SOURCE_KINDS:
            # A discriminated union adds the tag, the source kind, to the location.
            continue
        else:
            field += f".{part}" if field else str(part)
    if not field:
        return prefix.rstrip(", ") or "(top level)"
    return f"{prefix}field {field!r}"


_SOURCE_KINDS = {
    "files",
    "jsonl",
    "csv",
    "parquet",
    "hf-dataset",
    "distribution",
    "package-readmes",
}


def _validation_problems(error: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "value_error" and not item["loc"]:
            problems.extend(message.splitlines())
            continue
        problems.append(f"{_format_location(tuple(item['loc']), raw)}: {message}")
    return problems


class TaxonomyValidationError(TaxonomyError):
    """An invalid taxonomy; ``problems`` lists every invalid field, one message each."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def validate_taxonomy_data(raw: Any, label: str, base_dir: Path) -> Taxonomy:
    """Validate a parsed taxonomy mapping; ``label`` names it in errors.

    Raises:
        TaxonomyValidationError: with ``problems`` listing every invalid field.
    """
    if not isinstance(raw, dict):
        raise TaxonomyError(f"taxonomy file {label!r} must contain a mapping at top level")
    raw = {**raw, "base_dir": base_dir}
    try:
        return Taxonomy.model_validate(raw)
    except ValidationError as error:
        problems = _validation_problems(error, raw)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TaxonomyValidationError(
            f"invalid taxonomy file {label!r}: {problems[0]}{more}",
            [f"{label}: {p}" for p in problems],
        ) from None


def load_taxonomy_file(path: str | Path) -> Taxonomy:
    """Read and validate a taxonomy YAML file.

    Raises:
        TaxonomyError: if the file is missing or unreadable.
        TaxonomyValidationError: naming the file, the domain and the first
            invalid field; its ``problems`` attribute lists every invalid field.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise TaxonomyError(f"cannot read taxonomy file {str(path)!r}: {error}") from None
    if isinstance(raw, dict):
        raw.setdefault("name", path.stem)
    return validate_taxonomy_data(raw, str(path), path.resolve().parent)


def taxonomy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the taxonomy file format."""
    schema = Taxonomy.model_json_schema()
    schema["title"] = "llmsurgeon taxonomy"
    # ``name`` defaults to the file's stem when a file omits it.
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]
    return schema


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

"""JSON Schema of the audit config, with the options of every installed component."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from .config import AuditConfig
from .registry import Registry

__all__ = ["config_json_schema"]


def _component_union(registry: Registry, kind: str) -> Any:
    variants = []
    for name in registry.names(kind):
        options = registry.get(kind, name).obj.Options
        model_name = f"{kind.title()}_{name.replace('-', '_')}"
        variants.append(
            create_model(
                model_name,
                __config__=ConfigDict(extra="forbid"),
                name=(Literal[name], ...),
                options=(options, Field(default_factory=options)),
            )
        )
    if not variants:
        return dict
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="name")]  # noqa: UP007


def config_json_schema(registry: Registry) -> dict[str, Any]:
    """Return the schema of :class:`AuditConfig` with each component kind as a union."""
    fields = {
        kind: (_component_union(registry, kind), AuditConfig.model_fields[kind])
        for kind in ("sampler", "classifier", "solver", "executor")
    }
    model: type[BaseModel] = create_model("AuditConfig", __base__=AuditConfig, **fields)
    return model.model_json_schema()

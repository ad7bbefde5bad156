"""Plugin discovery and the registry of components.

Plugins are modules named in the ``llmsurgeon`` entry-point group. Each is
loaded on its own: a plugin that fails to import, or whose hook raises, is
recorded with its error and the others keep working. The environment variable
``LLMSURGEON_LOAD_PLUGINS`` (a comma-separated list of entry-point or
distribution names) limits which plugins load; set it empty to load none.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from . import executors, hookspecs
from .errors import PluginError

__all__ = [
    "ALLOW_LIST_VARIABLE",
    "BUILTIN_PLUGIN",
    "KINDS",
    "PluginInfo",
    "Registration",
    "Registry",
    "default_registry",
    "load_registry",
]

logger = logging.getLogger(__name__)

ALLOW_LIST_VARIABLE = "LLMSURGEON_LOAD_PLUGINS"
ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

# Component kind -> the hook that registers it.
KINDS: dict[str, str] = {
    "sampler": "register_samplers",
    "classifier": "register_classifiers",
    "solver": "register_solvers",
    "taxonomy": "register_taxonomies",
    "executor": "register_executors",
}

# The name under which the core registers its own components (the local executor).
BUILTIN_PLUGIN = "llmsurgeon-core"


@dataclass(frozen=True)
class Registration:
    """A component as one plugin registered it."""

    kind: str
    name: str
    obj: Any
    plugin: str


@dataclass
class PluginInfo:
    """A discovered plugin: where it comes from, what it provides, its errors."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "components": self.components,
            "errors": self.errors,
        }


class Registry:
    """Components by kind and name, with the plugin that registered each."""

    def __init__(self, plugin_manager: pluggy.PluginManager) -> None:
        self.plugin_manager = plugin_manager
        self.plugins: dict[str, PluginInfo] = {}
        # The core's own components go through the same hooks, but are not
        # an installed plugin, so the allow-list and ``plugins`` leave them out.
        self.builtins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Registration]] = {k: {} for k in KINDS}
        self._clashes: dict[tuple[str, str], list[str]] = {}

    def add_plugin(self, info: PluginInfo, module: ModuleType | None) -> None:
        self.plugins[info.name] = info
        if module is None:
            return
        try:
            self.plugin_manager.register(module, name=info.name)
        except (ValueError, pluggy.PluginValidationError) as error:
            info.errors.append(f"failed to register: {error}")
            logger.warning("plugin %s failed to register: %s", info.name, error)
            return
        for impl_hook in self.plugin_manager.get_hookcallers(module) or []:
            info.hooks.append(impl_hook.name)
        info.hooks.sort()

    def add_builtin(self, module: ModuleType) -> None:
        """Register one of the core's own hook modules."""
        version = None
        with contextlib.suppress(metadata.PackageNotFoundError):
            version = metadata.version(BUILTIN_PLUGIN)
        self.builtins[BUILTIN_PLUGIN] = PluginInfo(BUILTIN_PLUGIN, BUILTIN_PLUGIN, version)
        self.plugin_manager.register(module, name=BUILTIN_PLUGIN)
        for impl_hook in self.plugin_manager.get_hookcallers(module) or []:
            self.builtins[BUILTIN_PLUGIN].hooks.append(impl_hook.name)

    def _info(self, plugin: str) -> PluginInfo:
        return self.plugins.get(plugin) or self.builtins[plugin]

    def collect(self) -> None:
        """Call every registration hook of every plugin, one plugin at a time."""
        for kind, hook_name in KINDS.items():
            caller = getattr(self.plugin_manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                register = self._register_callable(kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except Exception as error:  # a broken plugin must not break the rest
                    message = f"{hook_name} raised {type(error).__name__}: {error}"
                    self._info(impl.plugin_name).errors.append(message)
                    logger.warning("plugin %s: %s", impl.plugin_name, message)
                    logger.debug("%s", traceback.format_exc())

    def _register_callable(self, kind: str, plugin: str) -> Callable[[str, Any], None]:
        def register(name: str, obj: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"plugin {plugin!r} registered a {kind} with invalid name {name!r}"
                )
            existing = self._components[kind].get(name)
            if existing is not None:
                owners = self._clashes.setdefault((kind, name), [existing.plugin])
                owners.append(plugin)
                for owner in (existing.plugin, plugin):
                    self._info(owner).errors.append(
                        f"{kind} {name!r} is registered by both {owners[0]!r} and {plugin!r}"
                    )
                return
            self._components[kind][name] = Registration(kind, name, obj, plugin)
            self._info(plugin).components.setdefault(kind, []).append(name)

        return register

    def names(self, kind: str) -> list[str]:
        """Return the names of the usable components of ``kind``, sorted."""
        return sorted(n for n in self._components[kind] if (kind, n) not in self._clashes)

    def get(self, kind: str, name: str) -> Registration:
        """Return the component ``name`` of ``kind``.

        Raises:
            PluginError: if no plugin registers it, or if two plugins do.
        """
        owners = self._clashes.get((kind, name))
        if owners:
            raise PluginError(
                f"{kind} {name!r} is registered by several plugins ({', '.join(owners)}); "
                f"uninstall one of them or limit plugins with {ALLOW_LIST_VARIABLE}"
            )
        registration = self._components[kind].get(name)
        if registration is None:
            raise PluginError(self._unknown_message(kind, name))
        return registration

    def _unknown_message(self, kind: str, name: str) -> str:
        available = self.names(kind)
        parts = [f"unknown {kind} {name!r}"]
        close = difflib.get_close_matches(name, available, n=1)
        if close:
            parts.append(f"did you mean {close[0]!r}?")
        if available:
            parts.append(f"installed: {', '.join(available)}")
        else:
            parts.append(f"no {kind} plugin is installed (see `llmsurgeon plugins`)")
        failed = [p.name for p in self.plugins.values() if p.errors]
        if failed:
            parts.append(f"plugins with errors: {', '.join(failed)}")
        return "; ".join(parts)

    def load_errors(self) -> dict[str, list[str]]:
        return {p.name: p.errors for p in self.plugins.values() if p.errors}


def _allowed_names() -> set[str] | None:
    value = os.environ.get(ALLOW_LIST_VARIABLE)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load_registry(extra_plugins: Iterable[tuple[str, ModuleType]] = ()) -> Registry:
    """Discover installed plugins and collect their components.

    Args:
        extra_plugins: ``(name, module)`` pairs registered in addition to the
            entry points, as if a distribution had installed them.
    """
    plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    plugin_manager.add_hookspecs(hookspecs)
    registry = Registry(plugin_manager)
    registry.add_builtin(executors)
    allowed = _allowed_names()

    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        distribution = entry_point.dist.name if entry_point.dist else None
        if allowed is not None and not allowed & {entry_point.name, distribution}:
            continue
        if entry_point.name in registry.plugins:
            registry.plugins[entry_point.name].errors.append(
                f"entry point name {entry_point.name!r} is also used by {distribution!r}"
            )
            continue
        version = entry_point.dist.version if entry_point.dist else None
        info = PluginInfo(entry_point.name, distribution, version)
        try:
            module = entry_point.load()
        except Exception as error:  # report the plugin, keep the others
            info.errors.append(
                f"failed to import {entry_point.value}: {type(error).__name__}: {error}"
            )
            logger.warning("plugin %s failed to import: %s", entry_point.name, error)
            module = None
        registry.add_plugin(info, module)

    for name, module in extra_plugins:
        registry.add_plugin(PluginInfo(name, None, None), module)

    registry.collect()
    return registry


_default_registry: Registry | None = None


def default_registry() -> Registry:
    """Return the registry of installed plugins, loading it on first use."""
    global _default_registry
    if _default_registry is None:
        _default_registry = load_registry()
    return _default_registry

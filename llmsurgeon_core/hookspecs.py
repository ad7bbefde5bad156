"""Hook specifications of llmsurgeon, grouped by the kind they extend.

Every hook hands the plugin a ``register`` callable, so the host records which
plugin registered each component and rejects two plugins that claim one name.
Plugins implement them with ``llmsurgeon_core.hookimpl`` and advertise their
module in the ``llmsurgeon`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

PROJECT_NAME = "llmsurgeon"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# Components


@hookspec
def register_samplers(register: Callable[[str, type], None]) -> None:
    """Register sampler classes.

    Call ``register(name, cls)`` once per sampler, where ``cls`` subclasses
    :class:`llmsurgeon_core.Sampler` and ``name`` is what configs put in
    ``sampler.name``. Implemented by plugins that draw texts from a target
    model (a local model, an inference engine, an HTTP API).
    """


@hookspec
def register_classifiers(register: Callable[[str, type], None]) -> None:
    """Register classifier classes.

    Call ``register(name, cls)`` once per classifier, where ``cls`` subclasses
    :class:`llmsurgeon_core.Classifier`. The host cross-fits it to estimate the
    soft confusion matrix, so ``fit`` must be callable many times on fresh
    instances.
    """


@hookspec
def register_solvers(register: Callable[[str, type], None]) -> None:
    """Register solver classes.

    Call ``register(name, cls)`` once per solver, where ``cls`` subclasses
    :class:`llmsurgeon_core.Solver` and returns a mixture on the simplex.
    """


@hookspec
def register_taxonomies(register: Callable[[str, Any], None]) -> None:
    """Register taxonomies.

    Call ``register(name, source)`` once per taxonomy, where ``source`` is the
    path of a taxonomy YAML file or a :class:`llmsurgeon_core.Taxonomy`. Paths
    are read lazily, when a config names the taxonomy.
    """


# Execution


@hookspec
def register_executors(register: Callable[[str, type], None]) -> None:
    """Register executor classes.

    Call ``register(name, cls)`` once per executor, where ``cls`` subclasses
    :class:`llmsurgeon_core.executors.Executor` and ``name`` is what configs
    put in ``executor.name``. An executor runs the sampling and classification
    stages, in this process or on a cluster, and returns their results in
    sample order. The core registers ``local``; plugins for distributed
    engines register others and import the engine only when a stage runs.
    """


# Command line


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``llmsurgeon`` command line.

    Decorate functions with ``@cli.command()`` to add them. Called once, when
    the command line starts; importing heavy libraries belongs inside the
    command, not here.
    """

"""The ``ray`` executor of llmsurgeon: sampler replicas as Ray actors, classification as a
Ray Data batch job."""

from __future__ import annotations

from .executor import RayExecutor, RayExecutorOptions

__all__ = ["RayExecutor", "RayExecutorOptions"]

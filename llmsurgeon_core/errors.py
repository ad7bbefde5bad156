"""Exceptions raised by llmsurgeon.

The library raises these; only the command line turns them into exit codes
(``InvalidInputError`` and its subclasses exit with status 2, every other
``LlmsurgeonError`` with status 1).
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "ConfigError",
    "InvalidInputError",
    "LlmsurgeonError",
    "PluginError",
    "RunDirectoryError",
    "TaxonomyError",
]


class LlmsurgeonError(Exception):
    """Base class of every error that llmsurgeon raises on purpose."""


class InvalidInputError(LlmsurgeonError):
    """Input that the user can fix: a config value, a file or a path."""


class ConfigError(InvalidInputError):
    """An invalid audit config; the message names the key and what is allowed."""


class TaxonomyError(InvalidInputError):
    """An invalid taxonomy file or reference source."""


class PluginError(InvalidInputError):
    """An unknown component name, or two plugins that register one name."""


class RunDirectoryError(InvalidInputError):
    """A run directory that contains another run's files or cannot be written."""


class CalibrationError(LlmsurgeonError):
    """A calibration that cannot be fitted or loaded."""

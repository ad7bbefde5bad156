"""Masking of API keys and tokens in logs, error messages and the files a run writes.

A component that reads a secret registers it with :func:`register_secret`.
Values of environment variables whose names end in ``API_KEY``, ``TOKEN``,
``SECRET`` or ``PASSWORD`` count as secrets without registration. Only values
of at least :data:`MIN_SECRET_LENGTH` characters are masked, so that a short
common value such as ``none`` does not blank out unrelated text.
"""

from __future__ import annotations

import logging
import os
import re
import threading

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SecretFilter",
    "install_log_filter",
    "known_secrets",
    "redact",
    "register_secret",
]

MASK = "***"
MIN_SECRET_LENGTH = 8

_SECRET_VARIABLE = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Add ``value`` to the secrets that :func:`redact` masks, for the rest of the process."""
    if len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def known_secrets() -> list[str]:
    """Return the registered secrets and the secret-named environment values, longest first.

    Longest first, so that a secret which contains another is masked whole.
    """
    from_environment = {
        value
        for name, value in os.environ.items()
        if _SECRET_VARIABLE.search(name) and len(value) >= MIN_SECRET_LENGTH
    }
    with _lock:
        values = _registered | from_environment
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """Return ``text`` with every known secret replaced by ``***``."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """A logging filter that masks known secrets in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # the handler reports the malformed record itself
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # The formatter renders the traceback from exc_info, so it is
            # rendered here once, masked, and cached where the formatter looks.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_filter(logger: logging.Logger | None = None) -> SecretFilter:
    """Attach a :class:`SecretFilter` to every handler of ``logger`` (default: the root).

    A filter on a handler receives the records of every child logger that
    propagates to it, which a filter on the logger itself would not.
    """
    logger = logger or logging.getLogger()
    secret_filter = SecretFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)
    return secret_filter

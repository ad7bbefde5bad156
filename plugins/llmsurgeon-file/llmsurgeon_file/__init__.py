"""llmsurgeon plugin that audits texts someone already collected.

Provides the ``file`` sampler, which reads samples from a JSONL file, a text
file or a folder of them in place of generating them.
"""

from __future__ import annotations

from .sampler import FileSampler, FileSamplerOptions

__version__ = "0.1.0"

__all__ = ["FileSampler", "FileSamplerOptions", "__version__"]

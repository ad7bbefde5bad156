"""llmsurgeon plugin for models reached over an OpenAI-compatible HTTP API.

Provides the ``openai`` sampler for completions and chat completions endpoints.
"""

from __future__ import annotations

from .sampler import OpenAISampler, OpenAISamplerOptions, SamplingFailedError

__version__ = "0.1.0"

__all__ = ["OpenAISampler", "OpenAISamplerOptions", "SamplingFailedError", "__version__"]

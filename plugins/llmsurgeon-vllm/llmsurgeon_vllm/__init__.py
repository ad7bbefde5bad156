"""llmsurgeon plugin for vLLM's offline engine: the ``vllm`` sampler."""

from __future__ import annotations

from .sampler import VLLMSampler, VLLMSamplerOptions

__version__ = "0.1.0"

__all__ = ["VLLMSampler", "VLLMSamplerOptions", "__version__"]

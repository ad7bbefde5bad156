"""llmsurgeon plugin for Hugging Face transformers models.

Provides the ``hf`` sampler and the ``llmsurgeon train-target`` command, which
trains a small GPT-2 target model on a known data mixture.
"""

from __future__ import annotations

from .sampler import HFSampler, HFSamplerOptions
from .train import TargetTraining, train_target

__version__ = "0.1.0"

__all__ = ["HFSampler", "HFSamplerOptions", "TargetTraining", "__version__", "train_target"]

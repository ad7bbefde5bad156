"""llmsurgeon plugin with the ``llmsurgeon scan`` benchmark.

A scan trains small GPT-2 targets at known mixtures with the hf plugin,
audits each with the configured classifiers and solvers through the core's
pipeline, and tabulates how close every estimate and the naive baseline come
to the known mixtures.
"""

from __future__ import annotations

from .config import ScanConfig, load_scan_config
from .scan import Scan, ScanCounts, ScanResult

__version__ = "0.1.0"

__all__ = ["Scan", "ScanConfig", "ScanCounts", "ScanResult", "__version__", "load_scan_config"]

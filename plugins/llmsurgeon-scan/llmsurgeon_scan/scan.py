"""A scan: train a target per known mixture, sample it, audit it with every classifier and solver.

Every stage runs through the core's :class:`~llmsurgeon_core.pipeline.Run`,
and each product is cached under ``scan_dir`` in a directory whose name
carries a digest of everything it depends on:

- ``targets/NAME-KEY``: the trained target (taxonomy, mixture, target options);
- ``samples/NAME-KEY``: its samples (the target's key and the sampling options);
- ``calibrations/CLASSIFIER-KEY``: one calibration per classifier, shared by all targets
  (one per classifier and target in generation mode, whose key covers the target);
- ``audits/NAME/CLASSIFIER-SOLVER-KEY``: one audit (samples, calibration, solver, bootstrap).

So adding a solver to the config solves only, and changing the sampling
options samples again without training. ``targets`` and ``samples`` live in
``targets_dir`` where the config sets one, so several scans can share them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from llmsurgeon_core import Taxonomy, resolve_taxonomy
from llmsurgeon_core.config import AuditConfig, ComponentConfig
from llmsurgeon_core.metrics import compare_mixtures
from llmsurgeon_core.pipeline import SAMPLES_FILE, SAMPLING_FILE, Run, check_run
from llmsurgeon_core.registry import Registry, default_registry
from llmsurgeon_core.sampling import read_samples
from llmsurgeon_hf.train import TARGET_FILE, TARGET_FORMAT_VERSION, TargetTraining, train_target

from .config import ScanConfig
from .mixtures import mixture_run_name, safe_name, scan_mixtures

__all__ = ["Scan", "ScanCounts", "ScanResult", "interval_coverage"]

logger = logging.getLogger(__name__)

# Hex digits of the cache key in a directory name.
KEY_LENGTH = 10
# Tolerance of the interval coverage check, for shares that sit on a bound.
COVERAGE_TOLERANCE = 1e-9


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def interval_coverage(result: dict[str, Any], truth: dict[str, float]) -> float | None:
    """Return the share of domains whose known share lies inside the result's interval."""
    interval = result.get("interval")
    if interval is None:
        return None
    inside = [
        interval[d][0] - COVERAGE_TOLERANCE <= share <= interval[d][1] + COVERAGE_TOLERANCE
        for d, share in truth.items()
    ]
    return sum(inside) / len(inside)


@dataclass
class ScanCounts:
    """Counts of the stages a scan computed rather than read from its cache."""

    trained: int = 0
    sampled: int = 0
    calibrated: int = 0
    solved: int = 0


@dataclass
class ScanResult:
    """The rows of a scan: one per target, and one per target, classifier and solver."""

    taxonomy: str
    domains: list[str]
    targets: list[dict[str, Any]]
    audits: list[dict[str, Any]]
    counts: ScanCounts
    solvers: list[str]
    classifiers: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "taxonomy": self.taxonomy,
            "domains": self.domains,
            "classifiers": self.classifiers,
            "solvers": self.solvers,
            "counts": vars(self.counts),
            "settings": self.settings,
            "targets": self.targets,
            "audits": self.audits,
        }


@dataclass
class _Target:
    index: int
    name: str
    mixture: dict[str, float]
    directory: Path
    sampler: ComponentConfig
    samples_dir: Path
    sample_key: str


class Scan:
    """One scan config over the installed plugins; :meth:`run` does the work."""

    def __init__(
        self,
        config: ScanConfig,
        registry: Registry | None = None,
        on_message: Callable[[str], None] = logger.info,
    ) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.scan_dir = Path(config.scan_dir)
        self.targets_dir = Path(config.targets_dir or config.scan_dir)
        self.counts = ScanCounts()
        self._say = on_message

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return resolve_taxonomy(self.config.taxonomy, self.registry)

    @cached_property
    def solvers(self) -> list[ComponentConfig]:
        """Return the configured solvers, or every installed one with default options."""
        if self.config.solvers is not None:
            return list(self.config.solvers)
        return [ComponentConfig(name=name) for name in self.registry.names("solver")]

    def _taxonomy_reference(self) -> str:
        """Return the config's taxonomy, a file path made absolute for the trainer's cache key."""
        path = Path(self.config.taxonomy).expanduser()
        if self.config.taxonomy.endswith((".yaml", ".yml")) and path.is_file():
            return str(path.resolve())
        return self.config.taxonomy

    def _audit_config(self, run_dir: Path, **values: Any) -> AuditConfig:
        return AuditConfig(
            taxonomy=self._taxonomy_reference(),
            reference=self.config.reference,
            calibrate=self.config.calibrate,
            bootstrap=self.config.bootstrap,
            run_dir=run_dir,
            **values,
        )

    def check(self) -> None:
        """Validate the mixtures, the target options and every component's options."""
        mixtures = scan_mixtures(self.config, self.taxonomy)
        self._training(mixtures[0])
        sampler = self._sampler_config(self.scan_dir)
        for classifier in self.config.classifiers:
            for solver in self.solvers:
                config = self._audit_config(
                    self.scan_dir, sampler=sampler, classifier=classifier, solver=solver
                )
                check_run(Run(config, self.registry))

    # Targets and samples

    def _training(self, mixture: dict[str, float]) -> TargetTraining:
        return TargetTraining.model_validate(
            {**self.config.target, "taxonomy": self._taxonomy_reference(), "mixture": mixture}
        )

    def _sampler_config(self, target_dir: Path) -> ComponentConfig:
        options = {"model": str(target_dir), **self.config.sampling.model_dump()}
        return ComponentConfig(name="hf", options=options)

    def _target(self, index: int, mixture: dict[str, float]) -> _Target:
        training = self._training(mixture)
        # NOTE: the key covers the taxonomy's fields, not the contents of its
        # source files, so regenerated reference text reuses the cached targets
        # until scan_dir/targets is deleted.
        target_key = _digest(
            {
                "taxonomy": self.taxonomy.model_dump(mode="json"),
                "training": training.model_dump(mode="json"),
                "format_version": TARGET_FORMAT_VERSION,
            }
        )
        name = mixture_run_name(index, mixture)
        directory = self.targets_dir / "targets" / f"{name}-{target_key}"
        sampler = self._sampler_config(directory)
        sample_key = _digest({"target": target_key, "sampling": sampler.options})
        samples_dir = self.targets_dir / "samples" / f"{name}-{sample_key}"
        return _Target(index, name, mixture, directory, sampler, samples_dir, sample_key)

    def _train(self, target: _Target) -> None:
        if (target.directory / TARGET_FILE).is_file():
            return
        self._say(f"training target {target.name}")
        train_target(self._training(target.mixture), target.directory)
        self.counts.trained += 1

    def _sample(self, target: _Target) -> None:
        config = self._audit_config(target.samples_dir, sampler=target.sampler)
        run = Run(config, self.registry)
        existing = len(read_samples(target.samples_dir / SAMPLES_FILE))
        if existing >= self.config.sampling.n_samples:
            return
        self._say(f"sampling target {target.name}")
        with run.locked():
            run.sample()
        self.counts.sampled += 1

    # Calibrations and audits

    def _calibrate(self, classifier: ComponentConfig, sampler: ComponentConfig) -> Path:
        """Return the calibration directory of ``classifier``, calibrating if it is not cached.

        The key covers ``sampler`` only in generation mode, so in reference
        mode every target shares one calibration.
        """
        probe = Run(
            self._audit_config(self.scan_dir, sampler=sampler, classifier=classifier),
            self.registry,
        )
        key = probe.calibration_key()
        run_dir = self.scan_dir / "calibrations" / f"{safe_name(classifier.name)}-{key}"
        directory = run_dir / "calibration"
        if not (directory / "calibration.json").is_file():
            self._say(f"calibrating classifier {classifier.name}")
            run = Run(
                self._audit_config(run_dir, sampler=sampler, classifier=classifier), self.registry
            )
            with run.locked():
                run.calibrate()
            self.counts.calibrated += 1
        return directory

    def _audit(
        self,
        target: _Target,
        classifier: ComponentConfig,
        solver: ComponentConfig,
        calibration: Path,
    ) -> dict[str, Any]:
        """Return the cached result of one audit, or run it on a copy of the target's samples."""
        key = _digest(
            {
                "samples": target.sample_key,
                "calibration": calibration.parent.name,
                "solver": solver.model_dump(mode="json"),
                "bootstrap": self.config.bootstrap.model_dump(mode="json"),
            }
        )
        label = f"{safe_name(classifier.name)}-{safe_name(solver.name)}-{key}"
        run_dir = self.scan_dir / "audits" / target.name / label
        result_path = run_dir / "result.json"
        if result_path.is_file():
            return json.loads(result_path.read_text(encoding="utf-8"))

        self._say(f"auditing target {target.name} with {classifier.name} and {solver.name}")
        run_dir.mkdir(parents=True, exist_ok=True)
        for file_name in (SAMPLES_FILE, SAMPLING_FILE):
            shutil.copyfile(target.samples_dir / file_name, run_dir / file_name)

        config = self._audit_config(
            run_dir,
            sampler=target.sampler,
            classifier=classifier,
            solver=solver,
            calibration=calibration,
            truth=target.mixture,
        )
        run = Run(config, self.registry)
        with run.locked():
            result = run.estimate()
        self.counts.solved += 1
        return result

    # Rows

    def _target_row(self, target: _Target) -> dict[str, Any]:
        info = json.loads((target.directory / TARGET_FILE).read_text(encoding="utf-8"))
        return {
            "model": target.name,
            "mixture": target.mixture,
            "first_token_mixture": info["first_token_mixture"],
            "final_loss": info["final_loss"],
            "n_parameters": info["n_parameters"],
            "tokens_trained": info["tokens_trained"],
            "training_seconds": info["seconds"],
        }

    def _audit_row(
        self, target: _Target, classifier: str, solver: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        truth = target.mixture
        row: dict[str, Any] = {
            "model": target.name,
            "classifier": classifier,
            "solver": solver,
            "truth": truth,
            "estimate": result["estimate"],
            "naive": result["naive"],
            "interval": result["interval"],
            "metrics": result["metrics"],
            "naive_metrics": result["naive_metrics"],
            "coverage": interval_coverage(result, truth),
            "n_samples": result["n_samples"],
        }
        generation = result["diagnostics"].get("generation")
        if generation:
            domains = list(truth)
            generated = np.array([generation["mixture"][d] for d in domains])
            row["generation"] = {
                "mixture": generation["mixture"],
                "tagged_samples": generation["tagged_samples"],
                "gap": compare_mixtures(generated, np.array([truth[d] for d in domains])),
                "estimate_vs_generated": {
                    k: generation[k] for k in ("overlap_accuracy", "mae", "r2", "kl")
                },
                "coverage": interval_coverage(result, generation["mixture"]),
            }
        return row

    def run(self) -> ScanResult:
        """Train, sample, calibrate and audit whatever the cache lacks, and return the rows."""
        self.check()
        mixtures = scan_mixtures(self.config, self.taxonomy)
        targets = [self._target(i, m) for i, m in enumerate(mixtures)]
        for target in targets:
            self._train(target)
            self._sample(target)
        audits = []
        for target in targets:
            for classifier in self.config.classifiers:
                calibration = self._calibrate(classifier, target.sampler)
                for solver in self.solvers:
                    result = self._audit(target, classifier, solver, calibration)
                    audits.append(self._audit_row(target, classifier.name, solver.name, result))
        return ScanResult(
            taxonomy=self.taxonomy.name,
            domains=self.taxonomy.domain_ids,
            targets=[self._target_row(t) for t in targets],
            audits=audits,
            counts=self.counts,
            solvers=[s.name for s in self.solvers],
            classifiers=[c.name for c in self.config.classifiers],
            settings=self.config.model_dump(mode="json", exclude={"quick"}),
        )

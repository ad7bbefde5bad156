"""The audit pipeline over one run directory: calibrate, sample, classify, solve, report."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from tqdm.auto import tqdm

from .calibration import Calibration, fit_calibration
from .components import Classifier, Sampler, Solver
from .config import AuditConfig, ComponentConfig, format_validation_error
from .corpus import build_reference_corpus
from .errors import ConfigError, RunDirectoryError, TaxonomyError
from .estimation import estimate_mixture
from .metrics import compare_mixtures
from .paths import cache_dir
from .registry import Registry, default_registry
from .report import build_result, write_report
from .sampling import decoding_diagnostics, draw_samples, read_samples
from .storage import atomic_write_json
from .taxonomy import Taxonomy, resolve_taxonomy

__all__ = ["Run", "check_run"]

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
SAMPLING_FILE = "sampling.json"
PREDICTIONS_FILE = "predictions.npz"
MANIFEST_FILE = "manifest.json"
CALIBRATION_DIR = "calibration"


def _read_json(path: Path) -> Any:
    """Read a JSON file of the run directory, naming the file if it is damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirectoryError(
            f"{str(path)!r} is damaged ({error}); restore it or delete it to redo its stage"
        ) from None


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Run:
    """One audit: a validated config, the installed plugins and a run directory."""

    def __init__(self, config: AuditConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.run_dir = Path(config.run_dir)

    # Components

    def _component_class(self, kind: str, component: ComponentConfig) -> type:
        return self.registry.get(kind, component.name).obj

    def _options(self, kind: str, component: ComponentConfig) -> Any:
        cls = self._component_class(kind, component)
        try:
            return cls.Options.model_validate(component.options)
        except ValidationError as error:
            raise ConfigError(
                format_validation_error(error, cls.Options, prefix=f"{kind}.options")
            ) from None

    def make_sampler(self) -> Sampler:
        cls = self._component_class("sampler", self.config.sampler)
        return cls(self._options("sampler", self.config.sampler))

    def make_classifier(self) -> Classifier:
        cls = self._component_class("classifier", self.config.classifier)
        return cls(self._options("classifier", self.config.classifier))

    def make_solver(self) -> Solver:
        cls = self._component_class("solver", self.config.solver)
        return cls(self._options("solver", self.config.solver))

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return resolve_taxonomy(self.config.taxonomy, self.registry)

    # Run directory

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory, or fail if another process does."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.run_dir / ".lock", "a+")
        except OSError as error:
            raise RunDirectoryError(
                f"cannot write run directory {str(self.run_dir)!r}: {error.strerror}; "
                "choose another run_dir"
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunDirectoryError(
                    f"run directory {str(self.run_dir)!r} is in use by another llmsurgeon "
                    "process; wait for it or choose another run_dir"
                ) from None
            yield

    def _update_manifest(self, stage: str, details: dict[str, Any]) -> None:
        path = self.run_dir / MANIFEST_FILE
        manifest = _read_json(path) if path.exists() else {}
        manifest["config"] = self.config.model_dump(mode="json")
        manifest["versions"] = self._versions()
        manifest.setdefault("stages", {})[stage] = {
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **details,
        }
        atomic_write_json(path, manifest)

    def _versions(self) -> dict[str, str | None]:
        versions: dict[str, str | None] = {"python": platform.python_version()}
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["llmsurgeon-core"] = metadata.version("llmsurgeon-core")
        for plugin in self.registry.plugins.values():
            if plugin.distribution:
                versions[plugin.distribution] = plugin.version
        return versions

    # Calibrate

    def calibration_key(self) -> str:
        """Return a digest of everything the calibration depends on."""
        return _digest(
            {
                "taxonomy": self.taxonomy.model_dump(mode="json"),
                "reference": self.config.reference.model_dump(mode="json"),
                "classifier": self.config.classifier.name,
                "options": self._options("classifier", self.config.classifier).model_dump(
                    mode="json"
                ),
            }
        )

    def _load_calibration(self, directory: Path) -> Calibration:
        def load_classifier(name: str, options: dict[str, Any], path: Path) -> Classifier:
            cls = self.registry.get("classifier", name).obj
            return cls.load(path, cls.Options.model_validate(options))

        calibration = Calibration.load(directory, load_classifier)
        if calibration.domains != self.taxonomy.domain_ids:
            raise RunDirectoryError(
                f"calibration {str(directory)!r} has domains {calibration.domains}, but taxonomy "
                f"{self.taxonomy.name!r} has {self.taxonomy.domain_ids}; calibrate again"
            )
        return calibration

    def calibrate(self) -> Calibration:
        """Return the run's calibration, fitting and saving it if there is none yet."""
        if self.config.calibration is not None:
            directory = Path(self.config.calibration)
            if not (directory / "calibration.json").exists():
                raise ConfigError(
                    f"config key 'calibration': {str(directory)!r} is not a calibration "
                    "directory; run `llmsurgeon calibrate` to create one"
                )
            _read_json(directory / "calibration.json")  # a damaged file is invalid input
            return self._load_calibration(directory)

        directory = self.run_dir / CALIBRATION_DIR
        key = self.calibration_key()
        if (directory / "calibration.json").exists():
            stored = _read_json(directory / "calibration.json").get("key")
            if stored == key:
                logger.info("reusing the calibration in %s", directory)
                return self._load_calibration(directory)
            raise RunDirectoryError(
                f"{str(directory)!r} was calibrated with another taxonomy, reference or "
                "classifier config; choose another run_dir or delete that directory"
            )

        reference = self.config.reference
        corpus = build_reference_corpus(
            self.taxonomy,
            max_per_domain=reference.max_per_domain,
            chunk_words=reference.chunk_words,
            seed=reference.seed,
            min_per_domain=reference.folds,
            max_chunks_per_document=reference.max_chunks_per_document,
        )
        options = self._options("classifier", self.config.classifier)
        metadata_ = {
            "key": key,
            "taxonomy": self.taxonomy.name,
            "corpus_digest": corpus.digest(),
            "reference": reference.model_dump(mode="json"),
            "classifier": {
                "name": self.config.classifier.name,
                "options": options.model_dump(mode="json"),
            },
            "mode": "reference",
        }
        with tqdm(total=reference.folds + 1, desc="calibrate", unit="fit") as bar:
            calibration = fit_calibration(
                self.make_classifier,
                corpus,
                reference.folds,
                reference.seed,
                metadata_,
                on_step=lambda _: bar.update(),
            )
        calibration.save(directory)
        self._update_manifest("calibrate", {"key": key, "reference_chunks": len(corpus.texts)})
        return calibration

    # Sample

    def sample(self) -> list[dict[str, Any]]:
        """Draw the samples that ``samples.jsonl`` still lacks and return all of them."""
        sampler = self.make_sampler()
        options = sampler.options.model_dump(mode="json")
        protocol_key = {k: v for k, v in options.items() if k != "n_samples"}
        sampling_path = self.run_dir / SAMPLING_FILE
        samples_path = self.run_dir / SAMPLES_FILE
        if sampling_path.exists():
            stored = _read_json(sampling_path)
            if stored["sampler"] != self.config.sampler.name or stored["options"] != protocol_key:
                changed = sorted(
                    k
                    for k in set(stored["options"]) | set(protocol_key)
                    if stored["options"].get(k) != protocol_key.get(k)
                )
                raise RunDirectoryError(
                    f"{str(samples_path)!r} was drawn with another sampler config (changed: "
                    f"{', '.join(changed) or 'sampler.name'}); choose another run_dir or "
                    "delete samples.jsonl and sampling.json"
                )
        stored_records = read_samples(samples_path)
        existing = len(stored_records)
        if existing >= sampler.n_samples:
            return stored_records[: sampler.n_samples]

        sampler.prepare(cache_dir())
        atomic_write_json(
            sampling_path,
            {
                "sampler": self.config.sampler.name,
                "options": protocol_key,
                "protocol": sampler.protocol(),
            },
        )
        seed = int(getattr(sampler.options, "seed", 0))
        with tqdm(total=sampler.n_samples, initial=existing, desc="sample", unit="sample") as bar:
            started = time.perf_counter()
            total_tokens = 0

            def on_batch(count: int, tokens: int) -> None:
                nonlocal total_tokens
                total_tokens += tokens
                bar.update(count)
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"{total_tokens / elapsed:.1f} tokens/s")

            records = draw_samples(sampler, samples_path, seed, on_batch)
        details: dict[str, Any] = {"n_samples": len(records), "drawn": len(records) - existing}
        usage = sampler.usage()
        if usage:
            # Counts only this process's requests, so a resumed run records
            # the usage of the samples it drew after the restart.
            details["usage"] = usage
        self._update_manifest("sample", details)
        return records

    # Classify and solve

    def classify(self, calibration: Calibration, records: list[dict[str, Any]]) -> np.ndarray:
        """Return ``(n, K)`` probabilities of the samples, cached beside them."""
        path = self.run_dir / PREDICTIONS_FILE
        key = _digest([calibration.metadata.get("key"), [r["text"] for r in records]])
        if path.exists():
            try:
                with np.load(path) as cached:
                    if str(cached["key"]) == key:
                        return cached["probs"]
            except (OSError, ValueError, KeyError) as error:
                # The file is only a cache, so a damaged one is computed again.
                logger.warning("recomputing the damaged prediction cache %s: %s", path, error)
        texts = [r["text"] for r in records]
        batches = [texts[i : i + 256] for i in range(0, len(texts), 256)]
        probs = [
            calibration.classifier.predict_proba(b)
            for b in tqdm(batches, desc="classify", unit="batch")
        ]
        result = np.vstack(probs) if probs else np.zeros((0, len(calibration.domains)))
        staging = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(staging, probs=result, key=np.array(key))
        os.replace(staging, path)
        return result

    def truth_vector(self) -> np.ndarray | None:
        """Return the known mixture named by ``truth``, in domain order, if any."""
        truth = self.config.truth
        if truth is None:
            return None
        if isinstance(truth, str):
            try:
                return np.asarray(self.taxonomy.recipe_vector(truth))
            except TaxonomyError as error:
                raise ConfigError(f"config key 'truth': {error}") from None
        unknown = sorted(set(truth) - set(self.taxonomy.domain_ids))
        if unknown:
            raise ConfigError(
                f"config key 'truth' names unknown domains {unknown}; "
                f"allowed: {', '.join(self.taxonomy.domain_ids)}"
            )
        vector = np.array([float(truth.get(d, 0.0)) for d in self.taxonomy.domain_ids])
        if not np.all(np.isfinite(vector)) or np.any(vector < 0):
            raise ConfigError(
                f"config key 'truth' must have finite, non-negative shares; got {dict(truth)}"
            )
        if vector.sum() <= 0:
            raise ConfigError("config key 'truth' must have at least one positive share")
        return vector / vector.sum()

    def _generation_diagnostics(
        self, records: list[dict[str, Any]], mixture: np.ndarray
    ) -> dict[str, Any] | None:
        tags = [r.get("metadata", {}).get("generated_domain") for r in records]
        domains = self.taxonomy.domain_ids
        known = [domains.index(t) for t in tags if t in domains]
        if not known:
            return None
        generated = np.bincount(known, minlength=len(domains)) / len(known)
        return {
            "mixture": dict(zip(domains, generated.tolist())),
            "tagged_samples": len(known),
            **compare_mixtures(mixture, generated),
        }

    def estimate(self) -> dict[str, Any]:
        """Classify the samples, solve for the mixture and write the report files."""
        sampler_options = self._options("sampler", self.config.sampler)
        records = read_samples(self.run_dir / SAMPLES_FILE)[: sampler_options.n_samples]
        if not records:
            raise RunDirectoryError(
                f"{str(self.run_dir / SAMPLES_FILE)!r} contains no samples; run `llmsurgeon sample`"
            )
        calibration = self.calibrate()
        probs = self.classify(calibration, records)
        bootstrap = self.config.bootstrap
        with tqdm(total=bootstrap.n_resamples, desc="bootstrap", unit="resample") as bar:
            estimate = estimate_mixture(
                self.make_solver(),
                calibration,
                probs,
                bootstrap.n_resamples,
                bootstrap.level,
                bootstrap.seed,
                on_resample=bar.update,
                merge=self.config.merge,
            )
        generation = self._generation_diagnostics(records, estimate.mixture)
        if generation:
            estimate.diagnostics["generation"] = generation
        estimate.diagnostics["decoding"] = decoding_diagnostics(self.make_sampler().decoding())
        if estimate.diagnostics["decoding"]["truncated"]:
            logger.warning(
                "the samples were drawn with truncated decoding (%s), which shifts the "
                "sampled mixture towards the model's most likely domains",
                "; ".join(estimate.diagnostics["decoding"]["reasons"]),
            )
        result = build_result(
            taxonomy=self.taxonomy.name,
            domains=calibration.domains,
            estimate=estimate,
            interval_level=bootstrap.level,
            solver=self.config.solver.name,
            classifier=calibration.metadata["classifier"]["name"],
            sampler=self.config.sampler.name,
            n_samples=len(records),
            truth=self.truth_vector(),
        )
        write_report(self.run_dir, result)
        self._update_manifest("estimate", {"n_samples": len(records)})
        return result

    def audit(self) -> dict[str, Any]:
        """Run every stage, reusing whatever the run directory already holds."""
        self.calibrate()
        self.sample()
        return self.estimate()


def check_run(run: Run) -> None:
    """Validate every part of the config that needs plugins, before any stage runs."""
    run.taxonomy  # noqa: B018 - resolving it raises on an invalid taxonomy
    run._options("sampler", run.config.sampler)
    run._options("classifier", run.config.classifier)
    run._options("solver", run.config.solver)
    run.truth_vector()

"""The audit pipeline over one run directory: calibrate, sample, classify, solve, report."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import inspect
import io
import json
import logging
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

from .calibration import (
    TAXONOMY_PARTS,
    Calibration,
    Continuations,
    fingerprint_changes,
    fit_calibration,
    generate_continuations,
    library_versions,
    taxonomy_fingerprint,
)
from .classifier_diagnostics import evaluate_classifier
from .components import Classifier, Sampler, Solver
from .config import AuditConfig, ComponentConfig, format_validation_error
from .corpus import ReferenceCorpus, build_reference_corpus
from .diagnostics import suggest_merge_groups
from .errors import ConfigError, RunDirectoryError, TaxonomyError
from .estimation import estimate_mixture, merge_domains
from .executors import Executor, SavedClassifier
from .html_report import ReportDetails, explore_samples
from .metrics import compare_mixtures
from .paths import cache_dir
from .registry import Registry, default_registry
from .report import build_result, write_report
from .sampling import decoding_diagnostics, draw_samples, read_samples
from .storage import atomic_write_bytes, atomic_write_json, remove_stale_temporaries
from .taxonomy import Taxonomy, resolve_taxonomy

__all__ = ["Run", "check_run"]

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
SAMPLING_FILE = "sampling.json"
PREDICTIONS_FILE = "predictions.npz"
MANIFEST_FILE = "manifest.json"
CALIBRATION_DIR = "calibration"

# Relative size of the smallest singular value of C below which it is treated as singular.
SINGULAR_TOLERANCE = 1e-10


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
        self._executor: Executor | None = None

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

    def make_executor(self) -> Executor:
        cls = self._component_class("executor", self.config.executor)
        return cls(self._options("executor", self.config.executor))

    @contextlib.contextmanager
    def executing(self) -> Iterator[Executor]:
        """Open the configured executor for the stages inside, or reuse the one already open.

        Stages nested in one ``executing`` block share the executor's workers,
        which it starts on first use and stops when the outer block ends.
        """
        if self._executor is not None:
            yield self._executor
            return
        with self.make_executor() as executor:
            self._executor = executor
            try:
                yield executor
            finally:
                self._executor = None

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
            for path in remove_stale_temporaries(self.run_dir):
                logger.info("removed %s, left by an interrupted run", path)
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

    def calibration_fingerprint(self) -> dict[str, Any]:
        """Return what the calibration depends on, part by part, to name what changed.

        The taxonomy counts by its leaf ids, sources and preprocessing only, so
        editing a description or a recipe keeps the calibration. Generation
        mode adds the sampler, whose target writes the continuations.
        """
        settings = self.config.calibrate
        calibrate = {"method": settings.method, "mode": settings.mode}
        if settings.mode == "generation":
            calibrate |= {
                "prompts_per_domain": settings.prompts_per_domain,
                "prefix_words": settings.prefix_words,
            }
        fingerprint = {
            **taxonomy_fingerprint(self.taxonomy),
            "reference": self.config.reference.model_dump(mode="json"),
            "classifier": {
                "name": self.config.classifier.name,
                "options": self._options("classifier", self.config.classifier).model_dump(
                    mode="json"
                ),
            },
            "calibrate": calibrate,
        }
        if settings.mode == "generation":
            options = self._options("sampler", self.config.sampler).model_dump(mode="json")
            options.pop("n_samples", None)
            fingerprint["sampler"] = {"name": self.config.sampler.name, "options": options}
        return fingerprint

    def calibration_key(self) -> str:
        """Return a digest of everything the calibration depends on."""
        return _digest(self.calibration_fingerprint())

    def _load_calibration(self, directory: Path) -> Calibration:
        trust_pickle = self.config.calibrate.trust_pickle

        def load_classifier(name: str, options: dict[str, Any], path: Path) -> Classifier:
            cls = self.registry.get("classifier", name).obj
            # A classifier that can read pickles takes a trust_pickle keyword.
            accepts_trust = "trust_pickle" in inspect.signature(cls.load).parameters
            extra = {"trust_pickle": True} if trust_pickle and accepts_trust else {}
            return cls.load(path, cls.Options.model_validate(options), **extra)

        calibration = Calibration.load(directory, load_classifier, trust_pickle=trust_pickle)
        self._check_reused_taxonomy(directory, calibration)
        _check_identifiable(calibration)
        return calibration

    def _check_reused_taxonomy(self, directory: Path, calibration: Calibration) -> None:
        """Raise if ``calibration`` was made for other domains or sources than the taxonomy's.

        Other settings of a reused calibration (reference, classifier,
        calibration map) may differ from the config's; the calibration's own
        are used, and a warning names them.
        """
        stored = calibration.metadata.get("fingerprint")
        if stored is None:
            # A format 1 calibration records its domains but no fingerprint.
            stored = {"domains": calibration.domains}
        current = self.calibration_fingerprint()
        parts = tuple(p for p in TAXONOMY_PARTS if p in stored)
        changed = fingerprint_changes(stored, current, parts)
        if changed:
            raise RunDirectoryError(
                f"calibration {str(directory)!r} does not fit taxonomy {self.taxonomy.name!r} "
                f"(changed: {', '.join(changed)}); calibrate again for this taxonomy"
            )
        others = tuple(p for p in stored if p not in TAXONOMY_PARTS)
        differences = fingerprint_changes(stored, current, others)
        if differences and self.config.calibration is not None:
            logger.warning(
                "the reused calibration %s was made with other settings (%s); its own are used",
                directory,
                ", ".join(differences),
            )

    def _calibration_metadata(self, key: str, corpus_digest: str) -> dict[str, Any]:
        """Return what ``calibration.json`` records beside the numbers."""
        fingerprint = self.calibration_fingerprint()
        options = self._options("classifier", self.config.classifier)
        return {
            "key": key,
            "fingerprint": fingerprint,
            "taxonomy": self.taxonomy.name,
            "taxonomy_digest": _digest({k: fingerprint[k] for k in TAXONOMY_PARTS}),
            "corpus_digest": corpus_digest,
            "reference": self.config.reference.model_dump(mode="json"),
            "classifier": {
                "name": self.config.classifier.name,
                "options": options.model_dump(mode="json"),
            },
            "method": self.config.calibrate.method,
            "mode": self.config.calibrate.mode,
            "versions": {**self._versions(), **library_versions()},
        }

    def _continuations(self, corpus: ReferenceCorpus) -> Continuations | None:
        """In generation mode, return the target's continuations of reference prefixes."""
        settings = self.config.calibrate
        if settings.mode != "generation":
            return None
        sampler = self.make_sampler()
        sampler.prepare(cache_dir())
        return generate_continuations(
            sampler,
            corpus,
            settings.prompts_per_domain,
            settings.prefix_words,
            self.config.reference.seed,
        )

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
            fingerprint = _read_json(directory / "calibration.json").get("fingerprint")
            changed = ["the format, written by an earlier version"]
            if fingerprint is not None:
                changed = fingerprint_changes(fingerprint, self.calibration_fingerprint())
            raise RunDirectoryError(
                f"{str(directory)!r} was calibrated with another config (changed: "
                f"{', '.join(changed) or 'key'}); choose another run_dir or delete that directory"
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
        settings = self.config.calibrate
        metadata_ = self._calibration_metadata(key, corpus.digest())
        continuations = self._continuations(corpus)
        if continuations is not None:
            metadata_["continuations"] = len(continuations.texts)
        with tqdm(total=reference.folds + 1, desc="calibrate", unit="fit") as bar:
            calibration = fit_calibration(
                self.make_classifier,
                corpus,
                reference.folds,
                reference.seed,
                metadata_,
                on_step=lambda _: bar.update(),
                method=settings.method,
                continuations=continuations,
            )
        calibration.save(directory)
        self._update_manifest("calibrate", {"key": key, "reference_chunks": len(corpus.texts)})
        _check_identifiable(calibration)
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

        with self.executing() as executor:
            atomic_write_json(
                sampling_path,
                {
                    "sampler": self.config.sampler.name,
                    "options": protocol_key,
                    "protocol": executor.prepare(sampler, cache_dir()),
                },
            )
            records = self._draw_samples(sampler, executor, existing)
            usage = executor.usage(sampler)
        details: dict[str, Any] = {"n_samples": len(records), "drawn": len(records) - existing}
        if usage:
            # Counts only this process's requests, so a resumed run records
            # the usage of the samples it drew after the restart.
            details["usage"] = usage
        self._update_manifest("sample", details)
        return records

    def _draw_samples(
        self, sampler: Sampler, executor: Executor, existing: int
    ) -> list[dict[str, Any]]:
        """Draw the missing samples through ``executor``, showing progress and tokens/s."""
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

            return draw_samples(sampler, self.run_dir / SAMPLES_FILE, seed, on_batch, executor)

    # Classify and solve

    def classify(self, calibration: Calibration, records: list[dict[str, Any]]) -> np.ndarray:
        """Return ``(n, K)`` probabilities of the samples, cached beside them."""
        path = self.run_dir / PREDICTIONS_FILE
        key = _digest([calibration.metadata.get("key"), [r["text"] for r in records]])
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as cached:
                    if str(cached["key"]) == key:
                        return cached["probs"]
            except (OSError, ValueError, KeyError) as error:
                # The file is only a cache, so a damaged one is computed again.
                logger.warning("recomputing the damaged prediction cache %s: %s", path, error)
        texts = [r["text"] for r in records]
        result = np.zeros((0, len(calibration.domains)))
        if texts:
            with self.executing() as executor:
                result = executor.predict_proba(self._saved_classifier(calibration), texts)
        result = calibration.apply_map(result)
        _check_finite(result, f"classifier {calibration.metadata['classifier']['name']!r}")
        buffer = io.BytesIO()
        np.savez(buffer, probs=result, key=np.array(key))
        atomic_write_bytes(path, buffer.getvalue())
        return result

    def _saved_classifier(self, calibration: Calibration) -> SavedClassifier:
        """Describe the calibration's classifier so that executor workers can load it."""
        directory = self.config.calibration or self.run_dir / CALIBRATION_DIR
        saved = calibration.metadata["classifier"]
        cls = self.registry.get("classifier", saved["name"]).obj
        return SavedClassifier(
            cls=cls,
            options=cls.Options.model_validate(saved["options"]),
            directory=Path(directory).absolute() / "classifier",
            loaded=calibration.classifier,
        )

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

    def check_samples_exist(self) -> None:
        """Raise ``RunDirectoryError`` if the run has no samples file.

        Call it before taking the run directory's lock, so that estimating
        from a mistyped run directory does not create that directory.
        """
        path = self.run_dir / SAMPLES_FILE
        if not path.is_file():
            raise RunDirectoryError(
                f"{str(path)!r} not found; run `llmsurgeon sample` first, or check run_dir"
            )

    def estimate(self) -> dict[str, Any]:
        """Classify the samples, solve for the mixture and write the report files."""
        sampler_options = self._options("sampler", self.config.sampler)
        records = read_samples(self.run_dir / SAMPLES_FILE)[: sampler_options.n_samples]
        if not records:
            raise RunDirectoryError(
                f"{str(self.run_dir / SAMPLES_FILE)!r} contains no samples; run `llmsurgeon sample`"
            )
        requested = sampler_options.n_samples  # None: every text the sampler has
        if requested is not None and len(records) < requested:
            logger.warning(
                "estimating from %d of the %d samples that sampler option n_samples requests; "
                "run `llmsurgeon sample` to draw the rest",
                len(records),
                requested,
            )
        if len(records) < len(self.taxonomy.domain_ids):
            raise ConfigError(
                f"{len(records)} samples for {len(self.taxonomy.domain_ids)} domains cannot "
                "determine a mixture; raise sampler option n_samples to at least one per "
                "domain, and to 20 per domain for useful intervals"
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
                pseudo_samples=bootstrap.pseudo_samples,
            )
        generation = self._generation_diagnostics(records, estimate.mixture)
        if generation:
            estimate.diagnostics["generation"] = generation
        estimate.diagnostics["classifier"] = _classifier_diagnostics(calibration)
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
        explorer = explore_samples(
            self.run_dir, calibration, self.taxonomy, records, probs, self.config.report
        )
        write_report(self.run_dir, result, ReportDetails(calibration.confusion, explorer))
        self._update_manifest("estimate", {"n_samples": len(records)})
        return result

    def audit(self) -> dict[str, Any]:
        """Run every stage, reusing whatever the run directory already holds."""
        with self.executing():
            self.calibrate()
            self.sample()
            return self.estimate()


def _check_finite(probs: np.ndarray, producer: str) -> None:
    """Raise if a classifier returned NaN or infinite probabilities."""
    bad_rows = int(np.sum(~np.all(np.isfinite(probs), axis=1)))
    if bad_rows:
        raise ConfigError(
            f"{producer} returned non-finite probabilities for {bad_rows} of {len(probs)} "
            "texts; check its options or choose another classifier"
        )


def _classifier_diagnostics(calibration: Calibration) -> dict[str, Any]:
    """Return ``diagnostics.classifier``: scores of the out-of-fold reference predictions."""
    probs, labels = calibration.reference_view
    continuations = None
    if calibration.reference_probs is not None:
        continuations = (calibration.oof_probs, calibration.labels)
    return evaluate_classifier(
        calibration.domains,
        probs,
        labels,
        calibration_method=calibration.method,
        mode=calibration.metadata.get("mode", "reference"),
        continuations=continuations,
    )


def _check_identifiable(calibration: Calibration) -> None:
    """Raise if the confusion matrix is singular, so no mixture is identifiable from it.

    A singular ``C`` maps several mixtures to the same mean prediction, and
    the solver would return an arbitrary one of them.
    """
    singular_values = np.linalg.svd(calibration.confusion, compute_uv=False)
    if singular_values[-1] > SINGULAR_TOLERANCE * singular_values[0]:
        return
    groups = suggest_merge_groups(calibration.domains, calibration.confusion)
    confused = "; ".join(", ".join(group) for group in groups) or ", ".join(calibration.domains)
    name = calibration.metadata.get("classifier", {}).get("name")
    raise ConfigError(
        f"the confusion matrix of classifier {name!r} is singular (smallest singular value "
        f"{singular_values[-1]:.2g}), so it cannot tell apart domains {confused}; merge them in "
        "the taxonomy, add reference texts that separate them, or choose another classifier"
    )


def check_run(run: Run) -> None:
    """Validate every part of the config that needs plugins, before any stage runs."""
    run.taxonomy  # noqa: B018 - resolving it raises on an invalid taxonomy
    run._options("sampler", run.config.sampler)
    run._options("classifier", run.config.classifier)
    run._options("solver", run.config.solver)
    if isinstance(run.config.merge, list):
        merge_domains(run.taxonomy.domain_ids, run.config.merge)
    run._options("executor", run.config.executor)
    run.truth_vector()
    cache_dir()  # raises now, not after hours of work, when the cache path is a file

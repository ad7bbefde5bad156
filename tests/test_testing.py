"""The conformance checks of ``llmsurgeon_core.testing`` catch broken components."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmsurgeon_core import GeneratedText, Sampler, Solver, SolveResult
from llmsurgeon_core.testing import (
    ConformanceError,
    check_sampler,
    check_solver,
    check_taxonomy,
)


class UnnormalizedSolver(Solver):
    def solve(self, confusion, sample_probs, reference_priors, reference=None):
        return SolveResult(np.asarray(sample_probs).sum(axis=0))


class ShapeBlindSolver(Solver):
    def solve(self, confusion, sample_probs, reference_priors, reference=None):
        k = np.asarray(confusion).shape[0]
        return SolveResult(np.full(k, 1.0 / k))


class UnseededSampler(Sampler):
    """Draws from a generator that ignores the request, so a regenerated batch differs."""

    def __init__(self, options):
        super().__init__(options)
        self.rng = np.random.default_rng()

    @property
    def n_samples(self) -> int:
        return 7

    @property
    def batch_size(self) -> int:
        return 3

    def generate(self, request):
        return [GeneratedText("", str(self.rng.random()), 1, "length") for _ in request.indices]


def test_solver_check_rejects_unnormalized_mixture():
    with pytest.raises(ConformanceError, match="expected 1 within"):
        check_solver(UnnormalizedSolver)


def test_solver_check_rejects_missing_shape_checks():
    with pytest.raises(ConformanceError, match="expected ValueError"):
        check_solver(ShapeBlindSolver)


def test_sampler_check_rejects_unseeded_sampler(tmp_path):
    sampler = UnseededSampler(UnseededSampler.Options())

    with pytest.raises(ConformanceError, match="different texts"):
        check_sampler(sampler, tmp_path)


def test_taxonomy_check_accepts_demo():
    taxonomy = check_taxonomy("demo")

    assert taxonomy.name == "demo"


def test_importing_kit_adds_no_heavy_modules():
    code = (
        "import sys\n"
        "import llmsurgeon_core\n"
        "before = set(sys.modules)\n"
        "import llmsurgeon_core.testing\n"
        "print(','.join(sorted(set(sys.modules) - before)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    added = {name for name in output.strip().split(",") if name}
    third_party = {
        name
        for name in added
        if name.split(".")[0] not in sys.stdlib_module_names and name != "llmsurgeon_core.testing"
    }
    assert third_party == set()

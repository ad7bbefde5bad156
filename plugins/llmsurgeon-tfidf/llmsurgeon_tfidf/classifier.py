"""A TF-IDF and logistic-regression domain classifier built on scikit-learn.

scikit-learn (and joblib, for directories of the old pickle format) are
imported by the methods that need them, so registering the classifier does
not load them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from llmsurgeon_core import Classifier, ComponentOptions
from llmsurgeon_core.classifier_checks import (
    check_labels,
    check_texts,
    read_saved_metadata,
    warn_on_changed_options,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["TOKEN_PATTERN", "TfidfClassifier", "TfidfOptions"]

logger = logging.getLogger(__name__)

# Words and identifiers, plus every punctuation character as a token of its own.
# scikit-learn's default pattern drops punctuation and one-character words, but
# operators and brackets tell code from prose. In the core's 5-fold cross-fit on
# the demo taxonomy (2,449 chunks of 40 words, default options), this pattern
# lowered the out-of-fold log loss from 0.110 to 0.097 at equal accuracy (0.976).
# Without character n-grams it raised the accuracy from 0.964 to 0.969.
TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"

# Parts of the errors that scikit-learn's vectorizers raise when min_df or
# the training texts leave no terms (checked against scikit-learn 1.9).
_EMPTY_VOCABULARY_MESSAGES = (
    "no terms remain",
    "empty vocabulary",
    "max_df corresponds to < documents than min_df",
)

MODEL_FILE = "model.npz"
VOCABULARY_FILE = "vocabulary.json"
METADATA_FILE = "classifier.json"
SAVE_FORMAT = 2
# Format 1 stored the fitted pipeline as a joblib pickle.
PICKLE_FORMAT = 1
LEGACY_MODEL_FILE = "model.joblib"


class TfidfOptions(ComponentOptions):
    """Options of the ``tfidf`` classifier."""

    word_ngrams: tuple[int, int] = Field(
        (1, 2),
        description="Minimum and maximum length, in tokens, of the word n-grams.",
    )
    char_ngrams: tuple[int, int] | None = Field(
        (2, 4),
        description=(
            "Minimum and maximum length, in characters, of the character n-grams taken "
            "inside word boundaries (scikit-learn's char_wb analyzer); null disables them."
        ),
    )
    # 5,000 to 50,000 terms per vectorizer gave out-of-fold accuracies within 0.2
    # points of each other on the demo taxonomy. Fewer terms make the logistic
    # regression faster, and 10,000 leaves room for taxonomies with more domains.
    max_features: int = Field(
        10_000,
        ge=1,
        description=(
            "Maximum vocabulary size of each vectorizer (word and character), keeping the "
            "most frequent terms."
        ),
    )
    min_df: int = Field(
        2,
        ge=1,
        description="Minimum number of training texts a term must occur in to be kept.",
    )
    # C = 10 trades a little fit to the reference texts for robustness on generated
    # text. On the demo taxonomy, C = 30 lowered the out-of-fold log loss from 0.097
    # to 0.081 at equal accuracy, and demo audits scored about the same overlap
    # accuracy (0.954 to 0.958) for C from 3 to 100. On samples of a 1-layer target
    # trained on 120k tokens, whose text is far from the reference texts, the
    # overlap accuracy fell from 0.761 (C = 3) to 0.750 (C = 10) and 0.739 (C = 30),
    # averaged over three sampling seeds.
    C: float = Field(
        10.0,
        gt=0,
        description="Inverse L2 regularization strength of the logistic regression.",
    )
    max_iter: int = Field(
        1000,
        ge=1,
        description="Maximum number of L-BFGS iterations of the logistic regression.",
    )
    class_weight: Literal["balanced"] | None = Field(
        None,
        description=(
            "'balanced' weights each domain inversely to its number of training texts; "
            "null weights every text equally."
        ),
    )
    lowercase: bool = Field(True, description="Lowercase texts before extracting n-grams.")

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _check_ngram_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(
                f"an n-gram range must be (min, max) with 1 <= min <= max, got {list(value)}"
            )
        return value


class TfidfClassifier(Classifier):
    """Word and character TF-IDF features with a multinomial logistic regression.

    Attributes set by :meth:`fit`:
        classes_: the labels present in the training data, sorted.
        n_classes_: the number of columns of :meth:`predict_proba`.
        pipeline_: the fitted scikit-learn pipeline, or None when the training
            data contains a single class (every text then gets that class).
    """

    Options = TfidfOptions

    def build_pipeline(self) -> Pipeline:
        """Build the unfitted scikit-learn pipeline that the options describe."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        options: TfidfOptions = self.options  # type: ignore[assignment]
        vectorizers = [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=options.word_ngrams,
                    lowercase=options.lowercase,
                    max_features=options.max_features,
                    min_df=options.min_df,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            )
        ]
        if options.char_ngrams is not None:
            vectorizers.append(
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=options.char_ngrams,
                        lowercase=options.lowercase,
                        max_features=options.max_features,
                        min_df=options.min_df,
                        sublinear_tf=True,
                        dtype=np.float32,
                    ),
                )
            )
        # On fixed features of the demo taxonomy's 2,449 chunks, a 5-fold
        # cross-validation of this model took 2.8 s with L-BFGS and 14.2 s with saga
        # at equal accuracy (scikit-learn 1.9.1, 2 CPU cores).
        model = LogisticRegression(
            C=options.C,
            max_iter=options.max_iter,
            class_weight=options.class_weight,
            solver="lbfgs",
        )
        return Pipeline([("features", FeatureUnion(vectorizers)), ("model", model)])

    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> TfidfClassifier:
        """Fit on ``texts`` with integer ``labels`` in ``[0, n_classes)``.

        Raises:
            ValueError: if the labels do not match the texts, fall outside the
                range, or the vocabulary is empty after ``min_df`` pruning.
            TypeError: if a text is not a string.
        """
        texts = check_texts(texts)
        labels = check_labels(labels, len(texts), n_classes, "tfidf")
        self.n_classes_ = int(n_classes)
        self.classes_ = np.unique(labels)
        if len(self.classes_) == 1:
            # LogisticRegression rejects a single class, and every text gets that class.
            self.pipeline_ = None
            return self
        pipeline = self.build_pipeline()
        try:
            pipeline.fit(texts, labels)
        except ValueError as error:
            message = str(error)
            if any(phrase in message for phrase in _EMPTY_VOCABULARY_MESSAGES):
                raise ValueError(
                    f"tfidf found no terms in {len(texts)} training texts with min_df="
                    f"{self.options.min_df}; lower min_df or provide more reference text"
                ) from error
            raise
        self.pipeline_ = pipeline
        return self

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """Return a float64 ``(n_texts, n_classes)`` array whose rows sum to 1.

        Classes absent from the training data get probability 0.
        """
        if not hasattr(self, "classes_"):
            raise RuntimeError("the tfidf classifier is not fitted; call fit() first")
        texts = check_texts(texts)
        probabilities = np.zeros((len(texts), self.n_classes_), dtype=np.float64)
        if not texts:
            return probabilities
        if self.pipeline_ is None:
            probabilities[:, self.classes_[0]] = 1.0
            return probabilities
        fitted = self.pipeline_.predict_proba(texts).astype(np.float64)
        probabilities[:, self.classes_] = fitted
        # The model computes in float32, so the rows are renormalized in float64 to
        # sum to 1 within float64 rounding.
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities

    def embed(self, texts: Iterable[str]) -> Any:
        """Return the sparse ``(n_texts, n_terms)`` TF-IDF features the model reads.

        The word and character blocks are each L2-normalized, so cosine
        similarity weighs them equally. A classifier fitted on a single class
        has no features and returns :meth:`predict_proba` instead.
        """
        if getattr(self, "pipeline_", None) is None:
            return self.predict_proba(texts)
        return self.pipeline_.named_steps["features"].transform(check_texts(texts))

    def save(self, directory: Path) -> None:
        """Write ``classifier.json``, ``vocabulary.json`` and ``model.npz`` into ``directory``.

        The files contain plain JSON and numeric arrays, so loading them runs no
        code: the vocabularies, the inverse document frequencies and the
        logistic regression's coefficients.
        """
        import sklearn

        if not hasattr(self, "classes_"):
            raise RuntimeError("the tfidf classifier is not fitted; call fit() before save()")
        directory = Path(directory)
        arrays: dict[str, np.ndarray] = {"classes": self.classes_}
        vocabularies: dict[str, list[str]] = {}
        if self.pipeline_ is not None:
            for name, vectorizer in self.pipeline_.named_steps["features"].transformer_list:
                vocabularies[name] = _ordered_terms(vectorizer.vocabulary_)
                arrays[f"idf_{name}"] = vectorizer.idf_
            model = self.pipeline_.named_steps["model"]
            arrays["coef"] = model.coef_
            arrays["intercept"] = model.intercept_
        np.savez(directory / MODEL_FILE, **arrays)
        (directory / VOCABULARY_FILE).write_text(json.dumps(vocabularies) + "\n")
        metadata = {
            "format": SAVE_FORMAT,
            "options": self.options.model_dump(mode="json"),
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "sklearn_version": sklearn.__version__,
        }
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")

    @classmethod
    def load(
        cls, directory: Path, options: ComponentOptions, *, trust_pickle: bool = False
    ) -> TfidfClassifier:
        """Read a classifier that :meth:`save` wrote into ``directory``.

        The returned classifier carries the options it was fitted with. If they
        differ from ``options``, a warning lists the differences. Format 1
        directories contain a joblib pickle, and unpickling runs code that the
        file names, so they are read only with ``trust_pickle``.

        Raises:
            FileNotFoundError: if a file is missing.
            ValueError: if ``classifier.json`` is invalid or of another format,
                or the directory holds a pickle and ``trust_pickle`` is false.
        """
        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        metadata = read_saved_metadata(
            metadata_path, (PICKLE_FORMAT, SAVE_FORMAT), "llmsurgeon-tfidf"
        )
        try:
            saved_options = cls.Options.model_validate(metadata["options"])
        except (KeyError, ValidationError) as error:
            raise ValueError(f"{metadata_path} has invalid options: {error}") from None
        _warn_on_differences(saved_options, options, metadata.get("sklearn_version"))
        classifier = cls(saved_options)
        if metadata["format"] == PICKLE_FORMAT:
            classifier._restore_pickle(directory, trust_pickle)
        else:
            classifier._restore_arrays(directory, int(metadata["n_classes"]))
        return classifier

    def _restore_arrays(self, directory: Path, n_classes: int) -> None:
        """Rebuild the fitted pipeline from ``model.npz`` and ``vocabulary.json``."""
        with np.load(directory / MODEL_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        vocabularies = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        self.classes_ = arrays["classes"].astype(np.int64)
        self.n_classes_ = n_classes
        if "coef" not in arrays:
            self.pipeline_ = None
            return
        pipeline = self.build_pipeline()
        for name, vectorizer in pipeline.named_steps["features"].transformer_list:
            vectorizer.vocabulary_ = {term: i for i, term in enumerate(vocabularies[name])}
            vectorizer.idf_ = arrays[f"idf_{name}"]
        model = pipeline.named_steps["model"]
        model.classes_ = self.classes_
        model.coef_ = arrays["coef"]
        model.intercept_ = arrays["intercept"]
        model.n_features_in_ = model.coef_.shape[1]
        self.pipeline_ = pipeline

    def _restore_pickle(self, directory: Path, trust_pickle: bool) -> None:
        """Read a format 1 directory, whose ``model.joblib`` is a pickle."""
        path = directory / LEGACY_MODEL_FILE
        if not trust_pickle:
            raise ValueError(
                f"{path} is a pickle, and loading it can run any code; calibrate again to "
                "write the safe format, or set calibrate.trust_pickle: true if you trust the file"
            )
        import joblib

        state = joblib.load(path)
        self.pipeline_ = state["pipeline"]
        self.classes_ = np.asarray(state["classes"])
        self.n_classes_ = int(state["n_classes"])


def _ordered_terms(vocabulary: dict[str, int]) -> list[str]:
    """Return the terms of a vectorizer's vocabulary in column order."""
    terms = [""] * len(vocabulary)
    for term, index in vocabulary.items():
        terms[index] = term
    return terms


def _warn_on_differences(
    saved: ComponentOptions, requested: ComponentOptions, sklearn_version: str | None
) -> None:
    import sklearn

    warn_on_changed_options(saved, requested, "tfidf", logger)
    if sklearn_version != sklearn.__version__:
        logger.warning(
            "the saved tfidf classifier was written by scikit-learn %s and is read by %s; "
            "its predictions may differ. Calibrate again if results look wrong.",
            sklearn_version,
            sklearn.__version__,
        )

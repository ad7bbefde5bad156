"""The ``hf`` sampler: ancestral sampling from a Hugging Face causal language model.

torch and transformers are imported in :meth:`HFSampler.prepare` and the
methods after it, so registering the sampler does not load them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.version import Version
from pydantic import Field, model_validator

from llmsurgeon_core import ComponentOptions, ConfigError, GeneratedText, Sampler, SampleRequest

from .train import TARGET_FILE, OutputExistsError, TargetTraining, target_cache_key, train_target

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DEFAULT_NEUTRAL_PROMPTS", "HFSampler", "HFSamplerOptions"]

logger = logging.getLogger(__name__)

# Whitespace-only openings: each starts a document without leaning towards a
# domain. The empty prompt makes the start token the whole prompt.
DEFAULT_NEUTRAL_PROMPTS = ("", "\n", "\n\n", " ")


class HFSamplerOptions(ComponentOptions):
    """Options of the ``hf`` sampler."""

    model: str | None = Field(
        None,
        description="Local model directory or Hugging Face Hub id, loaded with "
        "AutoModelForCausalLM and AutoTokenizer.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Run the Python code that a model repository ships for its model or "
        "tokenizer class. That code runs with your permissions, so turn this on only for a "
        "repository you trust.",
    )
    train: TargetTraining | None = Field(
        None,
        description="Train a small GPT-2 target with a known mixture in place of `model`; "
        "the target is cached under the cache directory and reused.",
    )
    n_samples: int = Field(1000, ge=1, description="Number of texts to draw.")
    max_new_tokens: int = Field(64, ge=1, description="Maximum number of tokens per text.")
    batch_size: int = Field(32, ge=1, description="Number of texts generated together.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature.")
    top_k: int = Field(
        0, ge=0, description="Sample from the k most likely tokens only; 0 keeps all."
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Sample from the smallest set of tokens whose probability reaches p; "
        "1 keeps all.",
    )
    seed: int = Field(
        0,
        description="Sampling seed; the audit passes it as the seed of every request, and "
        "each batch derives its random state from it and its first sample index.",
    )
    prompt: Literal["bos", "neutral"] = Field(
        "bos",
        description="'bos' starts every text from the start token alone; 'neutral' "
        "appends a prompt from `prompts` to it.",
    )
    prompts: list[str] = Field(
        default_factory=list,
        description="Neutral prompts, cycled by sample index when prompt is 'neutral'; "
        "empty uses whitespace openings (empty, newline, blank line, space).",
    )
    prompts_file: str | None = Field(
        None,
        description="File of prompts used in place of `prompts`: one per line, or for a .jsonl "
        "file one JSON string or object with a 'prompt' key per line.",
    )
    revision: str | None = Field(
        None,
        description="Hub revision (branch, tag or commit) of `model`, to audit one training "
        "checkpoint; ignored for a local directory.",
    )
    device: str = Field(
        "cpu",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="Torch device: cpu, cuda, cuda:N, mps, or auto (cuda when available).",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "float32",
        description="Weight dtype; 'auto' uses the dtype stored with the model.",
    )

    @model_validator(mode="after")
    def _check_source(self) -> HFSamplerOptions:
        if (self.model is None) == (self.train is None):
            raise ValueError(
                "set exactly one of model (a model directory or hub id) and train "
                "(options of a target to train)"
            )
        if (self.prompts or self.prompts_file) and self.prompt != "neutral":
            raise ValueError("prompts are set but prompt is 'bos'; set prompt to 'neutral'")
        if self.prompts and self.prompts_file:
            raise ValueError("set at most one of prompts and prompts_file")
        if self.revision is not None and self.model is None:
            raise ValueError("revision is set but model is not; a trained target has none")
        return self


class HFSampler(Sampler):
    """Draws texts from a transformers causal language model, or from a trained target.

    The sampler replaces the model's own ``generation_config`` sampling
    settings (repetition penalties, top-k and the like) with its options, so
    that texts come from the model's distribution as the options define it.
    """

    Options = HFSamplerOptions
    options: HFSamplerOptions

    def __init__(self, options: HFSamplerOptions) -> None:
        super().__init__(options)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model_path: str | None = options.model
        self._device: str | None = None
        self._start_id: int | None = None
        self._pad_id: int | None = None
        self._eos_ids: set[int] = set()
        self._target: dict[str, Any] | None = None
        self._domain_by_token_id: dict[int, str] = {}
        self._prompts: tuple[str, ...] = tuple(options.prompts) or DEFAULT_NEUTRAL_PROMPTS

    @property
    def n_samples(self) -> int:
        return self.options.n_samples

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def model(self) -> PreTrainedModel | None:
        """The loaded model, or None before :meth:`prepare`."""
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None:
        """The loaded tokenizer, or None before :meth:`prepare`."""
        return self._tokenizer

    def prepare(self, cache_dir: Path) -> None:
        """Load the model and tokenizer, training the target first if it is not cached."""
        if self.options.train is not None:
            self._model_path = str(self._cached_target(Path(cache_dir), self.options.train))
        assert self._model_path is not None  # guaranteed by HFSamplerOptions._check_source
        if self.options.prompts_file is not None:
            self._prompts = read_prompts_file(Path(self.options.prompts_file))
        self._load(self._model_path)

    def _cached_target(self, cache_dir: Path, training: TargetTraining) -> Path:
        directory = cache_dir / "targets" / target_cache_key(training)
        if (directory / TARGET_FILE).is_file():
            logger.info("using the cached target %s", directory)
            return directory
        logger.info("training a target into %s", directory)
        try:
            train_target(training, directory)
        except OutputExistsError:
            if not (directory / TARGET_FILE).is_file():
                raise
            logger.info("another process saved the target %s first; using it", directory)
        return directory

    def _load(self, path: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self._resolve_device()
        try:
            revision = {} if self.options.revision is None else {"revision": self.options.revision}
            trusted = self.options.trust_remote_code
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trusted, **revision)
            model = AutoModelForCausalLM.from_pretrained(
                path, trust_remote_code=trusted, **revision, **_dtype_argument(self.options.dtype)
            )
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"failed to load model {path!r}: {error}; set sampler option model to a local "
                "model directory or a Hugging Face Hub id that can be downloaded"
            ) from error
        model.to(device)
        model.eval()
        self._set_special_ids(tokenizer, model, path)
        self._target = _read_target_file(path)
        if self._target is not None:
            self._domain_by_token_id = _domain_token_ids(self._target, tokenizer, path)
        self._model, self._tokenizer, self._device = model, tokenizer, device
        logger.info(
            "loaded %s on %s (%s, %d parameters)",
            path,
            device,
            model.dtype,
            sum(p.numel() for p in model.parameters()),
        )

    def _resolve_device(self) -> str:
        import torch

        device = self.options.device
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} is set but torch finds no CUDA device; "
                "set sampler option device to 'cpu' or 'auto'"
            )
        return device

    def _set_special_ids(
        self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, path: str
    ) -> None:
        """Find the start, padding and end tokens, and reset the generation config."""
        from transformers import GenerationConfig

        loaded = model.generation_config
        eos = loaded.eos_token_id if loaded.eos_token_id is not None else tokenizer.eos_token_id
        if isinstance(eos, list):
            self._eos_ids = set(eos)
        elif eos is not None:
            self._eos_ids = {eos}
        else:
            self._eos_ids = set()
        start = tokenizer.bos_token_id
        if start is None:
            start = tokenizer.eos_token_id
        if start is None:
            raise ConfigError(
                f"the tokenizer of model {path!r} has neither a bos nor an eos token to start "
                "texts from; use a model whose tokenizer defines one"
            )
        self._start_id = start
        # Left padding is masked out, so any token can pad; GPT-2 pads with its eos.
        self._pad_id = tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = min(self._eos_ids) if self._eos_ids else start
        # A fresh config drops sampling settings stored with the model, because
        # generate() fills every argument left unset from the model's config.
        model.generation_config = GenerationConfig(
            bos_token_id=loaded.bos_token_id,
            eos_token_id=eos,
            pad_token_id=self._pad_id,
        )

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        """Return one text per index of ``request``, in order.

        The random state depends only on ``request.seed`` and
        ``request.indices[0]``, so a batch generated again with the same
        options is identical on CPU.
        """
        import torch

        if self._model is None:
            raise RuntimeError("HFSampler.generate() called before prepare()")
        prompts = [self._prompt_for(index) for index in request.indices]
        texts: list[GeneratedText] = []
        devices = [torch.device(self._device).index or 0] if self._device.startswith("cuda") else []
        # NOTE: CUDA sampling kernels are not guaranteed to be bitwise
        # deterministic, so on a GPU a regenerated batch can differ.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_batch_seed(request))
            for start in range(0, len(prompts), self.options.batch_size):
                texts.extend(self._generate_batch(prompts[start : start + self.options.batch_size]))
        return texts

    def continue_prompts(
        self, prompts: Sequence[str], seed: int, domains: Sequence[str] | None = None
    ) -> list[GeneratedText]:
        """Return the model's continuation of each prompt, decoded without the prompt.

        Each prompt follows the start token, and decoding uses the sampler's
        options, as in :meth:`generate`. A target built by ``train-target``
        saw every training text after its domain token, so with ``domains``
        that token of the prompt's domain goes between the start token and the
        prompt. The model is given only the last tokens of a prompt too long
        for its context with ``max_new_tokens`` more. The random state depends
        only on ``seed``, so the same prompts give the same continuations on CPU.
        """
        import torch

        if self._model is None:
            raise RuntimeError("HFSampler.continue_prompts() called before prepare()")
        prompts = list(prompts)
        leads = self._domain_leads(domains, len(prompts))
        room = self._prompt_room()
        texts: list[GeneratedText] = []
        devices = [torch.device(self._device).index or 0] if self._device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_batch_seed(SampleRequest(indices=[-1], seed=seed)))
            for start in range(0, len(prompts), self.options.batch_size):
                end = start + self.options.batch_size
                texts.extend(self._generate_batch(prompts[start:end], room, leads[start:end]))
        return texts

    def _domain_leads(self, domains: Sequence[str] | None, count: int) -> list[list[int]]:
        """Return, per prompt, the target's token of its domain, or no token."""
        if domains is None or not self._domain_by_token_id:
            return [[] for _ in range(count)]
        if len(domains) != count:
            raise ValueError(f"got {len(domains)} domains for {count} prompts; pass one per prompt")
        token_by_domain = {domain: token for token, domain in self._domain_by_token_id.items()}
        return [[token_by_domain[d]] if d in token_by_domain else [] for d in domains]

    def _prompt_room(self) -> int | None:
        """Return how many prompt tokens fit the context beside the start and new tokens."""
        context = getattr(self._model.config, "max_position_embeddings", None)
        if context is None:
            return None
        room = context - 1 - self.options.max_new_tokens
        if room < 1:
            raise ConfigError(
                f"max_new_tokens {self.options.max_new_tokens} leaves no room for a prompt in "
                f"the model's context of {context} tokens; lower sampler option max_new_tokens"
            )
        return room

    def _prompt_for(self, index: int) -> str:
        if self.options.prompt == "bos":
            return ""
        return self._prompts[index % len(self._prompts)]

    def _generate_batch(
        self,
        prompts: list[str],
        max_prompt_tokens: int | None = None,
        lead_tokens: list[list[int]] | None = None,
    ) -> list[GeneratedText]:
        import torch

        input_ids, attention_mask = self._encode_prompts(prompts, max_prompt_tokens, lead_tokens)
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=True,
                temperature=self.options.temperature,
                top_k=self.options.top_k,
                top_p=self.options.top_p,
                max_new_tokens=self.options.max_new_tokens,
                pad_token_id=self._pad_id,
            )
        new_tokens = output[:, input_ids.shape[1] :].tolist()
        return [
            self._to_text(prompt, tokens)
            for prompt, tokens in zip(prompts, new_tokens, strict=True)
        ]

    def _encode_prompts(
        self,
        prompts: list[str],
        max_prompt_tokens: int | None = None,
        lead_tokens: list[list[int]] | None = None,
    ) -> tuple[Any, Any]:
        """Return left-padded ``(batch, length)`` input ids and attention mask.

        ``lead_tokens`` go right after each row's start token. With
        ``max_prompt_tokens``, a row keeps its lead tokens and as many of its
        prompt's last tokens as fit beside them in that budget.
        """
        import torch

        leads = lead_tokens or [[] for _ in prompts]
        rows = []
        for prompt, lead in zip(prompts, leads, strict=True):
            tokens = self._tokenizer.encode(prompt, add_special_tokens=False)
            if max_prompt_tokens is not None:
                keep = max(max_prompt_tokens - len(lead), 0)
                tokens = tokens[max(len(tokens) - keep, 0) :]
            rows.append([self._start_id, *lead, *tokens])
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, length - len(row) :] = 1
        return input_ids.to(self._device), attention_mask.to(self._device)

    def _to_text(self, prompt: str, tokens: list[int]) -> GeneratedText:
        """Cut ``tokens`` at the first end token and decode them.

        ``n_tokens`` counts the generated tokens up to and including that end
        token, the domain token of a trained target included.
        """
        end = next((i for i, token in enumerate(tokens) if token in self._eos_ids), None)
        if end is None:
            finish_reason, n_tokens = "length", len(tokens)
        else:
            finish_reason, n_tokens = "eos", end + 1
            tokens = tokens[:end]
        sample_metadata: dict[str, Any] = {}
        if self._target is not None:
            first = tokens[0] if tokens else None
            sample_metadata["generated_domain"] = self._domain_by_token_id.get(first)
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        return GeneratedText(prompt, text, n_tokens, finish_reason, sample_metadata)

    def protocol(self) -> dict[str, Any]:
        """Return the options, the model path, the library versions and a target's mixture."""
        protocol = super().protocol()
        protocol["model_path"] = self._model_path
        protocol["device_resolved"] = self._device
        protocol["torch"] = metadata.version("torch")
        protocol["transformers"] = metadata.version("transformers")
        if self.options.prompt == "neutral":
            protocol["prompts_used"] = list(self._prompts)
        if self._target is not None:
            protocol["target"] = {
                key: self._target.get(key)
                for key in ("taxonomy", "mixture", "mixture_trained", "first_token_mixture")
            }
        return protocol


def read_prompts_file(path: Path) -> tuple[str, ...]:
    """Read prompts from a text file (one per line) or a JSONL file of strings or objects.

    Raises:
        ConfigError: if the file is missing, malformed or contains no prompt.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read sampler option prompts_file {str(path)!r}: {error}; "
            "set it to a UTF-8 text or JSONL file"
        ) from None
    if path.suffix.lower() != ".jsonl":
        prompts = tuple(lines)
    else:
        prompts = tuple(
            _jsonl_prompt(line, path, number)
            for number, line in enumerate(lines, start=1)
            if line.strip()
        )
    if not prompts:
        raise ConfigError(f"sampler option prompts_file {str(path)!r} contains no prompts")
    return prompts


def _jsonl_prompt(line: str, path: Path, number: int) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        value = value.get("prompt")
    if not isinstance(value, str):
        raise ConfigError(
            f"{str(path)!r} line {number} is neither a JSON string nor an object with a "
            "string 'prompt'; fix that line"
        )
    return value


def _batch_seed(request: SampleRequest) -> int:
    """Derive a 63-bit torch seed from the seed and the first index of ``request``."""
    text = f"{request.seed}:{request.indices[0]}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _dtype_argument(dtype: str) -> dict[str, Any]:
    """Return the ``from_pretrained`` keyword that sets the weight dtype.

    transformers 4.56 renamed ``torch_dtype`` to ``dtype``.
    """
    import torch
    import transformers

    value: Any = dtype if dtype == "auto" else getattr(torch, dtype)
    if Version(transformers.__version__) >= Version("4.56"):
        return {"dtype": value}
    return {"torch_dtype": value}


def _read_target_file(path: str) -> dict[str, Any] | None:
    target_file = Path(path) / TARGET_FILE
    if not target_file.is_file():
        return None
    try:
        return json.loads(target_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"cannot read target file {str(target_file)!r}: {error}; "
            "train the target again with `llmsurgeon train-target`"
        ) from error


def _domain_token_ids(
    target: dict[str, Any], tokenizer: PreTrainedTokenizerBase, path: str
) -> dict[int, str]:
    """Map the token id of every domain token listed in the target file to its domain."""
    domain_by_token_id = {}
    for domain_id, token in target.get("domain_tokens", {}).items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ConfigError(
                f"{TARGET_FILE} of model {path!r} names domain token {token!r}, which its "
                "tokenizer lacks; train the target again"
            )
        domain_by_token_id[token_id] = domain_id
    return domain_by_token_id

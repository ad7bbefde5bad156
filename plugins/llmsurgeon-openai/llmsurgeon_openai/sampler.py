"""The ``openai`` sampler: texts from any server that speaks the OpenAI HTTP API.

Requests run concurrently on an asyncio event loop with the ``openai``
client's async API. The client's own retries are turned off, because this
module retries with its own limits, logs each retry and counts it in the usage.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import logging
import os
import random
import stat
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from llmsurgeon_core import (
    ComponentOptions,
    ConfigError,
    GeneratedText,
    LlmsurgeonError,
    Sampler,
    SampleRequest,
)
from llmsurgeon_core.secrets import register_secret

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAISampler", "OpenAISamplerOptions", "SamplingFailedError"]

logger = logging.getLogger(__name__)

# Status codes that a later identical request can succeed on.
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class SamplingFailedError(LlmsurgeonError, RuntimeError):
    """A request failed for good: a status that no retry fixes, or retries ran out."""


class OpenAISamplerOptions(ComponentOptions):
    """Options of the ``openai`` sampler."""

    base_url: str = Field(
        pattern=r"^https?://[^\s/]+",
        description="Base URL of the API, with its version path, e.g. http://127.0.0.1:8000/v1.",
    )
    model: str = Field(description="Model name sent with every request.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable that contains the API key; the key itself "
        "is never written to a file or log. Null sends a placeholder key, for local servers, "
        "unless api_key_file is set.",
    )
    api_key_file: str | None = Field(
        None,
        description="File whose content (surrounding whitespace removed) is the API key, read "
        "when sampling starts and never stored; it must not be readable by group or others "
        "(chmod 600). It replaces api_key_env, which must then be left unset.",
    )
    endpoint: Literal["completions", "chat"] = Field(
        "completions",
        description="'completions' sends each prompt as text; 'chat' sends it as a user "
        "message to the chat completions endpoint.",
    )
    prompts: list[str] = Field(
        default_factory=lambda: [""],
        min_length=1,
        description="Prompts cycled over blocks of n consecutive sample indices, because the n "
        "texts of one request share a prompt; the default empty prompt starts a document from "
        "the server's start token, where the server adds one.",
    )
    system_prompt: str | None = Field(
        None, description="System message sent before each prompt; 'chat' endpoint only."
    )
    n_samples: int = Field(1000, ge=1, description="Number of texts to draw.")
    max_tokens: int = Field(64, ge=1, description="Maximum number of tokens per text.")
    temperature: float = Field(1.0, ge=0, description="Softmax temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus threshold; 1 keeps all tokens.")
    seed: int = Field(
        0,
        description="Sampling seed; each request sends a seed derived from it and the index of "
        "its first sample, so servers that honour seeds regenerate a batch identically.",
    )
    logprobs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Ask for this many top log-probabilities per token; the sum of the "
        "sampled tokens' log-probabilities is stored in metadata. Null asks for none.",
    )
    n: int = Field(
        1,
        ge=1,
        description="Texts requested per request. Where a server returns fewer, the rest are "
        "requested one at a time, and later requests ask for one.",
    )
    batch_size: int = Field(
        32, ge=1, description="Number of samples requested, and appended, at a time."
    )
    concurrency: int = Field(8, ge=1, description="Maximum number of requests in flight.")
    timeout: float = Field(60.0, gt=0, description="Seconds before a request times out.")
    max_retries: int = Field(
        8,
        ge=0,
        description="Retries of one request after 408, 409, 429 and 5xx responses, timeouts and "
        "dropped connections.",
    )
    backoff_initial: float = Field(
        0.5,
        gt=0,
        description="Seconds of the first backoff; each retry doubles it, and the wait is "
        "drawn between half and all of it.",
    )
    backoff_max: float = Field(
        30.0,
        gt=0,
        description="Maximum seconds of one backoff; a longer Retry-After header is honoured "
        "up to max_retry_after.",
    )
    max_retry_after: float = Field(
        300.0, gt=0, description="Maximum seconds waited on one Retry-After header."
    )

    @model_validator(mode="after")
    def _check_endpoint(self) -> OpenAISamplerOptions:
        if self.system_prompt is not None and self.endpoint != "chat":
            raise ValueError("system_prompt is set but endpoint is 'completions'; set it to 'chat'")
        env_given = "api_key_env" in self.model_fields_set and self.api_key_env is not None
        if self.api_key_file is not None and env_given:
            raise ValueError("api_key_file and api_key_env are both set; remove one of them")
        return self


@dataclass(frozen=True)
class _Call:
    """One request: consecutive sample indices drawn with one seed."""

    indices: tuple[int, ...]
    run_seed: int

    @property
    def seed(self) -> int:
        return _request_seed(self.run_seed, self.indices[0])


class OpenAISampler(Sampler):
    """Draws texts from an OpenAI-compatible completions or chat completions endpoint."""

    Options = OpenAISamplerOptions
    options: OpenAISamplerOptions

    def __init__(self, options: OpenAISamplerOptions) -> None:
        super().__init__(options)
        self._api_key: str | None = None
        self._n_honoured = options.n > 1
        self._usage: Counter[str] = Counter()

    @property
    def n_samples(self) -> int:
        return self.options.n_samples

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    def prepare(self, cache_dir: Any) -> None:
        """Read the API key from its environment variable or its file.

        The key is registered with :mod:`llmsurgeon_core.secrets`, so it is
        masked in logs and in the files of the run.
        """
        if self.options.api_key_file is not None:
            self._api_key = read_api_key_file(Path(self.options.api_key_file))
        elif self.options.api_key_env is None:
            self._api_key = "none"
            return
        else:
            self._api_key = _read_api_key_env(self.options.api_key_env)
        register_secret(self._api_key)

    def generate(self, request: SampleRequest) -> list[GeneratedText]:
        """Return one text per index of ``request``, in order."""
        if self._api_key is None:
            raise RuntimeError("OpenAISampler.generate() called before prepare()")
        return asyncio.run(self._generate(request))

    def protocol(self) -> dict[str, Any]:
        """Return the options (never the key) and the client version."""
        protocol = super().protocol()
        protocol["openai"] = metadata.version("openai")
        return protocol

    def usage(self) -> dict[str, Any]:
        """Return request, retry and token counters of this process."""
        usage = dict(sorted(self._usage.items()))
        usage["n_honoured"] = self._n_honoured if self.options.n > 1 else None
        return usage

    # Requests

    async def _generate(self, request: SampleRequest) -> list[GeneratedText]:
        import openai

        # The client's own retries stay off: _send retries, logs and counts.
        client = openai.AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self._api_key,
            max_retries=0,
            timeout=self.options.timeout,
        )
        semaphore = asyncio.Semaphore(self.options.concurrency)
        results: dict[int, GeneratedText] = {}
        usage_before = self._usage.copy()
        async with client:
            calls = self._plan(request)
            await asyncio.gather(*(self._run_call(client, semaphore, c, results) for c in calls))
        self._warn_about_retries(request, usage_before)
        return [results[index] for index in request.indices]

    def _warn_about_retries(self, request: SampleRequest, usage_before: Counter[str]) -> None:
        """Log one warning that counts the retries of ``request`` by reason, if it had any."""
        retries = self._usage["retries"] - usage_before["retries"]
        if retries == 0:
            return
        reasons = [
            f"{key.removeprefix('retries_').replace('_', ' ')}: {count - usage_before[key]}"
            for key, count in sorted(self._usage.items())
            if key.startswith("retries_") and count > usage_before[key]
        ]
        logger.warning(
            "samples %d-%d arrived after %d retries (%s)",
            request.indices[0],
            request.indices[-1],
            retries,
            ", ".join(reasons),
        )

    def _plan(self, request: SampleRequest) -> list[_Call]:
        """Split ``request`` into calls, one per block of n indices (per index without n)."""
        size = self.options.n if self._n_honoured else 1
        blocks = itertools.groupby(request.indices, key=lambda index: index // size)
        return [_Call(tuple(block), request.seed) for _, block in blocks]

    async def _run_call(
        self,
        client: openai.AsyncOpenAI,
        semaphore: asyncio.Semaphore,
        call: _Call,
        results: dict[int, GeneratedText],
    ) -> None:
        async with semaphore:
            response = await self._send(client, call)
        texts = self._parse(response, call)
        for index, text in zip(call.indices, texts):
            results[index] = text
        missing = call.indices[len(texts) :]
        if not missing:
            return
        if not texts:
            raise SamplingFailedError(
                f"the server returned no choice for samples {call.indices[0]}-"
                f"{call.indices[-1]}; check that model {self.options.model!r} generates text"
            )
        if self._n_honoured:
            self._n_honoured = False
            logger.warning(
                "the server returned %d of %d requested choices; requesting one text per "
                "request from now on",
                len(texts),
                len(call.indices),
            )
        # A server that ignores n returns what a request for one text with this
        # seed returns, so the texts left over are drawn as one-text requests with
        # their own seeds, exactly as the plan with n=1 would have drawn them.
        await asyncio.gather(
            *(
                self._run_call(client, semaphore, _Call((i,), call.run_seed), results)
                for i in missing
            )
        )

    def _payload(self, call: _Call) -> dict[str, Any]:
        options = self.options
        prompt = self._prompt_for(call.indices[0])
        payload: dict[str, Any] = {
            "model": options.model,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "seed": call.seed,
        }
        if len(call.indices) > 1:
            payload["n"] = len(call.indices)
        if options.endpoint == "chat":
            messages = []
            if options.system_prompt is not None:
                messages.append({"role": "system", "content": options.system_prompt})
            messages.append({"role": "user", "content": prompt})
            payload["messages"] = messages
            if options.logprobs is not None:
                payload["logprobs"] = True
                payload["top_logprobs"] = options.logprobs
        else:
            payload["prompt"] = prompt
            if options.logprobs is not None:
                payload["logprobs"] = options.logprobs
        return payload

    async def _send(self, client: openai.AsyncOpenAI, call: _Call) -> Any:
        """Send one request, retrying transient failures with backoff and jitter."""
        import openai

        payload = self._payload(call)
        create = (
            client.chat.completions.create
            if self.options.endpoint == "chat"
            else client.completions.create
        )
        for attempt in range(self.options.max_retries + 1):
            self._usage["requests"] += 1
            try:
                return await create(**payload)
            except openai.APIStatusError as error:
                reason = f"status {error.status_code}"
                if error.status_code not in RETRYABLE_STATUS:
                    raise SamplingFailedError(
                        f"request for samples {call.indices[0]}-{call.indices[-1]} failed with "
                        f"{reason}: {self._scrub(str(error))}; check base_url, model and the "
                        "API key"
                    ) from None
                retry_after = _retry_after_seconds(error.response.headers)
            except openai.APITimeoutError:
                reason, retry_after = "timeout", None
            except openai.APIConnectionError as error:
                reason, retry_after = f"connection error ({type(error.__cause__).__name__})", None
            if attempt == self.options.max_retries:
                raise SamplingFailedError(
                    f"request for samples {call.indices[0]}-{call.indices[-1]} failed "
                    f"{attempt + 1} times, last with {reason}; raise sampler option "
                    "max_retries or check the server"
                )
            delay = self._backoff(attempt, retry_after)
            self._usage["retries"] += 1
            self._usage[f"retries_{reason.split(' (')[0].replace(' ', '_')}"] += 1
            logger.info(
                "request for samples %d-%d failed with %s; retry %d of %d in %.2f s",
                call.indices[0],
                call.indices[-1],
                reason,
                attempt + 1,
                self.options.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Return seconds to wait: ``Retry-After`` if sent, else exponential backoff with jitter."""
        if retry_after is not None:
            return min(retry_after, self.options.max_retry_after)
        ceiling = min(self.options.backoff_max, self.options.backoff_initial * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)

    def _scrub(self, text: str) -> str:
        """Remove the API key from ``text``, such as a server's error message."""
        if self._api_key and self._api_key != "none":
            return text.replace(self._api_key, "***")
        return text

    def _prompt_for(self, index: int) -> str:
        """Return the prompt of sample ``index``, the same for each block of n indices."""
        block = index // self.options.n
        return self.options.prompts[block % len(self.options.prompts)]

    # Responses

    def _parse(self, response: Any, call: _Call) -> list[GeneratedText]:
        choices = sorted(response.choices, key=lambda choice: choice.index)[: len(call.indices)]
        usage = getattr(response, "usage", None)
        if usage is not None:
            self._usage["prompt_tokens"] += usage.prompt_tokens or 0
            self._usage["completion_tokens"] += usage.completion_tokens or 0
        prompt = self._prompt_for(call.indices[0])
        texts = []
        for position, choice in enumerate(choices):
            if self.options.endpoint == "chat":
                text = choice.message.content or ""
            else:
                text = choice.text or ""
            token_logprobs = _token_logprobs(choice, self.options.endpoint)
            sample_metadata: dict[str, Any] = {
                "request_seed": call.seed,
                "choice": position,
                "model": getattr(response, "model", None),
                "finish_reason_raw": choice.finish_reason,
            }
            if token_logprobs is not None:
                n_tokens = len(token_logprobs)
                sample_metadata["logprob"] = float(sum(token_logprobs))
            elif usage is not None and usage.completion_tokens is not None:
                n_tokens = usage.completion_tokens // max(1, len(response.choices))
                if len(response.choices) > 1:
                    sample_metadata["n_tokens_estimated"] = True
            else:
                n_tokens = len(text.split())
                sample_metadata["n_tokens_unit"] = "words"
            finish_reason = {"stop": "eos", "length": "length"}.get(
                choice.finish_reason or "", choice.finish_reason or "unknown"
            )
            texts.append(GeneratedText(prompt, text, n_tokens, finish_reason, sample_metadata))
        return texts


def _read_api_key_env(name: str) -> str:
    key = os.environ.get(name)
    if not key:
        raise ConfigError(
            f"environment variable {name!r} named by sampler option api_key_env is not "
            "set; export the API key in it, or set api_key_env to null for a server "
            "without keys"
        )
    return key


def read_api_key_file(path: Path) -> str:
    """Read an API key from ``path``, which only its owner may read.

    Raises:
        ConfigError: if the file is missing, unreadable, empty, or readable by
            group or others.
    """
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"sampler option api_key_file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read sampler option api_key_file {str(path)!r}: {error}; make it a "
            "UTF-8 text file that you can read"
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"sampler option api_key_file {str(path)!r} has mode {stat.S_IMODE(mode):o}, so "
            f"group or others can access it; run `chmod 600 {path}`"
        )
    if not key:
        raise ConfigError(f"sampler option api_key_file {str(path)!r} is empty; write the key")
    return key


def _request_seed(seed: int, index: int) -> int:
    """Derive a 31-bit request seed from the run seed and a request's first sample index."""
    text = f"{seed}:{index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def _retry_after_seconds(headers: Any) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _token_logprobs(choice: Any, endpoint: str) -> list[float] | None:
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    if endpoint == "chat":
        content = getattr(logprobs, "content", None)
        return None if content is None else [token.logprob for token in content]
    values = getattr(logprobs, "token_logprobs", None)
    return None if values is None else [v for v in values if v is not None]

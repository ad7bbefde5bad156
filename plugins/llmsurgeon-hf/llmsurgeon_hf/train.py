"""Training of small GPT-2 target models whose data mixture is known exactly.

A target learns from the reference texts of a taxonomy, mixed in shares that
the caller sets. Every training sequence starts with ``<|bos|>`` and the
domain's reserved ``<|domain:ID|>`` token, so the first token of a text the
target generates is the domain the model chose. Counting those tokens gives
the exact mixture of a set of generations.

torch, transformers and tokenizers are imported inside the functions that use
them, so that importing the options model stays fast.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from llmsurgeon_core import (
    ComponentOptions,
    ConfigError,
    Taxonomy,
    TaxonomyError,
    iter_domain_chunks,
    resolve_taxonomy,
)
from llmsurgeon_core.storage import default_mode

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "TARGET_FILE",
    "OutputExistsError",
    "TargetTraining",
    "allocate_sequences",
    "check_output_dir",
    "domain_token",
    "target_cache_key",
    "target_mixture",
    "train_target",
]

logger = logging.getLogger(__name__)

TARGET_FILE = "llmsurgeon_target.json"
BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"

# Raise this when a change to the trainer makes targets cached by older
# versions different from what the same options build now.
TARGET_FORMAT_VERSION = 1

# Characters of text read per token a domain needs. A 4096-token byte-level
# BPE trained on the demo taxonomy averaged 2.7 (READMEs) to 3.9 (licences)
# characters per token, so 6 leaves a margin. A domain that still runs short
# repeats its text.
CHARS_PER_TOKEN_BUDGET = 6

# The learning rate rises linearly over the first WARMUP_FRACTION of the
# steps, then follows a cosine down to FINAL_LR_FRACTION of the peak.
WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.1
# The loss is logged 10 times per run, and the recorded final loss is the mean
# over the last FINAL_LOSS_STEPS steps.
LOG_EVERY_FRACTION = 0.1
FINAL_LOSS_STEPS = 50


class OutputExistsError(ConfigError):
    """The output directory of a target already exists and is not empty."""


class TargetTraining(ComponentOptions):
    """Options of a small GPT-2 target model trained on a known mixture."""

    taxonomy: str = Field(
        description="Registered taxonomy name or path of a taxonomy YAML file; its domains' "
        "reference sources are the training text."
    )
    recipe: str | None = Field(
        None, description="Name of a recipe of the taxonomy whose shares set the mixture."
    )
    mixture: dict[str, float] | None = Field(
        None,
        description="Shares of the training tokens by domain id, renormalized to sum to 1; "
        "absent domains get 0.",
    )
    tokens: int = Field(1_500_000, ge=1, description="Number of training tokens, one epoch.")
    context: int = Field(64, ge=3, description="Length of every training sequence, in tokens.")
    vocab_size: int = Field(
        4096, ge=256, description="Size of the byte-level BPE vocabulary, special tokens included."
    )
    n_layer: int = Field(2, ge=1, description="Number of transformer blocks.")
    n_embd: int = Field(128, ge=1, description="Width of the hidden states.")
    n_head: int = Field(4, ge=1, description="Number of attention heads; must divide n_embd.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    batch_size: int = Field(32, ge=1, description="Number of sequences per optimizer step.")
    seed: int = Field(
        0, description="Seed of the text order, the weight initialization and the shuffling."
    )
    chunk_words: int = Field(
        48, ge=1, description="Number of words per reference chunk read from the sources."
    )
    max_seconds: float | None = Field(
        None,
        gt=0,
        description="Stop training after this many seconds and save the model as it is; "
        "unset trains the whole epoch.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> TargetTraining:
        if (self.recipe is None) == (self.mixture is None):
            raise ValueError(
                "set exactly one of recipe (the name of a recipe in the taxonomy) and "
                "mixture (shares by domain id)"
            )
        if self.mixture is not None:
            for domain_id, share in self.mixture.items():
                if not math.isfinite(share) or share < 0:
                    raise ValueError(
                        f"mixture share of domain {domain_id!r} is {share}; shares must be "
                        "finite and non-negative"
                    )
            if sum(self.mixture.values()) <= 0:
                raise ValueError("mixture has no positive share; give at least one domain a share")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_head={self.n_head} does not divide n_embd={self.n_embd}; "
                "choose an n_embd that is a multiple of n_head"
            )
        if self.tokens < self.context:
            raise ValueError(
                f"tokens={self.tokens} is smaller than context={self.context}, so not one "
                "training sequence fits; raise tokens"
            )
        return self


def domain_token(domain_id: str) -> str:
    """Return the reserved token that starts the training sequences of ``domain_id``."""
    return f"<|domain:{domain_id}|>"


def target_cache_key(options: TargetTraining) -> str:
    """Return the first 16 hex digits of the SHA-256 of the options JSON.

    A taxonomy given as a file path enters the key as its absolute path, so one
    relative path seen from two directories does not share a cache entry.
    """
    payload = options.model_dump(mode="json")
    taxonomy_path = Path(options.taxonomy).expanduser()
    if options.taxonomy.endswith((".yaml", ".yml")) or taxonomy_path.is_file():
        payload["taxonomy"] = str(taxonomy_path.resolve())
    payload["format_version"] = TARGET_FORMAT_VERSION
    # NOTE: the key covers the options only. Editing the taxonomy file or its
    # reference texts keeps the key, so a cached target trained on the old text
    # is reused until its directory is deleted.
    encoded = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def target_mixture(options: TargetTraining, taxonomy: Taxonomy) -> dict[str, float]:
    """Return the mixture of ``options`` over all domains of ``taxonomy``, summing to 1.

    Raises:
        ConfigError: if the mixture names a domain that the taxonomy lacks.
        TaxonomyError: if the recipe is not in the taxonomy.
    """
    if options.recipe is not None:
        shares = taxonomy.recipe_vector(options.recipe)
        return dict(zip(taxonomy.domain_ids, shares, strict=True))
    assert options.mixture is not None  # guaranteed by TargetTraining's validator
    known = taxonomy.domain_ids
    for domain_id in options.mixture:
        if domain_id not in known:
            message = f"mixture names domain {domain_id!r}, which taxonomy {taxonomy.name!r} lacks"
            close = difflib.get_close_matches(domain_id, known, n=1)
            message += f"; did you mean {close[0]!r}?" if close else "."
            raise ConfigError(f"{message} Known domains: {', '.join(known)}.")
    total = sum(options.mixture.values())
    return {domain_id: options.mixture.get(domain_id, 0.0) / total for domain_id in known}


def allocate_sequences(mixture: dict[str, float], n_sequences: int) -> dict[str, int]:
    """Split ``n_sequences`` among domains in proportion to ``mixture``.

    Uses the largest-remainder method, so the counts sum to ``n_sequences`` and
    each differs from its exact share by less than one sequence.
    """
    exact = {domain_id: share * n_sequences for domain_id, share in mixture.items()}
    counts = {domain_id: math.floor(value) for domain_id, value in exact.items()}
    left = n_sequences - sum(counts.values())
    by_remainder = sorted(exact, key=lambda domain_id: counts[domain_id] - exact[domain_id])
    for domain_id in by_remainder[:left]:
        counts[domain_id] += 1
    return counts


def _read_domain_text(
    taxonomy: Taxonomy, domain_id: str, options: TargetTraining, n_tokens: int
) -> list[str]:
    """Read chunks of one domain until they likely contain ``n_tokens`` tokens."""
    budget = n_tokens * CHARS_PER_TOKEN_BUDGET
    chunks: list[str] = []
    n_chars = 0
    for chunk in iter_domain_chunks(taxonomy, domain_id, options.chunk_words, options.seed):
        chunks.append(chunk)
        n_chars += len(chunk)
        if n_chars >= budget:
            break
    if not chunks:
        raise TaxonomyError(
            f"domain {domain_id!r} of taxonomy {taxonomy.name!r} yields no chunks of "
            f"{options.chunk_words} words; add sources to it or set its share to 0"
        )
    return chunks


def _train_tokenizer(
    texts: list[str], domain_ids: list[str], options: TargetTraining
) -> tuple[Tokenizer, PreTrainedTokenizerFast]:
    """Train a byte-level BPE tokenizer, returning it raw and wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    domain_tokens = [domain_token(domain_id) for domain_id in domain_ids]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=options.vocab_size,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, *domain_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=domain_tokens,
        model_max_length=options.context,
    )
    return tokenizer, wrapped


def _build_sequences(
    tokenizer: Tokenizer, chunks: list[str], domain_id: str, n_sequences: int, context: int
) -> torch.Tensor:
    """Pack one domain's chunks into ``(n_sequences, context)`` token ids.

    Each row is ``<|bos|>``, the domain token, then the next ``context - 2``
    tokens of the domain's chunks joined by ``<|eos|>``. A chunk that does not
    fit continues in the next row.
    """
    import torch

    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    stream: list[int] = []
    for encoding in tokenizer.encode_batch(chunks, add_special_tokens=False):
        stream.extend(encoding.ids)
        stream.append(eos_id)
    body_length = context - 2
    needed = n_sequences * body_length
    if len(stream) < needed:
        logger.warning(
            "domain %s: its text has %d tokens but its share needs %d, so %.0f%% of its "
            "training tokens repeat earlier text",
            domain_id,
            len(stream),
            needed,
            100 * (needed - len(stream)) / needed,
        )
        stream = stream * math.ceil(needed / len(stream))
    body = torch.tensor(stream[:needed], dtype=torch.long).view(n_sequences, body_length)
    prefix = torch.tensor(
        [tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(domain_token(domain_id))],
        dtype=torch.long,
    )
    return torch.cat([prefix.expand(n_sequences, 2), body], dim=1)


def _build_model(tokenizer: PreTrainedTokenizerFast, options: TargetTraining) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM, GPT2Config

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=options.context,
        n_embd=options.n_embd,
        n_layer=options.n_layer,
        n_head=options.n_head,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # With torch 2.13 and transformers 5.25 on 2 CPU cores, gelu without
    # dropout made a step of the default target about 10% faster than GPT-2's
    # gelu_new with dropout 0.1. sdpa and eager attention ran at the same speed.
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    except (ImportError, ValueError) as error:
        logger.info("sdpa attention is unavailable (%s); using the eager implementation", error)
        model = AutoModelForCausalLM.from_config(config)
    # transformers 5.25 picks the loss from the class name, and "GPT2LMHeadModel"
    # names none, so it warns before using the causal language-model loss.
    # Naming that loss here gives the same loss without the warning.
    model.loss_type = "ForCausalLM"
    return model


def _learning_rate_factor(step: int, n_steps: int) -> float:
    warmup = max(1, round(WARMUP_FRACTION * n_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, n_steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * cosine


def _make_optimizer(
    model: PreTrainedModel, learning_rate: float, n_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.01
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, n_steps)
    )
    return optimizer, scheduler


@dataclass
class _TrainingResult:
    final_loss: float
    steps: int
    n_steps_planned: int
    order: torch.Tensor
    sequences_trained: int


def _train_model(
    model: PreTrainedModel, sequences: torch.Tensor, options: TargetTraining
) -> _TrainingResult:
    """Train ``model`` for one epoch over ``sequences`` in a seeded random order."""
    import torch
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(len(sequences), generator=generator)
    n_steps = math.ceil(len(sequences) / options.batch_size)
    optimizer, scheduler = _make_optimizer(model, options.learning_rate, n_steps)
    log_every = max(1, round(LOG_EVERY_FRACTION * n_steps))
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    progress = tqdm(total=n_steps, desc="training target", unit="step", file=sys.stderr)
    for step in range(n_steps):
        batch = sequences[order[step * options.batch_size : (step + 1) * options.batch_size]]
        mask = torch.ones_like(batch)
        loss = model(input_ids=batch, attention_mask=mask, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress.update()
        if (step + 1) % log_every == 0 or step + 1 == n_steps:
            progress.set_postfix(loss=f"{losses[-1]:.3f}")
            logger.info("step %d/%d: loss %.3f", step + 1, n_steps, losses[-1])
        elapsed = time.perf_counter() - started
        if options.max_seconds is not None and elapsed > options.max_seconds and step + 1 < n_steps:
            logger.warning(
                "stopped training after %d of %d steps because max_seconds=%g was reached",
                step + 1,
                n_steps,
                options.max_seconds,
            )
            break
    progress.close()
    model.eval()
    tail = losses[-FINAL_LOSS_STEPS:]
    return _TrainingResult(
        final_loss=sum(tail) / len(tail),
        steps=len(losses),
        n_steps_planned=n_steps,
        order=order,
        sequences_trained=min(len(sequences), len(losses) * options.batch_size),
    )


def _first_token_mixture(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, domain_ids: list[str]
) -> tuple[dict[str, float], float]:
    """Return the model's probability of each domain token right after ``<|bos|>``.

    The shares are renormalized over the domain tokens, and the second value
    is their total probability. Sampling from ``<|bos|>`` at temperature 1
    draws domains at these shares in expectation.
    """
    import torch

    token_ids = tokenizer.convert_tokens_to_ids([domain_token(d) for d in domain_ids])
    input_ids = torch.tensor([[tokenizer.bos_token_id]])
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0, -1]
    probabilities = torch.softmax(logits.float(), dim=-1)[token_ids]
    total = float(probabilities.sum())
    shares = {d: float(p) / total for d, p in zip(domain_ids, probabilities, strict=True)}
    return shares, total


def _save_target(
    directory: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    target: dict[str, Any],
) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    text = json.dumps(target, indent=2, sort_keys=True) + "\n"
    (directory / TARGET_FILE).write_text(text, encoding="utf-8")


def check_output_dir(output_dir: Path) -> None:
    """Raise OutputExistsError unless ``output_dir`` is missing or an empty directory."""
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        return
    if output_dir.exists():
        raise OutputExistsError(
            f"output directory {str(output_dir)!r} already exists and is not empty; "
            "choose a new directory or remove it"
        )


def _publish(temporary: Path, output_dir: Path) -> None:
    """Move the finished ``temporary`` directory to ``output_dir`` in one rename."""
    if output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()
    try:
        os.replace(temporary, output_dir)
    except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        raise OutputExistsError(
            f"output directory {str(output_dir)!r} was written by another process while "
            "this target trained; use that one or remove it"
        ) from None


def _library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("torch", "transformers", "tokenizers")}


def train_target(options: TargetTraining, output_dir: str | Path) -> Path:
    """Train a GPT-2 target on the mixture of ``options`` and save it to ``output_dir``.

    The directory receives the model, its tokenizer, a sampling
    ``generation_config`` and :data:`TARGET_FILE`, which records the mixture
    and the token of each domain. Everything is written to a temporary
    directory beside ``output_dir`` and renamed into place, so ``output_dir``
    never contains a partial target.

    Returns:
        ``output_dir``.

    Raises:
        OutputExistsError: if ``output_dir`` exists and is not empty.
        ConfigError: if the mixture names a domain the taxonomy lacks.
        TaxonomyError: if the taxonomy, its recipe or a domain's text is missing.
    """
    import torch

    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    started = time.perf_counter()
    taxonomy = resolve_taxonomy(options.taxonomy)
    mixture = target_mixture(options, taxonomy)
    counts = allocate_sequences(mixture, options.tokens // options.context)
    starved = sorted(d for d, share in mixture.items() if share > 0 and counts[d] == 0)
    if starved:
        smallest = min(mixture[d] for d in starved)
        raise ConfigError(
            f"tokens={options.tokens} is too few: domain {starved[0]} gets no training "
            f"sequence of {options.context} tokens, so the target would not have the requested "
            f"mixture; raise tokens to at least {math.ceil(options.context / smallest)}"
        )
    body_length = options.context - 2
    texts = {
        domain_id: _read_domain_text(taxonomy, domain_id, options, count * body_length)
        for domain_id, count in counts.items()
        if count > 0
    }
    raw_tokenizer, tokenizer = _train_tokenizer(
        [chunk for chunks in texts.values() for chunk in chunks], taxonomy.domain_ids, options
    )
    blocks = [
        _build_sequences(raw_tokenizer, chunks, domain_id, counts[domain_id], options.context)
        for domain_id, chunks in texts.items()
    ]
    sequences = torch.cat(blocks)
    labels = [domain_id for domain_id, count in counts.items() for _ in range(count)]
    logger.info(
        "training a target on %d sequences of %d tokens with a vocabulary of %d",
        len(sequences),
        options.context,
        len(tokenizer),
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = _build_model(tokenizer, options)
        result = _train_model(model, sequences, options)

    trained = [labels[i] for i in result.order[: result.sequences_trained].tolist()]
    first_token_mixture, domain_token_mass = _first_token_mixture(
        model, tokenizer, taxonomy.domain_ids
    )
    target = {
        "taxonomy": taxonomy.name,
        "domains": taxonomy.domain_ids,
        "mixture": mixture,
        "mixture_trained": {d: trained.count(d) / len(trained) for d in taxonomy.domain_ids},
        "first_token_mixture": first_token_mixture,
        "domain_token_mass": domain_token_mass,
        "sequences": counts,
        "domain_tokens": {d: domain_token(d) for d in taxonomy.domain_ids},
        "training": options.model_dump(mode="json"),
        "final_loss": result.final_loss,
        "steps": result.steps,
        "steps_planned": result.n_steps_planned,
        "tokens_trained": result.sequences_trained * options.context,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
        "versions": _library_versions(),
    }
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    os.chmod(temporary, default_mode(directory=True))
    try:
        _save_target(temporary, model, tokenizer, target)
        _publish(temporary, output_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.info(
        "saved target to %s: final loss %.3f after %d tokens in %.0f s",
        output_dir,
        result.final_loss,
        target["tokens_trained"],
        target["seconds"],
    )
    return output_dir

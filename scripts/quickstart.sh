#!/usr/bin/env bash
# README's first quickstart command: install (CPU torch first), then run the embedded default end to end.
# Extra arguments go to scripts/pipeline.py (e.g. --scale smoke, --force, --retrain_policies).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import torch, trl, inference, training" >/dev/null 2>&1; then
  # A bare `torch` requirement would pull a multi-GB CUDA build: take the CPU wheel first.
  python3 -m pip install --quiet torch==2.13.0
  python3 -m pip install --quiet -e .
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec python3 scripts/pipeline.py "$@"

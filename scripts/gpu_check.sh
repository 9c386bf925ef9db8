#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): tiny-model CUDA parity and precision plan, then the
# full-size model at random init timed on the GPU in the original's precision. One table,
# under 8 minutes. Needs only torch + transformers + safetensors (no decord, VLC or Qt).
#
#   ./scripts/gpu_check.sh             # on a machine with a CUDA GPU
#   ./scripts/gpu_check.sh --dry-run   # rehearse the script itself on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec timeout 480 "$python" -m bench.gpu_check "$@"

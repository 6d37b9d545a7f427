#!/usr/bin/env bash
# The GPU measurements of issue 12, as one short script for a GPU machine (one or more GPUs),
# from the repository root with the project installed (README's first command):
#   FR images/s of the plain loop vs the pipeline with 1 and (on two or more GPUs) 2 FR workers (one
#   GPU each) and 1..8 env runners, GPU memory, masking on CPU vs
#   GPU. Writes benchmarks/results/fr_scaling_gpu.json. About 10 minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv
# NCCL needs one GPU per FR worker: two workers only where two GPUs are.
GPUS=$(nvidia-smi -L | wc -l)
WORKERS=1; [ "$GPUS" -ge 2 ] && WORKERS=1,2
PYTHONUNBUFFERED=1 "$PY" benchmarks/fr_scaling.py --device cuda --fr-workers "$WORKERS" --runners 1,2,4,8 \
    --iterations 3 --synthetic 0 --out benchmarks/results/fr_scaling_gpu.json

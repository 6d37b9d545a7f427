#!/usr/bin/env bash
# The GPU measurements of issues 12 and 19, as one short script for a GPU machine, from the
# repository root with the project installed (README's first command). Under 8 minutes on one H200.
#   1. Always, in one process WITHOUT Ray (a lent GPU machine may have torch but no Ray):
#      FR images/s vs rows per step, and the aggregated FR server fed by the owner's batch path
#      (benchmarks/fr_server.py), and FR images/s at 4,096 rows per step for fr.precision fp32
#      and bf16, each without and with fr.channels_last -> benchmarks/results/fr_server_cuda.json
#   2. Only where Ray imports: the pipeline (rl-mask train) vs the plain loop at the same rows
#      per step, with and without the attacker in the loop (benchmarks/fr_scaling.py)
#      -> benchmarks/results/fr_scaling_gpu.json
# QUICK=1 runs both parts with tiny sizes on whatever device there is (a check that the script
# runs, e.g. on a CPU machine; its figures are not measurements and go to /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ "${QUICK:-0}" = 1 ]; then
    DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    OUT=/tmp/rl-mask-gpu-check
    SERVER_ARGS=(--device "$DEVICE" --rows 64,128 --steps 3 --seconds 3 --threads 1 --precision-rows 128 --quick)
    SCALING_ARGS=(--device "$DEVICE" --fr-workers 1 --runners 1 --iterations 2 --synthetic 0 --rows-per-step 128 --quick)
else
    nvidia-smi --query-gpu=name,memory.total --format=csv
    DEVICE=cuda
    OUT=benchmarks/results
    SERVER_ARGS=(--device cuda --rows 64,256,1024,4096 --steps 20 --seconds 20 --precision-rows 4096)
    SCALING_ARGS=(--device cuda --fr-workers 1 --runners 4,8 --iterations 3 --synthetic 0 --rows-per-step 1024)
fi
mkdir -p "$OUT"
PYTHONUNBUFFERED=1 "$PY" benchmarks/fr_server.py "${SERVER_ARGS[@]}" --out "$OUT/fr_server_$DEVICE.json"
if "$PY" -c "import ray" 2>/dev/null; then
    export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}  # as the rl-mask command sets it (trainers/train.py)
    PYTHONUNBUFFERED=1 "$PY" benchmarks/fr_scaling.py "${SCALING_ARGS[@]}" --out "$OUT/fr_scaling_$DEVICE.json"
else
    echo "gpu_check: Ray is not installed here: the pipeline measurement (benchmarks/fr_scaling.py) is skipped"
fi

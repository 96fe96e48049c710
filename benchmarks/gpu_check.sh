#!/usr/bin/env bash
# GPU checks and benchmarks in one script (issue 6), for a lent H100/H200 whose image
# already has JAX (CUDA), PyTorch (CUDA), optax, numpy, pandas and pytest; nothing is
# installed.  Results go to $OUT (default ./gpu-results): one log and one JSON per part.
#
#   bash benchmarks/gpu_check.sh smoke   # kernels compiled on the GPU vs lax.scan (~1 min)
#   bash benchmarks/gpu_check.sh full    # benchmarks: medium, on4096, 1024 students, extras
#   bash benchmarks/gpu_check.sh all     # both
set -u
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false
what=${1:-all}
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
run() {  # run <timeout s> <name> <command...>: output to $OUT/<name>.txt and the log
  local t=$1 name=$2; shift 2
  log "$name: $*"
  timeout "$t" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.txt" | tee -a "$OUT/log.txt"
  log "$name: exit $rc"
}

if [[ $what == smoke || $what == all ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    | tee -a "$OUT/log.txt"
  $PY -c "import jax, torch, optax; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tail -3 | tee -a "$OUT/log.txt"
  # the compiled Pallas kernels against the scan path, mixed precision, recomputation,
  # the wide students network (kernels on S * n units) against separate students
  RESONANCE_TEST_KERNEL=pallas run 300 tests $PY -m pytest -q -x -p no:cacheprovider \
    tests/core/test_kernels.py tests/core/test_precision.py tests/core/test_remat.py \
    tests/core/test_students.py
fi

if [[ $what == full || $what == all ]]; then
  IMPLS=project,project_scan,project_bf16,reference_jax,torch
  run 200 medium $PY -m benchmarks.compare medium --rounds 2 --no-cold --impls $IMPLS \
    --torch-device cuda --json
  run 200 on4096 $PY -m benchmarks.compare on4096 --rounds 2 --no-cold --impls $IMPLS \
    --torch-device cuda --json
  run 150 vmap $PY -m benchmarks.compare vmap --rounds 2 --students 1,1024 --json
  run 150 extras $PY -m benchmarks.gpu_extras precision remat --config medium --steps 200 \
    --students 64 --json
fi
log done

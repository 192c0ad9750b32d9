#!/usr/bin/env bash
# One check for a machine with an NVIDIA GPU, in under 8 minutes (issue 17):
#
#   1. install what is missing: i2i with its [gpu] extra (onnxruntime-gpu replaces onnxruntime,
#      which writes the same package directory) and pytest;
#   2. the CUDA tests: python -m pytest -m cuda (AMP fp16 with its scaler, bf16, channels_last,
#      torch.compile, DDP over NCCL on every GPU through torchrun, onnxruntime-gpu's CUDA and
#      TensorRT providers; tests/test_cuda.py and every test marked cuda or named test_cuda_*);
#   3. pix2pix and CycleGAN training-step times, fp32 vs fp16 vs bf16 vs the reference replica;
#   4. onnxruntime CUDA fp16 (and fp32) against PyTorch eager fp32.
#
# Each stage has its own time limit, so one stuck stage cannot eat the others' time; the tables
# are what to copy into BENCHMARKS.md. On a machine without an NVIDIA GPU it stops at once, before
# installing anything, with one line and exit status 2.
#
#   bash bench/gpu_check.sh                    # everything
#   GPU_CHECK_INSTALL=0 bash bench/gpu_check.sh   # the environment is ready: install nothing
#   GPU_CHECK_TENSORRT=1 bash bench/gpu_check.sh  # also pip install TensorRT's libraries (large)
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
PY=${PYTHON:-python}
SMI=${GPU_CHECK_NVIDIA_SMI:-nvidia-smi}   # tests point this elsewhere to play a machine without a GPU

if ! command -v "$SMI" >/dev/null 2>&1 || ! gpus=$("$SMI" -L 2>/dev/null) || [ -z "$gpus" ]; then
    echo "gpu_check: no NVIDIA GPU here ($SMI finds none); run bench/gpu_check.sh on a machine with one" >&2
    exit 2
fi

failed=()
stage() {  # stage NAME SECONDS COMMAND...: run it with a time limit, say how long it took
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name (limit ${limit}s) ==="
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "=== $name: stopped at its ${limit}s limit ==="
        failed+=("$name (timed out)")
    elif [ "$rc" -ne 0 ]; then
        echo "=== $name: failed (exit $rc) after $((SECONDS - t0))s ==="
        failed+=("$name")
    else
        echo "=== $name: done in $((SECONDS - t0))s ==="
    fi
}

echo "gpu_check: $(echo "$gpus" | wc -l) GPU(s):"
echo "$gpus"

install_deps() {  # a function run by `timeout bash -c`, so it is exported below
    local ort
    ort=$("$PY" -c "import importlib.metadata as m
for d in ('onnxruntime-gpu', 'onnxruntime'):
    try:
        m.version(d); print(d); break
    except m.PackageNotFoundError:
        pass" 2>/dev/null)
    if [ "$ort" = "onnxruntime" ]; then  # never both: they write the same directory
        "$PY" -m pip uninstall -y -q onnxruntime || return 1
    fi
    "$PY" -m pip install -q -e ".[gpu]" "pytest>=8" || return 1
    if [ "${GPU_CHECK_TENSORRT:-0}" = 1 ]; then
        "$PY" -m pip install -q tensorrt || return 1
    fi
}
export -f install_deps
export PY
if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
    stage "install i2i[gpu] + pytest" 120 bash -c install_deps
fi
"$PY" - <<'EOF' || { echo "gpu_check: torch sees no CUDA GPU (a CPU-only torch build?); install a CUDA build of torch" >&2; exit 2; }
import torch, onnxruntime as ort
assert torch.cuda.is_available()
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s); "
      f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
EOF

stage "CUDA tests (pytest -m cuda)" 170 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
stage "pix2pix step times" 45 "$PY" bench/gpu_check.py steps --method pix2pix --iters 10 --rounds 3
stage "CycleGAN step times" 45 "$PY" bench/gpu_check.py steps --method cyclegan --iters 5 --rounds 3
stage "onnxruntime vs PyTorch" 90 "$PY" bench/gpu_check.py onnx

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: $((SECONDS))s; failed: ${failed[*]}"
    exit 1
fi
echo "gpu_check: all stages passed in ${SECONDS}s"

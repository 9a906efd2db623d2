#!/usr/bin/env bash
# onnxruntime's CUDA execution provider on one NVIDIA GPU: what a bare session does without the
# preload of CUDA's libraries, the CUDA tests (tests/test_cuda.py and the runtime's), `digitvae
# parity --provider cuda` for each shipped model and variant, and `digitvae bench` on CUDA.
# Needs onnxruntime-gpu in place of onnxruntime (CUDA 13 and cuDNN 9 where it finds them, such as
# the nvidia-* packages of `pip install onnxruntime-gpu[cuda,cudnn]`) and digitvae with [test].
#
#   scripts/device_check_cuda.sh   # PYTHON (default python3), DIGITVAE (default digitvae), BENCH_ARGS
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DIGITVAE=${DIGITVAE:-digitvae}
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PYTHON" - <<'PY'
import onnxruntime as ort

print("onnxruntime", ort.__version__, ort.get_device(), ort.get_available_providers())
print("build:", ort.get_build_info())
PY

echo "== a bare onnxruntime session, CUDA's libraries not preloaded"
"$PYTHON" - <<'PY'
import onnxruntime as ort

session = ort.InferenceSession(
    "models/mnist-vae/decoder.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
)
print("bare session runs on:", session.get_providers())
PY

echo "== tests"
"$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_parity.py tests/test_runtime.py \
    tests/test_bound_decode.py tests/test_lazy_sessions.py tests/test_load_options.py || status=1

echo "== parity"
for model in mnist-vae mnist-cvae mnist-vae-geron mnist-vae-2d; do
    for variant in fp32 fp16 int8; do
        echo "-- $model $variant"
        "$DIGITVAE" parity -m "$model" --variant "$variant" --provider cuda || status=1
    done
done

echo "== bench"
# shellcheck disable=SC2086  # BENCH_ARGS: more options, such as --no-cold-start
timeout 300 "$DIGITVAE" bench --provider cuda --no-torch ${BENCH_ARGS:-} || status=1
exit $status

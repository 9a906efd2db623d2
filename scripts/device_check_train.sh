#!/usr/bin/env bash
# Training on one NVIDIA GPU: epochs on CUDA in a plain process (python -m digitvae.train --device cuda),
# then the same under torchrun --nproc_per_node=1 (DistributedDataParallel over nccl), each with its
# seconds per epoch and the largest weight difference between the two. Needs digitvae installed
# with the [train] extra and a CUDA build of torch.
#
#   scripts/device_check_train.sh [MNIST_DIR]   # default: $DIGITVAE_DATA or ~/.cache/digitvae/mnist
#   TILE=train5k-images-idx3-ubyte.gz VALID=valid5k-images-idx3-ubyte.gz scripts/device_check_train.sh
#                                               # 12 copies of TILE (labels beside it too) as training data
# EPOCHS (default 2), PRESETS (default "iwae-mix geron"), PYTHON (default python3) change the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PYTHON" - <<'PY'
import torch
import torch.distributed as dist

assert torch.cuda.is_available(), "torch sees no CUDA device"
assert dist.is_nccl_available(), "this torch has no nccl"
nccl = ".".join(map(str, torch.cuda.nccl.version()))
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, nccl {nccl}")
PY

if [[ -n "${TILE:-}" ]]; then
    source_args=(--tile "$TILE" --times "${TIMES:-12}" --valid "${VALID:?VALID names the validation images}")
else
    source_args=(--data "${1:-${DIGITVAE_DATA:-$HOME/.cache/digitvae/mnist}}")
fi
preset_args=()
for preset in ${PRESETS:-iwae-mix geron}; do preset_args+=(--preset "$preset"); done

"$PYTHON" scripts/time_train_epochs.py "${source_args[@]}" "${preset_args[@]}" --device cuda \
    --launch plain --launch torchrun:1 --epochs "${EPOCHS:-2}" --repeats 1

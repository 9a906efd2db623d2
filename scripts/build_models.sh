#!/usr/bin/env bash
# Rebuild every shipped model from the 5,000-digit MNIST subsets, with the documented commands.
# Run from the repository root; DATA points at train5k-*/valid5k-* IDX files with labels.
# `export` fits each model's latent prior on the training digits, one mixture per class.
# STEPS=measure skips training and export and only refreshes the figures in model.json.
set -euo pipefail
DATA=${DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/digitvae/mnist5k}  # `digitvae data download && digitvae data subset` writes them there
VALID="$DATA/valid5k-images-idx3-ubyte.gz"
MODELS=(mnist-vae mnist-vae-geron mnist-cvae mnist-vae-2d)

build() {  # build PRESET MODEL_NAME
    digitvae train --preset "$1" --data "$DATA" -o "runs/$1"
    digitvae export "runs/$1" -o "models/$2" --force
}

if [ "${STEPS:-all}" = all ]; then
    build iwae-mix mnist-vae
    build geron mnist-vae-geron
    build cvae mnist-cvae
    build vae-2d mnist-vae-2d
fi
# Score ranges: the default and the reference design are each other's likelihood-ratio reference.
digitvae calibrate models/mnist-vae "$VALID" --reference mnist-vae-geron
digitvae calibrate models/mnist-vae-geron "$VALID" --reference mnist-vae
digitvae calibrate models/mnist-vae-2d "$VALID" --reference mnist-vae
digitvae calibrate models/mnist-cvae "$VALID" --no-reference
for model in "${MODELS[@]}"; do
    for variant in fp32 int8 fp16; do
        digitvae evaluate "$VALID" --model "models/$model" --variant "$variant" --write
    done
    digitvae evaluate "$VALID" --model "models/$model" --standard-prior --write
done
quality_models=()
for model in "${MODELS[@]}"; do quality_models+=(-m "models/$model"); done
digitvae quality --data "$DATA" --write "${quality_models[@]}"
digitvae quality --data "$DATA" --write --standard-prior "${quality_models[@]}"

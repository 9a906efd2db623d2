#!/usr/bin/env bash
# Rebuild every shipped model from the 5,000-digit MNIST subsets, with the documented commands.
# Run from the repository root; DATA points at train5k-*/valid5k-* IDX files with labels.
set -euo pipefail
DATA=${DATA:-../shared/data/mnist}
VALID="$DATA/valid5k-images-idx3-ubyte.gz"

build() {  # build PRESET MODEL_NAME
    digitvae train --preset "$1" --data "$DATA" -o "runs/$1"
    digitvae export "runs/$1" -o "models/$2" --force
}

build iwae-aug mnist-vae
build geron mnist-vae-geron
build cvae mnist-cvae
build vae-2d mnist-vae-2d
# Score ranges: the default and the reference design are each other's likelihood-ratio reference.
digitvae calibrate models/mnist-vae --reference mnist-vae-geron --data "$VALID"
digitvae calibrate models/mnist-vae-geron --reference mnist-vae --data "$VALID"
digitvae calibrate models/mnist-vae-2d --reference mnist-vae --data "$VALID"
digitvae calibrate models/mnist-cvae --data "$VALID"
digitvae quality --data "$DATA" --write -m mnist-vae -m mnist-vae-geron -m mnist-cvae -m mnist-vae-2d

"""Train the small digit classifier the tests read reconstructions with: tests/data/digit-mlp.npz.

A 784-192-10 MLP (ReLU), trained on the 5,000-digit training subset with random shifts of up to
2 pixels, stored as float16 weights (about 300 KB) so that the tests classify with numpy alone.

    python scripts/make_test_classifier.py --data ../shared/data/mnist

needs the [train] extra (torch); reads train5k-*.gz for training and valid5k-*.gz for the
accuracy it records in the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digitvae.runtime.digits.idx import read_mnist_images, read_mnist_labels

HIDDEN = 192
EPOCHS = 40
SHIFT = 2


def _shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each digit by up to SHIFT pixels each way, filling with black."""
    n = len(x)
    padded = nn.functional.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT))
    dy = torch.randint(0, 2 * SHIFT + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * SHIFT + 1, (n,), generator=generator)
    return torch.stack([padded[i, dy[i] : dy[i] + 28, dx[i] : dx[i] + 28] for i in range(n)])


def train(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> nn.Sequential:
    """Train the MLP on float [N,28,28] digits in [0,1]."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(_shifted(x[batch], generator)), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def predict(weights: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """Return the class the stored MLP gives each float [N,28,28] digit (as the tests compute it)."""
    hidden = np.maximum(images.reshape(len(images), -1) @ weights["w1"].astype(np.float32) + weights["b1"], 0.0)
    return np.argmax(hidden @ weights["w2"].astype(np.float32) + weights["b2"], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("-o", "--output", type=Path, default=Path("tests/data/digit-mlp.npz"))
    args = parser.parse_args()
    train_path = args.data / "train5k-images-idx3-ubyte.gz"
    images = read_mnist_images(train_path).astype(np.float32) / 255.0
    labels = read_mnist_labels(args.data / "train5k-labels-idx1-ubyte.gz")
    model = train(images, labels)
    first, second = model[1], model[3]
    weights = {
        "w1": first.weight.detach().numpy().T.astype(np.float16),
        "b1": first.bias.detach().numpy().astype(np.float32),
        "w2": second.weight.detach().numpy().T.astype(np.float16),
        "b2": second.bias.detach().numpy().astype(np.float32),
    }
    valid = read_mnist_images(args.data / "valid5k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    valid_labels = read_mnist_labels(args.data / "valid5k-labels-idx1-ubyte.gz")
    accuracy = float(np.mean(predict(weights, valid) == valid_labels))
    info = {
        "model": f"MLP 784-{HIDDEN}-10, ReLU, float16 weights",
        "trained_on": train_path.name,
        "train_sha256": hashlib.sha256(train_path.read_bytes()).hexdigest(),
        "epochs": EPOCHS,
        "max_shift": SHIFT,
        "valid5k_accuracy": round(accuracy, 4),
        "made_by": "scripts/make_test_classifier.py",
    }
    np.savez_compressed(args.output, **weights, info=np.array(json.dumps(info)))
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes): {accuracy:.2%} on valid5k")


if __name__ == "__main__":
    main()

"""The checked-in MNIST digits the tests read (tests/data/mnist): 300 training and 100 test-set images."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data" / "mnist"
TRAIN_IMAGES = DATA / "train-images-idx3-ubyte.gz"
VALID_IMAGES = DATA / "t10k-images-idx3-ubyte.gz"

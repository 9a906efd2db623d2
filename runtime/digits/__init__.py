"""Digits on disk: MNIST's IDX files, .npy arrays and PNG pictures, and photos prepared as MNIST digits."""

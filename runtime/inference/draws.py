"""What `generate` decodes: a request's random inputs, the prior's labels and the decoder's, block by block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..arrays import as_seed
from ..errors import InputError
from .prior import ANY_CLASS, LearnedPrior, Prior, UnseededDraws, any_class_rows
from .sessions import SMALL_BATCH

#: Codes z [n, D] and the decoder's labels for them (None for a model that is not conditional).
Codes = tuple[np.ndarray, np.ndarray | None]
#: The prior's inputs for n draws (noise [n, D], uniform [n] or None, label [n]) and the decoder's labels.
Inputs = tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]


class Draws:
    """The draws of one model's prior for `generate` and `sample_codes`, seeded or from the OS."""

    def __init__(
        self, name: str, prior: Prior, num_classes: int, labels: Callable[[Any, int], np.ndarray | None]
    ) -> None:
        self.name = name
        self.prior = prior
        self.num_classes = num_classes
        self._labels = labels  # the model's check of the decoder's labels
        # Unseeded draws come from blocks made ahead from one generator seeded by the OS.
        self.unseeded = UnseededDraws(prior)

    def pooled(self, n: int, seed: int | None, digit: Any) -> bool:
        """Return whether the codes come from the learned prior's pool: a small unseeded batch then costs a decode."""
        one_class = digit is None or np.ndim(digit) == 0
        unconditional = not self.num_classes and isinstance(self.prior, LearnedPrior)
        return seed is None and one_class and n <= SMALL_BATCH and unconditional

    def pooled_codes(self, n: int, digit: Any) -> np.ndarray:
        """Return n codes from the pool of the class asked for (any class without `digit`)."""
        label = ANY_CLASS if digit is None else int(self.classes(n, digit)[1][0])
        return self.unseeded.codes(label, n)

    def code_blocks(self, n: int, seed: int | None, digit: Any, block: int) -> Iterator[Codes]:
        """Yield the codes of `iter_generate` and the decoder's labels for them, block by block."""
        for noise, uniform, label, labels in self.input_blocks(n, seed, digit, block):
            yield self.prior.sample(noise, uniform, label), labels

    def one_block(self, n: int, seed: int | None, digit: Any) -> Inputs:
        """Return `input_blocks(n, seed, digit, n)`'s one block; any class of a model that is not conditional goes direct."""
        if digit is None and not self.num_classes:  # the numbers input_blocks draws, without its generators
            if seed is None:
                noise, uniform = self.unseeded.inputs(n)
            else:
                noise, uniform = self.prior.draw(np.random.default_rng(as_seed(seed)), n)
            return noise, uniform, any_class_rows(n), None
        ((noise, uniform, label, labels),) = self.input_blocks(n, seed, digit, n)
        return noise, uniform, label, labels

    def input_blocks(self, n: int, seed: int | None, digit: Any, block: int) -> Iterator[Inputs]:
        """Yield the random inputs of `iter_generate` and the labels of the prior and decoder, block by block."""
        rows: np.ndarray | None = None
        if digit is not None and np.ndim(digit) != 0:
            self.classes(n, digit)  # a digit per row: all checked before the first block
            rows = np.asarray(digit)
        unseeded = (self.unseeded.inputs(min(block, n - i)) for i in range(0, n, block))
        draws = unseeded if as_seed(seed) is None else self.prior.draw_blocks(np.random.default_rng(seed), n, block)
        for i, (noise, uniform) in zip(range(0, n, block), draws):
            m = len(noise)
            part = digit if rows is None else rows[i : i + m]
            if part is None and self.num_classes:
                part = np.arange(i, i + m) % self.num_classes  # every class in turn, continued across blocks
            part, label = self.classes(m, part)
            yield noise, uniform, label, self._labels(part, m) if self.num_classes else None

    def classes(self, n: int, digit: Any) -> tuple[Any, np.ndarray]:
        """Return the digits asked for and the prior's `label` input for n draws.

        A conditional model without `digit` is asked for every class in turn; the prior's
        `label` is the digit where the prior has classes, else -1 (any class).
        """
        if digit is None and self.num_classes:
            digit = np.arange(n) % self.num_classes
        elif digit is not None and not self.num_classes and not self.prior.num_classes:
            raise InputError(
                f"model {self.name!r} cannot be asked for a digit: it is not conditional and its prior "
                "has no classes (fit one per class with `digitvae prior fit MODEL --data IMAGES --labels LABELS`, "
                "or use a conditional model such as mnist-cvae)"
            )
        if digit is not None and self.prior.num_classes:
            return digit, self.prior.class_rows(digit, n)
        return digit, any_class_rows(n)

"""The latent prior p(z): N(0, I), or a learned one whose sampler and log-density are ONNX graphs.

Every draw is a function of numbers the caller can reproduce in any language: `noise`
float32 [N, D] from N(0, I), then `uniform` float32 [N] from U[0, 1) (which picks a mixture
component), and `label` int64 [N] (-1 for any class, 0..C-1 for that class's own prior).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arrays import as_labels
from ..errors import InputError
from .contract import run_checked
from .likelihood import standard_normal_log_prob
from .sessions import CHUNK, SMALL_BATCH, LazySession, SmallBatchRunner

if TYPE_CHECKING:
    import onnxruntime as ort

#: The label that asks a learned prior for any class (its marginal).
ANY_CLASS = -1


class Prior:
    """p(z) = N(0, I): samples are the noise itself, the log-density is exact in numpy."""

    kind = "standard_normal"

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    @property
    def num_classes(self) -> int:
        """Return how many classes the prior can be asked for (0 = none)."""
        return 0

    def class_rows(self, digit: Any, n: int) -> np.ndarray:
        """Return the prior's `label` input for n draws: -1 without a digit, else the class per row."""
        if digit is None:
            return np.full(n, ANY_CLASS, np.int64)
        if not self.num_classes:
            raise InputError(f"this model's prior ({self.kind}) has no classes; it cannot be asked for a digit")
        return as_labels(digit, n, self.num_classes, "digit")

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the random inputs of n draws: noise [n, D], and uniform [n] where the prior uses one."""
        return rng.standard_normal((n, self.latent_dim), dtype=np.float32), None

    def draw_blocks(
        self, rng: np.random.Generator, n: int, block: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield `draw(rng, n)` in consecutive blocks of at most `block` rows: the same numbers, one block in memory."""
        if n <= block:  # one block: no generator to copy
            yield self.draw(rng, n)
            return
        after = None
        if self.uses_uniform:
            # draw() takes the uniforms after all n noise rows: a copy of the generator skips to them.
            after = copy.deepcopy(rng)
            for i in range(0, n, block):
                after.standard_normal((min(block, n - i), self.latent_dim), dtype=np.float32)
        for i in range(0, n, block):
            m = min(block, n - i)
            noise = rng.standard_normal((m, self.latent_dim), dtype=np.float32)
            yield noise, None if after is None else after.random(m, dtype=np.float32)

    @property
    def uses_uniform(self) -> bool:
        """Return whether a draw takes a uniform number as well as the noise."""
        return False

    def sample(self, noise: np.ndarray, uniform: np.ndarray | None, label: np.ndarray) -> np.ndarray:
        """Return codes z float32 [N, D] for these random inputs."""
        return noise

    def log_prob(self, z: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
        """Return log p(z) (log p(z | label) per row where given) in nats, float64 [...] over z's last axis."""
        return standard_normal_log_prob(z)


class LearnedPrior(Prior):
    """A prior given by two ONNX graphs: the sampler and the log-density (see docs/contract.md)."""

    def __init__(
        self,
        latent_dim: int,
        description: dict[str, Any],
        sampler: ort.InferenceSession,
        density: ort.InferenceSession | LazySession,
    ) -> None:
        super().__init__(latent_dim)
        self.kind = str(description["kind"])
        self._classes = int(description["classes"])
        self._sampler = sampler
        # The density serves likelihoods only: a LazySession opens it on the first.
        self._density_slot = density if isinstance(density, LazySession) else LazySession.opened(density)
        self._small = SmallBatchRunner(sampler)

    @property
    def num_classes(self) -> int:
        """Return how many classes the prior can be asked for (0 = none)."""
        return self._classes

    @property
    def _density(self) -> ort.InferenceSession:
        return self._density_slot.get()

    @_density.setter
    def _density(self, session: ort.InferenceSession) -> None:
        self._density_slot = LazySession.opened(session)

    @property
    def uses_uniform(self) -> bool:
        """Return whether a draw takes a uniform number as well as the noise: a mixture picks its component."""
        return True

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the random inputs of n draws: noise [n, D], then uniform [n]."""
        noise = rng.standard_normal((n, self.latent_dim), dtype=np.float32)
        return noise, rng.random(n, dtype=np.float32)

    def sample(self, noise: np.ndarray, uniform: np.ndarray | None, label: np.ndarray) -> np.ndarray:
        """Return codes z float32 [N, D] for these random inputs, CHUNK rows per onnxruntime call."""
        if uniform is None:
            raise InputError("a mixture prior needs `uniform` for every draw")
        if len(noise) <= SMALL_BATCH:
            feeds = {"noise": noise, "uniform": uniform, "label": label}
            return self._run_sampler(feeds, len(noise))
        z = np.empty_like(noise)
        for i in range(0, len(noise), CHUNK):
            # The sampler gathers a D x D factor per row: chunks bound that memory.
            feeds = {"noise": noise[i : i + CHUNK], "uniform": uniform[i : i + CHUNK], "label": label[i : i + CHUNK]}
            z[i : i + CHUNK] = self._run_sampler(feeds, len(feeds["noise"]))
        return z

    def _run_sampler(self, feeds: dict[str, np.ndarray], n: int) -> np.ndarray:
        small = self._small if n <= SMALL_BATCH else None
        return run_checked(self._sampler, ["z"], feeds, "prior sampler", ((n, self.latent_dim),), small)[0]

    def log_prob(self, z: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
        """Return log p(z) (log p(z | label) per row where given) in nats, float64 [...] over z's last axis."""
        shape = z.shape[:-1]
        flat = np.ascontiguousarray(z.reshape(-1, self.latent_dim), dtype=np.float32)
        if label is None:
            rows = np.full(len(flat), ANY_CLASS, np.int64)
        else:
            # One label per leading row of z, repeated over any sample axes after it.
            rows = np.repeat(np.asarray(label, np.int64), len(flat) // len(label))
        out = np.empty(len(flat))
        density = self._density
        for i in range(0, len(flat), CHUNK):
            part = flat[i : i + CHUNK]
            feeds = {"z": part, "label": rows[i : i + CHUNK]}
            out[i : i + CHUNK] = run_checked(density, ["log_prob"], feeds, "prior density", ((len(part),),))[0]
        return out.reshape(shape)


class BlockPool:
    """Rows made a block at a time and handed out in order, for unseeded draws.

    Drawing the noise of one digit costs two generator calls, and a learned prior's sampler one
    onnxruntime call, together a sixth of decoding it; made 1,024 rows at a time, the cost per
    row all but vanishes. Taking rows is thread-safe, and no row is handed out twice.
    """

    BLOCK = 1024

    def __init__(self, make: Callable[[int], tuple[Any, ...]]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._block = make(self.BLOCK)
        self._next = 0

    def take(self, n: int) -> tuple[Any, ...]:
        """Return the next n rows of each array of the block (None stays None)."""
        block, start, end = self._rows(n)
        return tuple([None if a is None else a[start:end] for a in block])

    def take_one(self, n: int) -> np.ndarray:
        """Return the next n rows of a pool of one array (the same rows `take(n)[0]` would)."""
        block, start, end = self._rows(n)
        rows: np.ndarray = block[0][start:end]
        return rows

    def _rows(self, n: int) -> tuple[tuple[Any, ...], int, int]:
        """Reserve the next n rows: return the block they are in and their span."""
        with self._lock:
            start = self._next
            end = start + n
            if end > self.BLOCK:
                if n > self.BLOCK // 4:
                    return self._make(n), 0, n
                self._block = self._make(self.BLOCK)
                start, end = 0, n
            self._next = end
            return self._block, start, end


def draw_pool(prior: Prior, rng: np.random.Generator) -> BlockPool:
    """Return a pool of the prior's random inputs: (noise [n, D], uniform [n] or None)."""
    return BlockPool(lambda n: prior.draw(rng, n))


def code_pool(prior: Prior, rng: np.random.Generator, label: int = ANY_CLASS) -> BlockPool:
    """Return a pool of codes drawn from the prior for one class (or any): (z [n, D],)."""

    def make(n: int) -> tuple[np.ndarray]:
        noise, uniform = prior.draw(rng, n)
        return (prior.sample(noise, uniform, np.full(n, label, np.int64)),)

    return BlockPool(make)


class UnseededDraws:
    """A prior's unseeded random inputs and codes, from pools fed by one generator seeded by the OS."""

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        self.rng: np.random.Generator | None = None
        self._inputs: BlockPool | None = None
        self._codes: dict[int, BlockPool] = {}

    def inputs(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the prior's random inputs for n draws: (noise [n, D], uniform [n] or None)."""
        if self._inputs is None:
            self._inputs = draw_pool(self.prior, self._rng())
        noise, uniform = self._inputs.take(n)
        return noise, uniform

    def codes(self, label: int, n: int) -> np.ndarray:
        """Return n codes [n, D] drawn from the prior for one class (or ANY_CLASS)."""
        pool = self._codes.get(label)
        if pool is None:
            pool = self._codes[label] = code_pool(self.prior, self._rng(), label)
        return pool.take_one(n)

    def _rng(self) -> np.random.Generator:
        # Seeding a generator from the OS costs as much as decoding one digit: do it once.
        if self.rng is None:
            self.rng = np.random.default_rng()
        return self.rng


#: The prior's `label` for small unseeded-class batches, made once (read-only).
_ANY_CLASS = {n: np.full(n, ANY_CLASS, np.int64) for n in range(1, 17)}
for _array in _ANY_CLASS.values():
    _array.flags.writeable = False


def any_class_rows(n: int) -> np.ndarray:
    """Return the prior's `label` input that asks for any class, for n rows (read-only for small n)."""
    label = _ANY_CLASS.get(n)
    return np.full(n, ANY_CLASS, np.int64) if label is None else label

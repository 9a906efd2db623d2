"""Small batches of new digits in one onnxruntime call: the prior's sampler and the decoder composed.

A seeded one-digit `generate` otherwise runs two sessions, and the sampler's call costs a
fifth of the decoder's. The composed graph (folders.compose) has the same nodes and weights, so
it gives the same digits; it is opened on first use, and used only after it has matched the
two sessions bit for bit on fixed draws. Where it cannot be made, or differs, the runtime keeps
the two sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..arrays import all_finite
from ..errors import DigitVAEError
from ..folders.compose import compose_generator
from ..logs import get_logger
from .sessions import SMALL_BATCH, SmallBatchRunner, open_session, session_options

if TYPE_CHECKING:
    import onnxruntime as ort

logger = get_logger(__name__)

#: (noise [n, D], uniform [n], label [n]) -> image [n, 1, 28, 28], through the two sessions.
Reference = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: The batch sizes the composed session must match the two sessions at before it is used.
_CHECKED_SIZES = (1, SMALL_BATCH)


class ComposedGenerator:
    """The sampler and decoder as one CPU session for batches of up to SMALL_BATCH draws, made on first use.

    It holds the two graphs' bytes as verified at load, and drops them once it has tried to
    compose them: nothing is read from disk after load.
    """

    def __init__(self, sampler: bytes, decoder: bytes, threads: int | None, reference: Reference, where: Path) -> None:
        self._graphs: tuple[bytes, bytes] | None = (sampler, decoder)
        self._threads = threads
        self._where = where  # the model folder, for log lines
        self._reference: Reference | None = reference
        self._runner: SmallBatchRunner | None = None
        self._lock = threading.Lock()

    def images(self, noise: np.ndarray, uniform: np.ndarray | None, label: np.ndarray) -> np.ndarray | None:
        """Return the decoder's images [n, 1, 28, 28] for these draws, or None to ask for the two sessions.

        None also answers non-finite images: the two sessions then say which graph is at fault.
        """
        runner = self._runner or self._open()
        if runner is None or uniform is None:
            return None
        found = runner.run(["image"], {"noise": noise, "uniform": uniform, "label": label})
        if found is None or not all_finite(found[0]):
            return None
        return found[0]

    def _open(self) -> SmallBatchRunner | None:
        with self._lock:
            reference, graphs = self._reference, self._graphs
            if self._runner is None and reference is not None and graphs is not None:
                self._reference = self._graphs = None  # one attempt, whatever its outcome
                session = self._compose(*graphs)
                if session is not None and _matches(session, reference):
                    self._runner = SmallBatchRunner(session)
            return self._runner

    def _compose(self, sampler: bytes, decoder: bytes) -> ort.InferenceSession | None:
        data = compose_generator(sampler, decoder)
        if data is None:
            logger.debug("%s: the sampler and decoder do not compose; generating through both", self._where)
            return None
        try:
            return open_session(data, session_options(self._threads))
        except Exception as exc:  # onnxruntime raises several unrelated types
            logger.debug("%s: the composed generator does not load (%s); generating through both", self._where, exc)
            return None


def _matches(session: ort.InferenceSession, reference: Reference) -> bool:
    """Return whether the composed session gives the two sessions' images, bit for bit, on fixed draws."""
    dim = session.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    for n in _CHECKED_SIZES:
        noise = rng.standard_normal((n, dim), dtype=np.float32)
        uniform = rng.random(n, dtype=np.float32)
        label = np.full(n, -1, np.int64)
        try:
            got = session.run(["image"], {"noise": noise, "uniform": uniform, "label": label})[0]
        except Exception as exc:  # onnxruntime raises several unrelated types
            logger.debug("the composed generator fails (%s); generating through both sessions", exc)
            return False
        try:
            want = reference(noise, uniform, label)
        except DigitVAEError as exc:  # the two sessions fail here: their own calls will say so
            logger.debug("the two sessions fail on the check (%s); generating through both", exc)
            return False
        if not np.array_equal(got, want):
            logger.debug("the composed generator differs from the two sessions; generating through both")
            return False
    return True

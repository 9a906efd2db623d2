"""onnxruntime sessions for the runtime, and a low-overhead path for small batches on CPU."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..logs import get_logger
from . import plugins

if TYPE_CHECKING:
    import onnxruntime as ort

    from .providers import Plan

logger = get_logger(__name__)

#: Largest batch served from preallocated buffers; larger batches use InferenceSession.run,
#: where the model's own work dwarfs the per-call overhead.
SMALL_BATCH = 16
#: Most rows per onnxruntime call: larger batches go through in chunks, which bounds a session's
#: working memory however many digits or codes a call is given.
CHUNK = 4096
_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Return the session options every digitvae session uses; threads 0 or None = onnxruntime's default."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Failures reach the caller as exceptions (ModelError); onnxruntime printing them too would
    # put a second, raw line beside the one error line.
    opts.log_severity_level = 4
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def open_session(
    model: bytes | str, opts: ort.SessionOptions | None = None, plan: Plan | None = None
) -> ort.InferenceSession:
    """Create an onnxruntime session on a model's bytes or path: every session digitvae makes starts here.

    `plan` (see providers.plan) says which providers to use; None means the CPU provider alone.
    Plugin EPs go in by device, ahead of the others, which go in by name. `opts` belong to this
    session alone: the plugin EPs' devices are added to them.
    """
    import onnxruntime as ort

    opts = opts if opts is not None else ort.SessionOptions()
    if plan is None or not plan.plugins:
        names = plan.names if plan is not None else ["CPUExecutionProvider"]
        options = plan.options if plan is not None else [{}]
        if plan is not None and plan.record_assignment:
            opts.add_session_config_entry(plugins.RECORD_ASSIGNMENT, "1")
        return ort.InferenceSession(model, sess_options=opts, providers=names, provider_options=options)
    # Session options that carry devices take no `providers=`: the built-in providers are added
    # to them by name, after the plugins; the CPU provider backs them all without being named.
    for choice in plan.plugins:
        choice.add_to(opts)
    for name, ep_options in zip(plan.names, plan.options):
        if name != "CPUExecutionProvider":
            opts.add_provider(name, {str(k): str(v) for k, v in ep_options.items()})
    return ort.InferenceSession(model, sess_options=opts)


def active_providers(session: ort.InferenceSession) -> list[str]:
    """Return the providers a session really runs on: those it reports, less any that took no node."""
    reported = list(session.get_providers())
    taken = plugins.assigned(session)
    if taken is None:
        return reported
    # A plugin EP is listed even when it declined every node; onnxruntime's CPU provider backs them all.
    return [p for p in reported if p in taken or p == "CPUExecutionProvider"]


class LazySession:
    """A session made on first use, once, however many threads ask at the same time.

    A model's encoder and prior density serve calls an app may never make: opening them at load
    would add their onnxruntime set-up (about a third of a load) to every start.
    """

    def __init__(self, opener: Callable[[], ort.InferenceSession]) -> None:
        self._opener: Callable[[], ort.InferenceSession] | None = opener
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    @classmethod
    def opened(cls, session: ort.InferenceSession) -> LazySession:
        """Return a LazySession holding a session already made."""
        lazy = cls(lambda: session)
        lazy.get()
        return lazy

    @property
    def is_open(self) -> bool:
        """Return whether the session has been made."""
        return self._session is not None

    def get(self) -> ort.InferenceSession:
        """Return the session, making it on the first call (a failure is raised, and raised again next time)."""
        session = self._session
        if session is None:
            with self._lock:
                if self._session is None:
                    assert self._opener is not None
                    self._session = self._opener()
                    self._opener = None  # drops the model bytes it held
                session = self._session
        return session


@dataclass
class _Plan:
    """Bound buffers for one batch size."""

    inputs: dict[str, np.ndarray]
    filled: list[tuple[str, np.ndarray]]  # the inputs as pairs: iterated on every call
    outputs: dict[str, np.ndarray]
    call: tuple[Any, ...]
    keep: list[Any]  # the OrtValues that wrap the buffers must live as long as the plan


#: The providers whose sessions decode large batches in place (run_into): the CPU's, and CUDA's,
#: which copies the outputs from the GPU straight into the bound arrays (1,024 digits on an H200:
#: 1.23-1.32x faster than a copy after InferenceSession.run). Others, untried, run the ordinary way.
IN_PLACE_PROVIDERS = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})


class SmallBatchRunner:
    """Run a CPU session on small batches through preallocated, bound inputs and outputs.

    `InferenceSession.run` converts its feeds and allocates every output on each call: a few
    microseconds, several percent of a one-digit decode. Here each batch size gets its
    buffers once, wrapped as OrtValues and handed to `run_with_ortvaluevector`; a call copies
    the inputs in and the requested output out. Calls from several threads at once are safe:
    while one holds the buffers, the others fall back to the ordinary path.
    """

    def __init__(self, session: ort.InferenceSession, max_rows: int = SMALL_BATCH) -> None:
        self._session = session
        self._max_rows = max_rows
        self._plans: dict[int, _Plan] = {}
        self._lock = threading.Lock()
        self._inputs = {i.name: (_DTYPES.get(i.type), list(i.shape[1:])) for i in session.get_inputs()}
        self._outputs = {o.name: (_DTYPES.get(o.type), list(o.shape[1:])) for o in session.get_outputs()}
        self._first = next(iter(self._inputs))
        static = all(
            dtype is not None and all(isinstance(d, int) for d in shape)
            for dtype, shape in [*self._inputs.values(), *self._outputs.values()]
        )
        providers = session.get_providers()
        # A captured CUDA graph replays the buffers of its capture: fresh bound arrays would be ignored.
        captured = session.get_provider_options().get("CUDAExecutionProvider", {}).get("enable_cuda_graph") == "1"
        #: Whether the bound paths may run at all: False sends every batch the ordinary way.
        self.enabled = static and set(providers) <= IN_PLACE_PROVIDERS and not captured
        # CUDA gains nothing on small batches: its bound buffers cost more than the conversions they
        # save (one digit on an H200: 89.5 us against 82.8 us). It decodes large ones in place.
        self._small_batches = providers == ["CPUExecutionProvider"]
        self._bound: bool | None = None  # whether run_into's bound output is filled: None until tried
        self._options: Any = None
        self._cpu: Any = None
        if self.enabled:
            self._options, self._cpu = _run_settings()
        # The binding's own method: the Python wrapper's graph-capture check (1 us of a 30 us
        # decode) concerns captured graphs, which these sessions never have (see `captured`).
        self._run = getattr(getattr(session, "_sess", None), "run_with_ortvaluevector", session.run_with_ortvaluevector)

    def _plan(self, n: int) -> _Plan:
        inputs = {name: np.zeros([n, *shape], dtype) for name, (dtype, shape) in self._inputs.items()}
        outputs = {name: np.zeros([n, *shape], dtype) for name, (dtype, shape) in self._outputs.items()}
        call, keep = self._binding(inputs, outputs)
        return _Plan(inputs, list(inputs.items()), outputs, call, keep)

    def _binding(
        self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> tuple[tuple[Any, ...], list[Any]]:
        """Return the arguments of a run that reads `inputs` and writes `outputs` in place, and what they hold.

        The second value (the OrtValues wrapping the arrays, and their vectors) must outlive every
        run of the first.
        """
        import onnxruntime as ort
        from onnxruntime.capi import _pybind_state as C

        values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in [*inputs.items(), *outputs.items()]}
        feeds, fetches = C.OrtValueVector(), C.OrtValueVector()
        for name in inputs:
            feeds.push_back(values[name]._get_c_value())
        for name in outputs:
            fetches.push_back(values[name]._get_c_value())
        call = (self._options, list(inputs), feeds, list(outputs), fetches, [self._cpu] * len(outputs))
        return call, [values, feeds, fetches]

    def run(self, outputs: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray] | None:
        """Return copies of these outputs for these feeds, or None to ask for the ordinary path."""
        n = len(feeds[self._first])
        if n > self._max_rows or not (self.enabled and self._small_batches) or not self._lock.acquire(blocking=False):
            return None
        try:
            plan = self._plans.get(n)
            if plan is None:
                return self._first_run(n, outputs, feeds)
            if not _fill(plan, feeds):
                return None
            try:
                self._run(*plan.call)
            except Exception:  # onnxruntime raises several unrelated types: the ordinary path says what failed
                return None
            return [plan.outputs[name].copy() for name in outputs]
        finally:
            self._lock.release()

    def run_into(self, output: str, feeds: Mapping[str, np.ndarray], out: np.ndarray) -> bool:
        """Run a batch of any size with `out` bound as `output`, so the result lands in place; False: use `run`.

        Large batches gain most from it: no output is allocated and copied (3 MB a 1,024-digit
        decode). The feeds must be contiguous arrays of the declared dtypes; the first call
        checks that onnxruntime really writes into `out`.
        """
        if (
            not self.enabled
            or self._bound is False
            or any(
                feeds[name].dtype != dtype or not feeds[name].flags.c_contiguous
                for name, (dtype, _) in self._inputs.items()
            )
        ):
            return False
        try:
            call, _keep = self._binding({name: feeds[name] for name in self._inputs}, {output: out})
            if self._bound is None:
                out.fill(np.nan)
            self._run(*call)
        except Exception:  # onnxruntime raises several unrelated types: the ordinary path says what failed
            return False
        if self._bound is None:
            self._bound = not np.isnan(out).all(axis=tuple(range(1, out.ndim))).any()
            if not self._bound:
                logger.debug("bound outputs left unset; large batches use InferenceSession.run")
                return False
        return True

    def _first_run(self, n: int, outputs: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray] | None:
        """Make the buffers for a batch size and check that onnxruntime really fills them."""
        try:
            plan = self._plan(n)
        except Exception as exc:  # an onnxruntime without this API, or one that changed it
            self._disable(f"small-batch path unavailable: {exc}")
            return None
        if not _fill(plan, feeds):
            return None
        for buffer in plan.outputs.values():
            buffer.fill(np.nan)
        try:
            self._run(*plan.call)
        except Exception as exc:
            self._disable(f"small-batch path failed: {exc}")
            return None
        if any(np.isnan(buffer).any() for buffer in plan.outputs.values()):
            # Unfilled buffers, or NaN the model itself computes from these inputs: the ordinary
            # path tells them apart. Only buffers that onnxruntime left unset turn this path off.
            names = list(plan.outputs)
            expected = self._session.run(names, dict(feeds))
            if not all(np.array_equal(plan.outputs[k], v, equal_nan=True) for k, v in zip(names, expected)):
                self._disable("small-batch path left outputs unset; not used")
                return None
        self._plans[n] = plan
        return [plan.outputs[name].copy() for name in outputs]

    def _disable(self, reason: str) -> None:
        logger.debug(reason)
        self.enabled = False


def _run_settings() -> tuple[Any, Any]:
    """Return the run options and the CPU device every bound run uses."""
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state as C

    run_options = ort.RunOptions()
    run_options.log_severity_level = 4  # a failed run falls back to the ordinary path, which says why
    return run_options, C.OrtDevice(C.OrtDevice.cpu(), C.OrtDevice.default_memory(), 0)


def _fill(plan: _Plan, feeds: Mapping[str, np.ndarray]) -> bool:
    """Copy the feeds into the bound inputs; False when they do not fit (the ordinary path says why)."""
    for name, buffer in plan.filled:
        value = feeds.get(name)
        # Exactly the buffer's shape and dtype, as the callers' checks leave them: anything else
        # (another dtype, a row count that would broadcast) goes the ordinary way.
        if type(value) is not np.ndarray or value.shape != buffer.shape or value.dtype != buffer.dtype:
            return False
        buffer[...] = value
    return True


class Runners(dict[str, SmallBatchRunner]):
    """A model's small-batch runners by role: the decoder's made now, the others' when first asked for."""

    def __init__(self, decoder: SmallBatchRunner, **sessions: Callable[[], ort.InferenceSession]) -> None:
        super().__init__(decoder=decoder)
        self._sessions = sessions

    def __missing__(self, role: str) -> SmallBatchRunner:
        runner = self[role] = SmallBatchRunner(self._sessions[role]())
        return runner

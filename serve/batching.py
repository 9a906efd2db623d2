"""Gather concurrent small requests into one model call (`digitvae serve --batch-size`, `--batch-delay`).

Each request is first checked and turned into row-wise feeds on its own: every array has one row
per digit or code, and its outputs will too. Requests of the same kind (a role's input form)
that arrive together are then run as one: their feeds are joined row after row, the model runs
once, and each request gets its own rows of the outputs back. A batch is run as soon as it holds
`max_rows` rows, once a quarter of `delay` went by without another request joining it, or
`delay` seconds after its first request arrived, whichever comes first; a request of
`max_rows` rows or more runs alone at once. A batch waits at all only while requests of its kind
come together: when the batch before it held several, or its first request came within a
quarter of `delay` of the one before. Otherwise (a lone client) it runs on the next turn of the
event loop, taking along only the requests that arrived meanwhile, and waits microseconds.

A gathering batch looks again on every turn of the event loop instead of sleeping on a timer:
on a busy machine a process woken by a timer waits for a core, which cost milliseconds per
request where the delay was a fraction of one (measured, docs/serve.md).

The models compute each row on its own, so a request's rows are the same whether it ran alone
or in a batch (with one onnxruntime thread; see `digitvae.cli.serve`). Errors stay per request:
if a batched call fails, each of its requests is run again alone and gets its own answer or error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from digitvae.runtime.errors import DigitVAEError

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
#: Runs the model on one kind of request's row-wise feeds and returns row-wise outputs.
Run = Callable[[Hashable, Arrays], Arrays]
#: Told the rows and the requests of each model call the batcher makes.
Observe = Callable[[int, int], None]
#: The part of the delay without a new request after which a batch stops waiting for more.
QUIET = 0.25


@dataclass
class _Job:
    feeds: Arrays
    rows: int
    future: asyncio.Future[Arrays]


@dataclass
class _Pending:
    jobs: list[_Job] = field(default_factory=list)
    rows: int = 0
    deadline: float = 0.0
    last: float = 0.0
    #: Whether to wait for more requests at all (else run on the next turn of the loop).
    waits: bool = False


class Batcher:
    """Run requests of one served model in batches of at most `max_rows` rows, each waiting at most `delay` s."""

    def __init__(self, run: Run, max_rows: int, delay: float, observe: Observe | None = None) -> None:
        if max_rows < 1 or delay < 0:
            raise ValueError(f"max_rows must be at least 1 and delay at least 0, got {max_rows} and {delay}")
        self._run = run
        self.max_rows = max_rows
        self.delay = delay
        self._observe = observe
        self._pending: dict[Hashable, _Pending] = {}
        #: The kinds whose last batch held several requests: their next batch waits for more.
        self._busy: set[Hashable] = set()
        #: When the latest request of each kind arrived (event loop time).
        self._arrived: dict[Hashable, float] = {}

    async def __call__(self, kind: Hashable, feeds: Arrays) -> Arrays:
        """Return the outputs for one request's row-wise feeds, run alone or with others of the same kind."""
        rows = len(next(iter(feeds.values())))
        if rows >= self.max_rows or any(len(array) != rows for array in feeds.values()):
            # Feeds of unequal rows (z and label, say) are the model's to refuse: joined with
            # others' they could line up, and rows would be paired across requests.
            self._called(rows, 1)
            return self._run(kind, feeds)
        loop = asyncio.get_running_loop()
        pending = self._pending.get(kind)
        if pending is not None and pending.rows + rows > self.max_rows:
            self._flush(kind)  # this request would overfill the batch: run that one, start the next
            pending = None
        now = loop.time()
        if pending is None:
            close = now - self._arrived.get(kind, -np.inf) < self.delay * QUIET
            pending = self._pending[kind] = _Pending(deadline=now + self.delay, waits=close or kind in self._busy)
            loop.call_soon(self._tick, kind, pending)
        self._arrived[kind] = now
        job = _Job(feeds, rows, loop.create_future())
        pending.last = now
        pending.jobs.append(job)
        pending.rows += rows
        if pending.rows >= self.max_rows:
            self._flush(kind)
        return await job.future

    def _tick(self, kind: Hashable, pending: _Pending) -> None:
        """Run a gathering batch once requests stop joining it or its time is up; else look again next turn."""
        if self._pending.get(kind) is not pending:
            return  # run already, full
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not pending.waits or now - pending.last >= self.delay * QUIET or now >= pending.deadline:
            self._flush(kind)
        else:
            loop.call_soon(self._tick, kind, pending)

    def _flush(self, kind: Hashable) -> None:
        pending = self._pending.pop(kind, None)
        if pending is None:
            return
        # A request whose client went away (its task cancelled) is not computed.
        jobs = [job for job in pending.jobs if not job.future.done()]
        if len(pending.jobs) > 1:
            self._busy.add(kind)
        else:
            self._busy.discard(kind)
        if not jobs:
            return
        if len(jobs) == 1:
            self._settle(jobs[0], kind)
            return
        self._called(sum(job.rows for job in jobs), len(jobs))
        try:
            joined = {name: np.concatenate([job.feeds[name] for job in jobs]) for name in jobs[0].feeds}
            outputs = self._run(kind, joined)
        except DigitVAEError as exc:
            # One request's values made the batch fail (a label out of range, an overflow): run
            # each alone, so that only that request gets the error.
            logger.debug("a batch of %d requests failed (%s); running them one by one", len(jobs), exc)
            for job in jobs:
                self._settle(job, kind)
            return
        except Exception as exc:  # the server's own failure: every request in the batch is answered 500
            for job in jobs:
                job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            job.future.set_result({name: array[start : start + job.rows] for name, array in outputs.items()})
            start += job.rows

    def _settle(self, job: _Job, kind: Hashable) -> None:
        """Run one request alone and give it its outputs or its error."""
        self._called(job.rows, 1)
        try:
            job.future.set_result(self._run(kind, job.feeds))
        except Exception as exc:
            job.future.set_exception(exc)

    def _called(self, rows: int, requests: int) -> None:
        if self._observe is not None:
            self._observe(rows, requests)

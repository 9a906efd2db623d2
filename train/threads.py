"""How many threads a training process gives torch: the cores it may use, less those other work keeps busy.

torch takes one thread per core by default. On a machine where other work runs, those threads
wait for each other whenever one is not scheduled, and an epoch can take several times longer
than with fewer threads (docs/training.md has the figures), so the default counts only the cores
that are free now.
"""

from __future__ import annotations

import os
import time

from digitvae.runtime.errors import InputError

#: Most threads `--threads` accepts: far beyond any machine.
MAX_THREADS = 1024


def usable_cores() -> int:
    """Return how many cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


#: How long `busy_cores` watches the machine: long enough to average out the scheduler's ticks.
SAMPLE_SECONDS = 0.25


def busy_cores() -> int:
    """Return how many cores other work keeps busy now, rounded (0 where it cannot be told).

    Linux: the share of time the cores spent working over SAMPLE_SECONDS (/proc/stat), while
    this process waits. The load average would do elsewhere, but it lags by minutes: a job that
    has just ended would still count, and a run right after another would take one thread.
    """
    first = _cpu_times()
    if first is None:
        return _load_average()
    time.sleep(SAMPLE_SECONDS)
    second = _cpu_times()
    if second is None:
        return _load_average()
    total = second[0] - first[0]
    idle = second[1] - first[1]
    return round((os.cpu_count() or 1) * (total - idle) / total) if total > 0 else 0


def _cpu_times() -> tuple[int, int] | None:
    """Return the whole machine's (total, idle + iowait) clock ticks from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 6:
        return None
    ticks = [int(v) for v in fields[1:]]
    return sum(ticks[:8]), ticks[3] + ticks[4]


def _load_average() -> int:
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return 0


def default_threads(processes: int = 1) -> int:
    """Return the threads each of `processes` training processes should take: the free cores, shared, at least 1."""
    cores = usable_cores()
    return max(1, min(cores, cores - busy_cores()) // max(1, processes))


def resolve_threads(requested: int | None, processes: int = 1) -> int | None:
    """Return the thread count to give torch, or None to leave torch's own setting alone.

    An explicit request wins; without one, OMP_NUM_THREADS (which torchrun sets to 1 for several
    processes) is respected, and otherwise the free cores are taken.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= MAX_THREADS:
            raise InputError(f"threads must be an integer from 1 to {MAX_THREADS}, got {requested!r}")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return default_threads(processes)

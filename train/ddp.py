"""Data-parallel training: the process group torchrun starts, each rank's share of a batch, and agreement.

Every rank keeps the same random generator as a single process would and draws everything a
global batch needs (its order, augmentation and noise) from it; each rank then works on one
contiguous share of that batch. Summed losses scaled by the number of processes make DDP's
averaged gradient the gradient of the whole batch, so K processes follow the single-process
run step for step (see docs/training.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from digitvae.runtime.errors import InputError

logger = logging.getLogger(__name__)

#: Variables torchrun sets in every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class PeerFailed(Exception):
    """Another process of the run failed; that process reports why."""


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: its rank among world_size, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    #: True when torchrun started the process and a process group is up (even with one process).
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Return whether this is rank 0: the one that reads and writes the run folder and reports."""
        return self.rank == 0

    @property
    def backend(self) -> str:
        """Return the process group's backend, for messages ("none" in a single process)."""
        if not self.distributed:
            return "none"
        return "nccl" if self.device.type == "cuda" else "gloo"

    def shard(self, size: int) -> slice:
        """Return this rank's contiguous share of a global batch of `size` items.

        The shares of ranks 0..K-1 follow each other and cover the batch; their sizes differ by at
        most one (a last, partial batch may leave a rank nothing).
        """
        base, extra = divmod(size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch that the processes cannot share equally."""
        if batch_size % self.world_size:
            below = batch_size - batch_size % self.world_size
            suggestion = f"{below} or {below + self.world_size}" if below else str(self.world_size)
            raise InputError(
                f"--batch-size {batch_size} is the global batch and must be a multiple of the "
                f"{self.world_size} processes (try {suggestion})"
            )

    def wrap(self, module: nn.Module) -> nn.Module:
        """Return the module as DDP replicas in a distributed run, else the module itself."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def all_sum(self, values: list[float]) -> list[float]:
        """Return each value summed over the ranks (float64)."""
        if not self.distributed:
            return values
        # CPU tensors: the gloo side of the group carries them, also beside nccl.
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            dist.barrier()

    def agree(self, error: BaseException | None) -> None:
        """Fail together: if any rank passes an error, the lowest such rank raises it, the others PeerFailed.

        For checks that may differ between ranks (a data file missing on one machine): one
        process reports the reason, and none waits forever for a peer that already left.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        failed: list[Any] = [None] * self.world_size
        dist.all_gather_object(failed, error is not None)
        first = next((rank for rank, bad in enumerate(failed) if bad), None)
        if first is None:
            return
        if first == self.rank and error is not None:
            raise error
        raise PeerFailed(f"process {first} failed")

    def from_main(self, value: Any) -> Any:
        """Return rank 0's value on every rank (any picklable object; an exception on rank 0 is raised everywhere).

        Rank 0 re-raises its own exception; the other ranks raise PeerFailed.
        """
        if not self.distributed:
            if isinstance(value, BaseException):
                raise value
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], BaseException):
            if self.is_main:
                raise value
            raise PeerFailed("process 0 failed")
        return box[0]


SINGLE = Processes()


def launched_by_torchrun() -> bool:
    """Return whether torchrun (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """Return the torch device for --device; under torchrun, `cuda` means the GPU of the local rank."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise InputError(f"--device {name!r}: training runs on cpu or cuda")
    if not torch.cuda.is_available():
        raise InputError(f"--device {name}: torch sees no CUDA device (torch {torch.__version__})")
    count = torch.cuda.device_count()
    if local_rank is not None:
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if device.index is not None and local_size > 1:
            raise InputError(
                f"--device {name}: with {local_size} processes on this machine each takes the GPU of its "
                "local rank; pass --device cuda"
            )
        index = device.index if device.index is not None else local_rank
    else:
        index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        raise InputError(f"--device {name}: this process needs GPU {index}, but torch sees {count}")
    return torch.device("cuda", index)


def start(device: str) -> Processes:
    """Join the process group torchrun set up (gloo for cpu, nccl for cuda), or return SINGLE's like.

    Without torchrun's variables this is plain single-process training on `device`.
    """
    if not launched_by_torchrun():
        return Processes(device=resolve_device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    # The group comes first, so that a bad --device on one machine fails every rank cleanly.
    on_cuda = torch.device(device).type == "cuda" if _parses(device) else False
    backend = "cpu:gloo,cuda:nccl" if on_cuda else "gloo"
    dist.init_process_group(backend)
    error: BaseException | None = None
    chosen = torch.device("cpu")
    try:
        chosen = resolve_device(device, local_rank)
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
    except InputError as exc:
        error = exc
    processes = Processes(rank, world_size, local_rank, chosen, distributed=True)
    processes.agree(error)
    logger.info("process %d of %d on %s (%s)", rank, world_size, chosen, processes.backend)
    return processes


def joined() -> bool:
    """Return whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Return this process's rank in its group, 0 outside one."""
    return dist.get_rank() if joined() else 0


def settle() -> None:
    """Wait, on the way out after a failure, until every process still in the group gets here.

    torchrun stops every process as soon as one ends: this gives the one that reports a failure
    the time to say why. A peer that is gone already ends the wait.
    """
    if not joined():
        return
    try:
        dist.barrier()
    except Exception:  # the group is broken: nobody left to wait for
        logger.debug("no barrier on the way out", exc_info=True)


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if joined():
        dist.destroy_process_group()


def _parses(name: str) -> bool:
    try:
        torch.device(name)
    except RuntimeError:
        return False
    return True

"""Data-parallel runs under `torchrun`: one model per process, each process a slice of the prompts.

`torchrun --nproc-per-node N -m interp capture ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; `world()` joins them into a process group (NCCL on GPUs, gloo on the CPU) and says
which rank this is. Without torchrun it is a world of one and nothing is initialised, so every
command runs unchanged in a single process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from interp.errors import InputError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, requested: str = "cpu") -> str:
        """The device this rank's model goes on: its own GPU under NCCL, else what was asked."""
        if self.backend == "nccl":
            return f"cuda:{self.local_rank}"
        return requested

    def slice(self, n: int) -> range:
        """Contiguous, balanced share of `n` items for this rank (the first n % size ranks get one more)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def share(self, batches: Sequence[Any]) -> list[Any]:
        """This rank's batches of a list every rank builds the same way: batch k goes to rank
        k % size, so each batch holds exactly the prompts it holds in a single process."""
        return [b for k, b in enumerate(batches) if k % self.size == self.rank]

    def merge(self, rows: dict[int, Any], n: int) -> list[Any]:
        """Every rank's {index: row}, gathered into one list of `n` rows on every rank."""
        merged: dict[int, Any] = {}
        for part in self.gather(rows):
            merged.update(part)
        if sorted(merged) != list(range(n)):
            raise RuntimeError(f"the ranks returned {len(merged)} of {n} rows; every rank must run the same prompts")
        return [merged[i] for i in range(n)]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (a list of one without torchrun)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise InputError(f"environment variable {name}={v!r} is not an integer (set by torchrun)") from None


def world() -> World:
    """This process's place in a torchrun launch (a world of one otherwise); joins the group once."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local else "gloo"
    if not torch.distributed.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend=backend)
    return World(rank, size, local, backend)


@contextmanager
def process_group() -> Iterator[World]:
    """`world()` for the duration of a command; the group is torn down at the end."""
    w = world()
    try:
        yield w
    finally:
        if w.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def in_order(parts: Sequence[Sequence[Any]]) -> list[Any]:
    """Concatenate per-rank lists gathered with `World.gather` (ranks hold contiguous slices)."""
    return [x for part in parts for x in part]

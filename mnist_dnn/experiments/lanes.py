"""Lanes: runs' epochs on JAX CPU devices at the same time, while this thread records the finished ones.

    with Lanes(program, devices) as lanes:
        lanes.start(member, lanes.idle[0], epoch, state)   # the epoch runs on that device, in a thread of its own
        finished = lanes.next_finished()                   # waits for the first to end: member, epoch, result

Each device runs one epoch at a time. Waiting on their devices from one thread, XLA's CPU
devices ran their programs mostly one after another (measured by counting the process's
running threads); each waiting in a thread of its own, they overlap, and JAX lets go of
the GIL while they run. The caller - bundles.py - starts a device's next epoch as soon as
one ends, so the Python work between epochs (recording history and checkpoints, setting
up the next run, scoring a finished one) runs while the other devices compute, instead of
every device waiting for the slowest and then for all the recording.

Leaving the block, by an exception too, waits for the epochs still running (XLA cannot be
stopped half-way); their results are dropped.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Finished:
    """An epoch that ran: whose (the caller's member), which (0-based), where, its results and its seconds."""

    member: Any
    epoch: int
    device: Any
    result: Any
    seconds: float


class Lanes:
    """One epoch at a time on each of `devices`, through `program` (fused.EpochProgram), each waited on by a thread."""

    def __init__(self, program, devices):
        self.program = program
        self.devices = list(devices)
        self._pool = ThreadPoolExecutor(len(self.devices), thread_name_prefix="epoch")
        self._running: dict[Future, tuple[Any, int, Any]] = {}  # future -> (member, epoch, device), in start order

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True)

    @property
    def idle(self) -> list:
        """The devices running nothing, in device order."""
        taken = {device for _, _, device in self._running.values()}
        return [device for device in self.devices if device not in taken]

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def running(self, member) -> bool:
        return any(owner is member for owner, _, _ in self._running.values())

    def start(self, member, device, epoch: int, seed: int, state: tuple) -> None:
        """Run epoch `epoch` (0-based) of `member`, from `state` (fused.epoch_state's pair), on the idle `device`."""
        if device not in self.idle:
            raise ValueError(f"{device} is running an epoch already")
        self.program.trace_on(device, *state)  # the data's copy there and the program's trace: from this thread
        future = self._pool.submit(self.program.epoch_on, device, epoch, seed, *state)
        self._running[future] = (member, epoch, device)

    def next_finished(self) -> Finished:
        """Wait for an epoch to end and return it (the first started, of those that ended together)."""
        if not self._running:
            raise ValueError("no epoch is running")
        ended, _ = wait(self._running, return_when=FIRST_COMPLETED)
        future = next(future for future in self._running if future in ended)
        member, epoch, device = self._running.pop(future)
        result, seconds = future.result()
        return Finished(member, epoch, device, result, seconds)

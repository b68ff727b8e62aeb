"""Lanes: runs' epochs on JAX CPU devices at the same time, while this thread records the finished ones.

    train_on_devices(set_up, count, program, devices, done)     # a sweep's bundle (bundles.train_bundle)
    in_step_on_devices(members, set_up, program, devices, ...)   # a tune trial's seeds (bundles.train_in_step)

Both drive `Lanes`: each device runs one epoch at a time, waited on by a thread of its own
(waiting on their devices from one thread, XLA's CPU devices ran their programs mostly
one after another, measured by counting the process's running threads; each in a thread
of its own, they overlap, and JAX lets go of the GIL while they run). A device's next
epoch starts as soon as one ends and is recorded, so the Python work between epochs
(recording history and checkpoints, setting up the next run, scoring a finished one) runs
while the other devices compute, instead of every device waiting for the slowest and then
for all the recording. All of that work, Keras included, stays in this thread.

A member is bundles' run of a bundle: `start` (epochs recorded), `cfg`, `model`,
`control`, `latest`, `trained(epochs)`, `record(finished, program)`, `finish(program)`.
Leaving a Lanes block, by an exception too, waits for the epochs still running (XLA
cannot be stopped half-way).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from mnist_dnn.core.interrupts import poll
from mnist_dnn.training.fused import epoch_state


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

    def start(self, member, device) -> None:
        """Run `member`'s next epoch (its `start`), from its model's recorded state, on the idle `device`."""
        if device not in self.idle:
            raise ValueError(f"{device} is running an epoch already")
        state = epoch_state(member.model)
        self.program.trace_on(device, *state)  # the data's copy there and the program's trace: from this thread
        future = self._pool.submit(self.program.epoch_on, device, member.start, member.cfg.train.seed, *state)
        self._running[future] = (member, member.start, device)

    def next_finished(self) -> Finished:
        """Wait for an epoch to end and return it (the first started, of those that ended together)."""
        if not self._running:
            raise ValueError("no epoch is running")
        ended, _ = wait(self._running, return_when=FIRST_COMPLETED)
        future = next(future for future in self._running if future in ended)
        member, epoch, device = self._running.pop(future)
        result, seconds = future.result()
        return Finished(member, epoch, device, result, seconds)


def train_on_devices(set_up: Callable[[int], Any], count: int, epochs: int, program, devices, done) -> None:
    """A bundle's members on CPU devices (one device: in turn), each trained through on the device it starts on.

    A member is set up while the devices run the others' epochs, and takes the first
    device to come free. A Ctrl-C (or any KeyboardInterrupt) lands once every member
    running has recorded and checkpointed the epoch it was running.
    """
    waiting = list(range(count))
    ready: list[tuple[int, Any]] = []  # set up, waiting for a device
    position_of: dict[int, int] = {}

    def fill(device) -> None:
        """Start the next member with epochs to train on `device`; finish those with none (resumed, all trained)."""
        while ready or waiting:
            position, member = ready.pop(0) if ready else (waiting[0], set_up(waiting.pop(0)))
            position_of[id(member)] = position
            if not member.trained(epochs):
                lanes.start(member, device)
                return
            done(position, member.model, member.finish(program))

    with Lanes(program, devices) as lanes:
        try:
            while True:
                for device in lanes.idle:
                    fill(device)
                if waiting and not ready and lanes.busy:  # the next member, set up while the devices compute
                    ready.append((waiting[0], set_up(waiting.pop(0))))
                if not lanes.busy:
                    return
                finished = lanes.next_finished()
                member = finished.member
                member.record(finished, program)
                if not member.trained(epochs):
                    lanes.start(member, finished.device)
                else:  # scored before its device takes the next member: a device runs its programs in turn
                    done(position_of[id(member)], member.model, member.finish(program))
                    fill(finished.device)
                poll()
        except KeyboardInterrupt:
            while lanes.busy:  # the epochs still running are recorded (and checkpointed) before it lands
                finished = lanes.next_finished()
                finished.member.record(finished, program)
            raise


def in_step_on_devices(
    members: list[Any],
    set_up: Callable[[int], Any],
    program,
    devices,
    on_epoch: Callable[[int, list], bool],
    safe_point: Callable[[], None],
) -> bool:
    """bundles.train_in_step's epochs on CPU devices (one device: in turn); whether on_epoch stopped them.

    `members` are set up by `set_up(position)` as devices come free, or while the devices
    compute (the first is already). A free device takes the member furthest behind, and may
    run a member's next epoch before on_epoch has had its word on the one before (3 seeds on
    2 cores: 3 epoch times for 2 epochs, not 4); such an epoch is recorded only once
    on_epoch lets the trial go on, and dropped if it stops it. Each member records an epoch
    before its next starts, from the recorded state, as its lone run does.
    """
    epochs = members[0].cfg.train.epochs
    decided = 0  # epochs every member has been through that on_epoch let the trial go on from
    ahead: list[Finished] = []  # epochs run before on_epoch's word on the one before

    def owes_epoch(member: Any) -> bool:
        return member is None or (not member.control.stop and member.start <= decided)

    def next_to_run(lanes: Lanes) -> int | None:
        free = [
            position
            for position, member in enumerate(members)
            if member is None
            or (
                not member.trained(epochs)
                and member.start <= decided + 1
                and not lanes.running(member)
                and all(early.member is not member for early in ahead)
            )
        ]
        return min(free, key=lambda position: members[position].start if members[position] else 0, default=None)

    def record(finished: Finished) -> None:
        finished.member.record(finished, program)
        safe_point()

    with Lanes(program, devices) as lanes:
        while True:
            for device in lanes.idle:
                position = next_to_run(lanes)
                if position is None:
                    break
                lanes.start(members[position] or set_up(position), device)
            if None in members and lanes.busy:  # the next member, set up while the devices compute
                set_up(members.index(None))
                safe_point()
            if not lanes.busy:
                return False
            finished = lanes.next_finished()
            if finished.epoch > decided:
                ahead.append(finished)
                continue
            record(finished)
            while not any(map(owes_epoch, members)) and any(member.start > decided for member in members):
                if on_epoch(decided + 1, [member.latest for member in members]):
                    return True
                decided += 1
                for early in [early for early in ahead if early.epoch <= decided]:
                    ahead.remove(early)
                    record(early)

"""A run's lifecycle: status.json (running, then complete, interrupted or failed) and the lock held while it trains.

with lifecycle.run_status(run_dir, lifecycle.KIND_TRAIN) as outcome:
    ...  # train; a Ctrl-C marks it interrupted, an error failed, in one line
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.memory import allocation_failure
from mnist_dnn.runs.files import CHECKPOINT_FILE, METRICS_FILE, STATUS_FILE
from mnist_dnn.runs.outputs import storage_error
from mnist_dnn.runs.records import FORMAT_VERSION, check_format_version, json_text, read_json

STATUSES = ("running", "complete", "interrupted", "failed")


KIND_TRAIN = "train"  # status.json's kind: a run `train --resume` can continue


KIND_CUSTOM = "custom"  # one of the custom-digit experiment's runs: rerun the experiment instead


KIND_TRIAL = "tune-trial"  # a run of a tune trial: `tune` asks a cut-short trial again instead


def _status_json(status: str, details: dict[str, Any]) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return json_text({"format_version": FORMAT_VERSION, "status": status, **details})


def write_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json: running while training, then complete, interrupted (resumable) or failed.

    `started_at` (UTC, ISO 8601) is set by the first status a run gets and kept by every
    later one, resumes included: `plot` picks the latest run by it, whatever the run's name.
    """
    details.setdefault("started_at", _started_at(run_dir) or datetime.now(UTC).isoformat(timespec="seconds"))
    atomic_write_text(run_dir / STATUS_FILE, _status_json(status, details))


def _started_at(run_dir: Path) -> str | None:
    try:
        value = (read_json(run_dir / STATUS_FILE) or {}).get("started_at")
    except UserInputError:  # a damaged status.json is being replaced: its time is lost with it
        return None
    return value if isinstance(value, str) else None


def started_at(run_dir: Path) -> datetime | None:
    """When a run first started, from its status.json; None for runs from before it was recorded."""
    try:
        return datetime.fromisoformat(_started_at(run_dir) or "")
    except ValueError:
        return None


def overwrite_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json rewritten in place: the last resort when no new file can be made (full disk, read-only dir).

    Rewriting an existing small file needs no new blocks and no directory entry, so it can
    succeed where the atomic temp-file-and-rename cannot.
    """
    if (started := _started_at(run_dir)) is not None:
        details.setdefault("started_at", started)
    with open(run_dir / STATUS_FILE, "r+b") as handle:
        handle.write(_status_json(status, details).encode())
        handle.truncate()


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """status.json's content, None for a run directory from before it existed; a damaged one is refused."""
    data = read_json(run_dir / STATUS_FILE)
    if data is None:
        return None
    if data.get("status") not in STATUSES:
        raise UserInputError(f"{run_dir / STATUS_FILE}: 'status' must be one of {', '.join(STATUSES)}")
    return data


def check_run_format(run_dir: Path) -> None:
    """Refuse a run directory written by a newer mnist-dnn, whose files this version might misread."""
    for name in (STATUS_FILE, METRICS_FILE):
        data = read_json(run_dir / name)
        if data is not None:
            check_format_version(data.get("format_version", 1), run_dir / name)


def this_process() -> dict[str, Any]:
    """What status.json records of the process training a run, so another can tell it is still alive."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


_held_locks: dict[str, list[int]] = {}  # resolved directory -> [fd, times taken]: re-entrant within a process


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run (or sweep) directory for as long as the block runs.

    Two processes training one run would mix their epochs; a pid in status.json cannot
    tell "alive" from "a new process that got the same number", and checking it races.
    `flock` on the directory's own descriptor does neither: no file appears in the
    directory, the kernel releases it when the process ends however it ends, and only
    one process holds it. The pid status.json records only goes into the message.
    """
    key = str(directory.resolve())
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield
        finally:
            _held_locks[key][1] -= 1
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserInputError(f"{directory}: {_holder(directory)} is still working in it; stop it first") from None
    _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        _held_locks[key][1] -= 1
        if not _held_locks[key][1]:
            del _held_locks[key]
            os.close(fd)  # releases the lock


def _holder(directory: Path) -> str:
    """Who holds a run's lock, as far as its status.json says: words for a message, never a test."""
    try:
        status = read_json(directory / STATUS_FILE) or {}
    except UserInputError:
        status = {}
    pid = status.get("pid")
    return f"process {pid}" if isinstance(pid, int) and status.get("status") == "running" else "another process"


@contextmanager
def run_status(run_dir: Path, kind: str) -> Iterator[dict[str, Any]]:
    """status.json around one run: running, then complete (its checkpoint removed), interrupted or failed.

    The block may add to the dict it gets what the final status records ("diverged").
    """
    with run_statuses([run_dir], kind):
        outcome: dict[str, Any] = {}
        yield outcome
        write_status(run_dir, "complete", kind=kind, **outcome)
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # model.keras has it all now


@contextmanager
def run_statuses(run_dirs: Sequence[Path], kind: str) -> Iterator[None]:
    """Lock the runs and mark them running; if the block ends early, mark them interrupted or failed, in one line.

    Each run directory's lock (`run_lock`) is held throughout and taken before any status
    is written, so a second `train --resume` of the same run is refused, touching nothing,
    while this one trains; status.json's pid only names this process in that message. A
    full disk or an unwritable directory is the user's to fix: a one-line `UserInputError`
    naming the file.
    """
    with ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(run_lock(run_dir))
        with _marked_on_exit(run_dirs, kind):
            yield


@contextmanager
def _marked_on_exit(run_dirs: Sequence[Path], kind: str) -> Iterator[None]:
    try:
        for run_dir in run_dirs:
            write_status(run_dir, "running", kind=kind, **this_process())
        yield
    except KeyboardInterrupt:
        _mark(run_dirs, "interrupted", kind)
        raise
    except OSError as exc:
        _mark(run_dirs, "failed", kind, reason=str(exc))
        problem = storage_error(exc)
        if problem is None:
            raise
        raise problem from None
    except BaseException as exc:
        problem = allocation_failure(exc)
        if problem is not None:  # the estimate checked before building missed it: still one line
            _mark(run_dirs, "failed", kind, reason=str(problem))
            raise problem from None
        _mark(run_dirs, "failed", kind, reason=str(exc) if isinstance(exc, UserInputError) else type(exc).__name__)
        raise


def _mark(run_dirs: Sequence[Path], status: str, kind: str, **details: Any) -> None:
    """Record how the runs ended; on a full or read-only disk in place, and if even that fails, leave it.

    The error that ended the run is on its way to the user either way, and says more than
    a status could.
    """
    for run_dir in run_dirs:
        if (run_dir / STATUS_FILE).exists() and read_status(run_dir)["status"] == "complete":
            continue  # of several runs, the ones that finished stay complete
        try:
            write_status(run_dir, status, kind=kind, **details)
        except OSError:
            with suppress(OSError):
                overwrite_status(run_dir, status, kind=kind, **details)

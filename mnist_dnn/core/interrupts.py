"""Ctrl-C and SIGTERM: stop at a safe point in mnist-dnn's own code; a second signal stops at once.

    with graceful_interrupts():        # the CLI, around a whole command
        ...                            # SIGINT/SIGTERM raise KeyboardInterrupt in our code
        with deferred():               # a checkpoint and its history row: both or neither
            ...                        # a signal here waits until the block ends
        poll()                         # a safe point: a signal that waited is raised here

Python runs a signal handler between bytecodes of whatever Python code runs next, and
that is often not ours: JAX's garbage-collection callback (where an exception is printed
and dropped, so the Ctrl-C was lost and the run completed), or JAX/XLA code called back
from C++ while tracing or compiling (where an exception leaves native state half-built:
exit 134 or a segfault). So the handler raises only when it interrupts a frame of this
package; anywhere else it marks the signal pending, and the next `poll()`, `deferred()`
exit or the command's end raises it. Every epoch and stage of training passes such a
point, so a Ctrl-C takes effect within an epoch (within a batch on the fit engine).

Only the CLI installs the handlers - the second signal's handler writes to stderr and
ends the process, which is a command's business, not a library's.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_OUR_CODE = str(Path(__file__).resolve().parents[1]) + os.sep  # the whole mnist_dnn package


class _State:
    installed = 0  # nesting of graceful_interrupts()
    depth = 0  # nesting of deferred() blocks
    pending = False  # a signal arrived where raising was not safe; poll() raises it
    interrupted = False  # the first signal has been delivered (or is pending)


def _handler(signum, frame) -> None:
    if _State.interrupted:  # the second signal: the user wants out now, cleanup or not
        os.write(2, b"\nInterrupted again: exiting at once.\n")
        os._exit(EXIT_INTERRUPTED)
    _State.interrupted = True
    if _State.depth or not _is_ours(frame):
        _State.pending = True
        return
    raise KeyboardInterrupt


def _is_ours(frame) -> bool:
    """Whether the interrupted Python frame is this package's: there an exception unwinds like any other."""
    return frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_OUR_CODE)


def poll() -> None:
    """A safe point: raise the Ctrl-C that arrived while other code ran (nothing happens without one)."""
    if _State.pending and not _State.depth:
        _State.pending = False
        raise KeyboardInterrupt


def pending() -> bool:
    """Whether a signal is still waiting for a safe point (the CLI asks when a command ends)."""
    return _State.pending


class Interrupted(Exception):
    """A command stopped by Ctrl-C at a safe point; the message says what was kept and how to continue.

    Stages raise it in place of the KeyboardInterrupt; the CLI prints it and exits with EXIT_INTERRUPTED.
    """


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt at safe points; the old handlers come back after.

    Nested uses share the outermost one's state, so a signal that arrived while Keras was
    being imported is still pending when training starts.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    if _State.installed:
        _State.installed += 1
        try:
            yield
        finally:
            _State.installed -= 1
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _State.depth, _State.pending, _State.interrupted = 0, False, False
    for sig in _SIGNALS:
        signal.signal(sig, _handler)
    _State.installed = 1
    try:
        yield
    finally:
        _State.installed = 0
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal back until the block is done, so what it writes is complete; then raise it."""
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
    if not _State.depth and _State.pending:
        _State.pending = False
        raise KeyboardInterrupt

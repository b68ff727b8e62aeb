"""Ctrl-C and SIGTERM during training: stop cleanly between writes; a second one stops at once.

    with graceful_interrupts():        # the CLI, around a training run
        ...                            # SIGINT/SIGTERM raise KeyboardInterrupt here
        with deferred():               # a checkpoint and its history row: both or neither
            ...                        # a signal here waits until the block ends

Only the CLI installs the handlers - the second signal's handler writes to stderr and
ends the process, which is a command's business, not a library's. `deferred` is harmless
without them (Python's own SIGINT handler is not held back, but every file write is
atomic anyway). Python runs handlers between bytecodes: a signal that arrives while a
compiled epoch of the fused engine runs takes effect when that call returns, a second
or so later on a CPU.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    depth = 0  # nesting of deferred() blocks
    pending = False  # a signal arrived inside a deferred() block
    interrupted = False  # the first signal has been delivered (or is pending)


def _handler(signum, frame) -> None:
    if _State.interrupted:  # the second signal: the user wants out now, cleanup or not
        os.write(2, b"\nInterrupted again: exiting at once.\n")
        os._exit(EXIT_INTERRUPTED)
    _State.interrupted = True
    if _State.depth:
        _State.pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (outside `deferred` blocks); the old handlers come back after."""
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    _State.depth, _State.pending, _State.interrupted = 0, False, False
    for sig in _SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
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

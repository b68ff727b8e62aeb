"""Worker processes that die with the process that started them, however it ends (kill -9 included).

    die_with_parent(parent_pid, signal.SIGKILL)   # first thing in a spawned worker

A driver that is killed outright runs no cleanup, so it cannot stop its workers; Linux
can: prctl(PR_SET_PDEATHSIG) asks the kernel to send the worker a signal the moment its
parent goes. The worker is spawned from the driver's main thread (the death signal
follows the thread that forked, and the main thread lives as long as the process).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies; exit now if it already has.

    Elsewhere than Linux nothing is set (the worker lives until its job ends, as before).
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent_pid:  # the parent died before the request was in place: nobody will signal us
        os.kill(os.getpid(), sig)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine has that pid (one of another user counts: its files are not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

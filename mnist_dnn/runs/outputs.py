"""Where a command may write: checked before any work, so a bad --out costs nothing and clobbers nothing.

    target = check_output_file(out, (".csv",), reads=[model_file])   # a file the command writes
    check_output_dir(out)                                              # a directory it writes into

An output file must be new or an existing regular file with the expected suffix; never a
FIFO, device or socket (writing would block or replace the node), never a file the same
command reads, and never one of a run directory's own files, which hold a trained run. A
directory's parents must all be directories. Each refusal is one UserInputError line.

An existing file is replaced only when mnist-dnn wrote it, or with --overwrite
(`overwrite=True`). "Written by mnist-dnn" is recognised from the file itself, so it holds
after a copy or a move: a figure carries TOOL_MARK in its metadata (plots.save_figure sets
PNG Software, SVG and PDF Creator), a confusion matrix CSV starts with CONFUSION_HEADER; and
any file in a directory mnist-dnn made (a run's, an experiment's, a sweep's: one holding one of
runs.files.TOOL_DIRECTORY_FILES) is the tool's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs.files import RUN_FILES, TOOL_DIRECTORY_FILES

TOOL_MARK = "mnist-dnn"  # in every figure's metadata: how a later command knows it may replace the file
CONFUSION_HEADER = "true\\predicted,"  # how evaluate.confusion_csv's first line starts
_LOOK = 65536  # bytes read at each end of an existing file: PNG and SVG metadata come first, PDF's last

_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_output_file(
    path: Path, suffixes: Sequence[str], reads: Iterable[Path] = (), option: str = "--out", overwrite: bool = False
) -> Path:
    """Refuse `path` as a file to write unless it is safe to create or replace; return it unchanged.

    `option` names where the path came from in messages ("--out"); empty for a name the command made.
    An existing file not written by mnist-dnn is refused unless `overwrite`.
    """
    where = f"{option} {path}" if option else str(path)
    if path.suffix.lower() not in suffixes:
        raise UserInputError(f"{where}: expected a {_either(suffixes)} file name")
    if path.name in RUN_FILES:
        raise UserInputError(f"{where}: {path.name} is one of a run directory's own files; choose another name")
    kind = _kind(path)
    if kind == "a directory":
        raise UserInputError(f"{where}: is a directory (expected a {_either(suffixes)} file name)")
    if kind not in (None, "a regular file"):
        raise UserInputError(f"{where}: is {kind}, not a regular file; choose a file name")
    _check_parents(path, where)
    for read in reads:
        if _same_file(path, read):
            raise UserInputError(f"{where}: is {read}, which this command reads; choose another file")
    if kind is not None and not overwrite and not written_by_this_tool(path):
        raise UserInputError(
            f"{where}: already exists and was not written by mnist-dnn; pass --overwrite to replace it"
        )
    return path


def written_by_this_tool(path: Path) -> bool:
    """Whether an existing regular file is one mnist-dnn wrote (see the module docstring for how it is told)."""
    if any((path.parent / name).is_file() for name in TOOL_DIRECTORY_FILES):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(_LOOK)
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - _LOOK))
            tail = handle.read(_LOOK)
    except OSError:
        return False
    return head.startswith(CONFUSION_HEADER.encode()) or any(TOOL_MARK.encode() in part for part in (head, tail))


def check_output_dir(path: Path, option: str = "--out") -> Path:
    """Refuse `path` as a directory to write into unless it is one, or can be made; return it unchanged."""
    where = f"{option} {path}" if option else str(path)
    kind = _kind(path)
    if kind not in (None, "a directory"):
        raise UserInputError(f"{where}: is {kind}, not a directory")
    _check_parents(path, where)
    return path


def _check_parents(path: Path, where: str) -> None:
    """The nearest existing ancestor must be a directory: a file there makes every write below it fail."""
    for parent in path.absolute().parents:
        kind = _kind(parent)
        if kind is None:
            continue
        if kind != "a directory":
            raise UserInputError(f"{where}: {parent} is {kind}, not a directory")
        return


def _kind(path: Path) -> str | None:
    """What is at `path` (symbolic links followed), in words; None when nothing is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None if not os.path.islink(path) else "a broken symbolic link"
    except NotADirectoryError:  # a file where a parent directory should be: _check_parents names it
        return None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be inspected ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _SPECIAL if test(mode)), "a special file")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: by identity when both exist (hard links too), else by resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _either(suffixes: Sequence[str]) -> str:
    return suffixes[0] if len(suffixes) == 1 else ", ".join(suffixes[:-1]) + " or " + suffixes[-1]

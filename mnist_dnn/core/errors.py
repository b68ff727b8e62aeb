"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit status 2; anything else is
a bug in mnist-dnn and keeps its traceback.
"""

import codecs
import errno
import os
import stat
from typing import BinaryIO

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines and terminals break lines at
_ONE_LINE = {ord(c): c.encode("unicode_escape").decode() for c in _LINE_BREAKS}


class UserInputError(ValueError):
    """A bad path, file, or config value; the message names it and says what was expected.

    Always one line: a line break inside a file name (or a value) the message quotes is
    shown escaped, as `\\n`, so a hostile name cannot forge a second line of output.
    """

    def __str__(self) -> str:
        return super().__str__().translate(_ONE_LINE)


def read_user_text(path, expected: str, *, missing: str = "file not found", encoding: str = "utf-8") -> str:
    """The text of a file the user named; missing, a directory or not text is their mistake, said in one line.

    `expected` says what the file should be ("a TOML file"); `missing` replaces the
    message for a file that is not there. UTF-16 is read too, with a byte-order mark or
    without one (ASCII text with every other byte 0): spreadsheets export "Unicode text" so.
    """
    try:
        with open_regular(path, expected) as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise UserInputError(f"{path}: {missing}") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif len(raw) >= 2 and raw.count(0) * 2 >= len(raw) - 1:
        encoding = "utf-16-le" if raw[1::2].count(0) >= raw[::2].count(0) else "utf-16-be"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        if encoding.startswith("utf-16"):
            raise UserInputError(f"{path}: not readable as UTF-16 (save it as UTF-8; expected {expected})") from None
        raise UserInputError(f"{path}: not a text file (expected {expected})") from None


def open_regular(path, expected: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file; a directory, FIFO, device or socket is one line.

    The file is opened without blocking and checked (fstat) before a byte is read: a FIFO
    where a run file should be would block its reader for good, ignoring SIGTERM, and a
    device may never end. A missing file raises FileNotFoundError, for the caller to word.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a directory (expected {expected})") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise UserInputError(f"{path}: is not a regular file (expected {expected})") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):  # os.open opens a directory read-only without complaint
            raise UserInputError(f"{path}: is a directory (expected {expected})")
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise UserInputError(f"{path}: is {kind}, not a regular file (expected {expected})")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")

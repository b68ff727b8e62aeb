"""Checks on the Optuna storage behind `tune --storage`, so that every bad one is the user's one line.

    repair_journal(Path("runs/tune/study.journal"))   # before Optuna reads it (tune._storage)

A journal file is append-only, so a crash or a full disk mid-append leaves its last line
cut off. Optuna skips such a line when reading but appends the next record right after
it, which welds both into one line it cannot parse, and every later read fails. Before
opening, the cut-off tail is moved into a file of its own beside the journal
(`study.journal.torn-<UTC time>`, kept for inspection) and the journal ends at its last
complete record: the study continues from there.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

from mnist_dnn.core.errors import UserInputError

log = logging.getLogger(__name__)

DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'", "pymysql": "PyMySQL"}


def refuse_in_memory(url: str) -> None:
    """sqlite:/// (or sqlite://) is a database in memory: a study there is gone when the command ends."""
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return  # Optuna's own error names the URL
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UserInputError(
            f"--storage {url}: an in-memory SQLite database keeps nothing after the command; "
            "name a file (sqlite:///study.db) or leave --storage out (a journal in --out)"
        )


def missing_driver(url: str, exc: ImportError) -> UserInputError:
    """The one line for an RDB URL whose driver is not installed (SQLAlchemy imports it only on connecting).

    Optuna re-raises the driver's ImportError without its name; the cause keeps it.
    """
    import sqlalchemy.engine

    module = exc.name or getattr(exc.__cause__, "name", None) or sqlalchemy.engine.make_url(url).get_driver_name()
    return UserInputError(
        f"--storage {url}: needs the database driver {module!r}, not installed; "
        f"install it: pip install {DRIVER_PACKAGES.get(module, module)}"
    )


def repair_journal(path: Path) -> None:
    """Before Optuna reads the journal: a torn last record set aside (under its lock), a foreign file refused."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if not (path.is_file() and path.stat().st_size):
        return
    lock = JournalFileSymlinkLock(str(path))  # no process appends while the tail is checked
    lock.acquire()
    try:
        set_aside_torn_tail(path)
    finally:
        lock.release()
    check_journal(path)


def set_aside_torn_tail(path: Path) -> Path | None:
    """Move a last line without its newline into `<path>.torn-<UTC time>`, cut the journal there; -> that file.

    Nothing is lost: the torn bytes are kept as they were, beside the journal.
    """
    with open(path, "rb+") as journal:
        size = journal.seek(0, os.SEEK_END)
        journal.seek(max(0, size - 1))
        if journal.read(1) == b"\n":
            return None
        journal.seek(0)
        content = journal.read()
        end = content.rfind(b"\n") + 1  # 0 when not even the first record is whole
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{path.name}.torn-{stamp}")
        with open(aside, "xb") as out:
            out.write(content[end:])
            out.flush()
            os.fsync(out.fileno())
        journal.truncate(end)
        journal.flush()
        os.fsync(journal.fileno())
    log.warning(
        "%s: its last record was cut off (a crash or a full disk mid-write); set aside %d bytes in %s, "
        "continuing from the last complete record",
        *(path, size - end, aside.name),
    )
    return aside


def check_journal(path: Path) -> None:
    """A file that is not an Optuna journal (another program's JSON lines, say) is refused before Optuna reads it."""
    with open(path, "rb") as journal:
        first = journal.readline()
    try:
        record = json.loads(first)
    except ValueError:
        return  # not JSON at all: Optuna's own decode error names the file (open_study)
    if not (isinstance(record, dict) and "op_code" in record and "worker_id" in record):
        raise UserInputError(f"{path}: not an Optuna journal (its first line is not a journal record)")

"""The Optuna storage behind `tune --storage`: opened and checked so that every bad one is the user's one line.

    storage = open_storage("runs/tune/study.journal")   # or "postgresql://u@host/db", "sqlite:///study.db"

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

from mnist_dnn.errors import UserInputError

log = logging.getLogger(__name__)

DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'", "pymysql": "PyMySQL"}


def open_storage(url: str):
    """An RDB URL (postgresql://..., sqlite:///FILE) or a journal file's path -> an Optuna storage, checked."""
    if "://" in url:
        return _rdb_storage(url)
    return _journal_storage(Path(url))


def _rdb_storage(url: str):
    import optuna
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise UserInputError(f"--storage {url}: not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UserInputError(
            f"--storage {url}: an in-memory SQLite database keeps nothing after the command; "
            "name a file (sqlite:///study.db) or leave --storage out (a journal in --out)"
        )
    try:
        return optuna.storages.RDBStorage(url)
    except ImportError as exc:  # SQLAlchemy imports the URL's driver only now; Optuna re-raises it unnamed
        module = exc.name or getattr(exc.__cause__, "name", None) or parsed.get_driver_name()
        raise UserInputError(
            f"--storage {url}: needs the database driver {module!r}, not installed; "
            f"install it: pip install {DRIVER_PACKAGES.get(module, module)}"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        raise UserInputError(f"--storage {url}: cannot open it: {str(exc).splitlines()[0]}") from None


def _journal_storage(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    if path.exists() and not path.is_file():
        raise UserInputError(f"{path}: expected an Optuna journal file, got a directory or special file")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"{path}: {blocking} is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        lock = JournalFileSymlinkLock(str(path))  # Optuna's own: no process appends while the tail is checked
        lock.acquire()
        try:
            set_aside_torn_tail(path)
        finally:
            lock.release()
        check_journal(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


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

"""A real PostgreSQL server for tests: Debian's binaries, a temporary data directory, a free loopback port.

    server = PostgresServer.start()        # initdb + pg_ctl start; raises Unavailable when it cannot
    url = server.create_database("study")  # postgresql://mnist:...@127.0.0.1:PORT/study
    server.stop()                          # pg_ctl stop -m immediate, data directory removed

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user that
Debian's package creates, in a directory it owns. `make test` installs the package when it
is missing and it can (the Makefile's `postgresql` target); without it the tests skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PASSWORD = "mnist-dnn-test"  # a password, so a wrong one is refused (scram-sha-256, not trust)
SUPERUSER = "mnist"


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why (the skip reason)."""


def postgres_bin() -> Path | None:
    """Debian's /usr/lib/postgresql/VERSION/bin (the newest), else the directory of an initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (exited, its exit status not yet collected) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class PostgresServer:
    """One postmaster on 127.0.0.1:port with its data in a temporary directory; `stop` removes all of it."""

    def __init__(self, bindir: Path, root: Path, port: int, run_as: str | None):
        self.bindir, self.root, self.port, self.run_as = bindir, root, port, run_as
        self.data = root / "data"
        self.pid: int | None = None

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = postgres_bin()
        if bindir is None:
            raise Unavailable("PostgreSQL is not installed (make test installs Debian's postgresql where apt can)")
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root, and there is no 'postgres' user to run the server as") from None
            run_as = "postgres"
        root = Path(tempfile.mkdtemp(prefix="mnist-dnn-pg-"))
        server = cls(bindir, root, free_port(), run_as)
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        return server

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}")

    def _init_and_start(self) -> None:
        (self.root / "password").write_text(PASSWORD + "\n")
        if self.run_as:
            shutil.chown(self.root, self.run_as)
            shutil.chown(self.root / "password", self.run_as)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(self.root / "password"),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, name: str) -> str:
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def databases(self) -> set[str]:
        with self.connect() as connection:
            return {row[0] for row in connection.execute("SELECT datname FROM pg_database")}

    def stop(self) -> None:
        """Stop the server at once (-m immediate: nothing of the data is kept) and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

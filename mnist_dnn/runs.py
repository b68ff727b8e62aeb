"""Run directories and their files, written so that a crash never leaves a torn artifact.

Every file goes to a temporary name in the same directory and is renamed into place,
so a reader sees either the previous version or the new one; an existing run
directory is never reused.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_dnn.atomic import atomic_write_text
from mnist_dnn.errors import UserInputError

CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s")
TIMING_COLUMNS = ("epoch_time_s",)  # the only history columns allowed to differ between identical runs

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def save_model(model, path: Path) -> None:
    """Save a Keras model atomically; Keras insists on the .keras suffix, so the temp name keeps it."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_run_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise UserInputError(
            f"--name: expected letters, digits, '.', '_' or '-' (it becomes a directory name), got {name!r}"
        )
    return name


def check_new_run_dir(out: Path) -> None:
    """Refuse an --out that exists before any work starts, so nothing is half-written."""
    if out.exists():
        raise UserInputError(f"--out {out}: already exists; runs are never overwritten, choose a new directory")


def create_run_dir(runs_root: Path, name: str, out: Path | None = None, now: datetime | None = None) -> Path:
    """Make a fresh directory for one run: `out`, or runs_root/<UTC timestamp>-<name>[-k]."""
    if out is not None:
        check_new_run_dir(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.mkdir()
        except FileExistsError:
            raise UserInputError(f"--out {out}: already exists; runs are never overwritten") from None
        return out
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    runs_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = runs_root / (f"{stamp}-{name}" if attempt == 1 else f"{stamp}-{name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not find a free run directory name under {runs_root}")


def format_number(value: float | int) -> str:
    """Shortest text that reads back as the same float, so equal runs give equal bytes."""
    return str(value) if isinstance(value, int) else repr(float(value))


class HistoryWriter:
    """An epoch callback that rewrites history.csv after every epoch, so curves survive an interrupt."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, float]] = []

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **metrics})
        atomic_write_text(self.path, history_to_csv(self.rows))


def history_to_csv(rows: list[dict[str, float]]) -> str:
    extra = sorted({key for row in rows for key in row} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_number(row[c]) if c in row else "" for c in columns])
    return buffer.getvalue()


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv -> column name -> values; a missing or malformed file is the user's to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{path}: no history.csv here (is this a run directory?)") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not a text file (expected history CSV)") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "epoch" not in rows[0]:
        raise UserInputError(f"{path}: expected a CSV header with an 'epoch' column")
    header = rows[0]
    columns: dict[str, list[float]] = {name: [] for name in header}
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserInputError(f"{path}:{line_number}: expected {len(header)} values, got {len(row)}")
        for name, cell in zip(header, row, strict=True):
            try:
                columns[name].append(float(cell) if cell != "" else float("nan"))
            except ValueError:
                raise UserInputError(f"{path}:{line_number}: column {name!r} is not a number: {cell!r}") from None
    return columns

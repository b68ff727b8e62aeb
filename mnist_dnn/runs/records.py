"""A run's records as files: history.csv and steps.csv written after every epoch, JSON files; all read back checked.

Numbers are written as the shortest text that reads back as the same float, so the same
run gives the same bytes; NaN becomes null in JSON. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.errors import UserInputError, open_regular, read_user_text
from mnist_dnn.runs.files import METRICS_FILE

STEP_COLUMNS = ("epoch", "step", "loss")


HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s")


GRAD_NORM_PREFIX = "grad_norm_"  # history.csv columns grad_norm_<layer>, one per Dense or convolution layer (section 6)


TIMING_COLUMNS = ("epoch_time_s",)  # the only history columns allowed to differ between identical runs


_COUNTING_COLUMNS = ("epoch", "step")  # numbered from 1: they place points on a figure's x axis


MAX_COUNT = 10**9  # beyond any real run's epochs or steps; keeps an axis drawable


FORMAT_VERSION = 1  # of the run directory's files; raise it when a reader of older runs would misread newer ones


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json_text(data))


def json_text(data: Any) -> str:
    """`json_dumps` as a file's content: one trailing newline."""
    return json_dumps(data) + "\n"


def json_dumps(data: Any) -> str:
    """Indented JSON with null where a number is not finite: NaN and Infinity are not JSON (every other
    reader refuses them), and a diverged run's scores are NaN."""
    return json.dumps(finite_or_null(data), indent=2, allow_nan=False)


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN or infinite float inside it replaced by None (JSON's null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None if there is no such file; anything else unreadable is the user's to fix."""
    try:
        with open_regular(path, "a JSON file") as handle:
            data = json.loads(handle.read())
    except FileNotFoundError:
        return None
    except UserInputError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_format_version(version: Any, where: Path) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserInputError(f"{where}: 'format_version' must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise UserInputError(
            f"{where}: written by a newer mnist-dnn (format {version}; this version reads up to {FORMAT_VERSION}); "
            "upgrade mnist-dnn to use it"
        )


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A finished run's metrics.json."""
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics is None:
        raise UserInputError(f"{run_dir / METRICS_FILE}: missing (the run has not finished)")
    check_format_version(metrics.get("format_version", 1), run_dir / METRICS_FILE)
    return metrics


def format_number(value: float | int) -> str:
    """Shortest text that reads back as the same float, so equal runs give equal bytes."""
    return str(value) if isinstance(value, int) else repr(float(value))


class HistoryWriter:
    """An epoch callback that rewrites history.csv after every epoch, so curves survive an interrupt.

    `rows` are epochs written before (a resumed run's), kept ahead of the new ones.
    """

    def __init__(self, path: Path, rows: list[dict[str, float]] | None = None):
        self.path = path
        self.rows: list[dict[str, float]] = list(rows or [])

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **metrics})
        atomic_write_text(self.path, history_to_csv(self.rows))

    def columns(self) -> dict[str, list[float]]:
        """The rows written so far as column name -> values (epoch left out)."""
        names = list(dict.fromkeys(k for row in self.rows for k in row if k != "epoch"))
        return {name: [row[name] for row in self.rows if name in row] for name in names}


def history_to_csv(rows: list[dict[str, float]]) -> str:
    extra = sorted({key for row in rows for key in row} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_number(row[c]) if c in row else "" for c in columns])
    return buffer.getvalue()


class StepLossWriter:
    """A step-loss callback that rewrites steps.csv (epoch, step, loss) after every epoch.

    Resuming after epoch `keep_through` keeps the file's rows up to that epoch and drops
    any of a later epoch that was cut short, so the file always matches history.csv.
    """

    def __init__(self, path: Path, keep_through: int = 0):
        self.path = path
        self.rows: list[tuple[int, int, float]] = []
        if keep_through and path.exists():
            steps = read_steps(path)
            self.rows = [
                (int(e), int(s), loss)
                for e, s, loss in zip(steps["epoch"], steps["step"], steps["loss"], strict=True)
                if e <= keep_through
            ]

    def __call__(self, epoch: int, losses) -> None:
        first = self.rows[-1][1] + 1 if self.rows else 1
        self.rows.extend((epoch, first + k, float(loss)) for k, loss in enumerate(losses))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(STEP_COLUMNS)
        writer.writerows((e, s, format_number(loss)) for e, s, loss in self.rows)
        atomic_write_text(self.path, buffer.getvalue())


def read_steps(path: Path) -> dict[str, list[float]]:
    """steps.csv -> epoch, step and loss columns; malformed files are the user's to fix."""
    steps = read_history(path, required="step")
    missing = [name for name in STEP_COLUMNS if name not in steps]
    if missing:
        raise UserInputError(f"{path}: missing column {', '.join(repr(m) for m in missing)}")
    return steps


def read_history(path: Path, required: str = "epoch") -> dict[str, list[float]]:
    """history.csv -> column name -> values; a missing or malformed file is the user's to fix."""
    text = read_user_text(path, "a CSV file", missing=f"no {path.name} here (is this a run directory?)")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise UserInputError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows or required not in rows[0]:
        raise UserInputError(f"{path}: expected a CSV header with an '{required}' column")
    header = rows[0]
    columns: dict[str, list[float]] = {name: [] for name in header}
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserInputError(f"{path}:{line_number}: expected {len(header)} values, got {len(row)}")
        for name, cell in zip(header, row, strict=True):
            try:
                value = float(cell) if cell != "" else float("nan")
            except ValueError:
                raise UserInputError(f"{path}:{line_number}: column {name!r} is not a number: {cell!r}") from None
            if name in _COUNTING_COLUMNS and not (value.is_integer() and 1 <= value <= MAX_COUNT):
                raise UserInputError(
                    f"{path}:{line_number}: column {name!r} must be a whole number 1-{MAX_COUNT:,}, got {cell!r}"
                )
            columns[name].append(value)
    return columns

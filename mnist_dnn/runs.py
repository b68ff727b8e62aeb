"""Run directories and their files, written so that a crash never leaves a torn artifact.

Every file goes to a temporary name in the same directory and is renamed into place,
so a reader sees either the previous version or the new one. A new run never reuses
an existing directory; only `train --resume` (and a sweep continued into its own
directory) writes into one again, to finish the run it holds.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import socket
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_dnn.atomic import atomic_write_text
from mnist_dnn.config import Config, load_config
from mnist_dnn.errors import UserInputError
from mnist_dnn.model import INPUT_SIZE, NUM_CLASSES
from mnist_dnn.preprocess import Statistics, statistics_for_run

CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
STEPS_FILE = "steps.csv"  # the training loss of every batch: figure 4 (right) of the paper
STEP_COLUMNS = ("epoch", "step", "loss")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s")
GRAD_NORM_PREFIX = "grad_norm_"  # history.csv columns grad_norm_<layer>, one per Dense layer (section 6)
TIMING_COLUMNS = ("epoch_time_s",)  # the only history columns allowed to differ between identical runs
STATUS_FILE = "status.json"
FORMAT_VERSION = 1  # of the run directory's files; raise it when a reader of older runs would misread newer ones
STATUSES = ("running", "complete", "interrupted", "failed")
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _status_json(status: str, details: dict[str, Any]) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return json.dumps({"format_version": FORMAT_VERSION, "status": status, **details}, indent=2) + "\n"


def write_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json: running while training, then complete, interrupted (resumable) or failed."""
    atomic_write_text(run_dir / STATUS_FILE, _status_json(status, details))


def overwrite_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json rewritten in place: the last resort when no new file can be made (full disk, read-only dir).

    Rewriting an existing small file needs no new blocks and no directory entry, so it can
    succeed where the atomic temp-file-and-rename cannot.
    """
    with open(run_dir / STATUS_FILE, "r+b") as handle:
        handle.write(_status_json(status, details).encode())
        handle.truncate()


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """status.json's content, None for a run directory from before it existed; a damaged one is refused."""
    data = read_json(run_dir / STATUS_FILE)
    if data is None:
        return None
    if data.get("status") not in STATUSES:
        raise UserInputError(f"{run_dir / STATUS_FILE}: 'status' must be one of {', '.join(STATUSES)}")
    return data


def check_run_format(run_dir: Path) -> None:
    """Refuse a run directory written by a newer mnist-dnn, whose files this version might misread."""
    for name in (STATUS_FILE, METRICS_FILE):
        data = read_json(run_dir / name)
        if data is not None:
            check_format_version(data.get("format_version", 1), run_dir / name)


def this_process() -> dict[str, Any]:
    """What status.json records of the process training a run, so another can tell it is still alive."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def check_not_running(run_dir: Path, status: dict[str, Any]) -> None:
    """Refuse to touch a run whose training process is still alive: two writers would mix their epochs."""
    if _still_running(status):
        raise UserInputError(f"{run_dir}: process {status['pid']} is still training this run; stop it first")


def _still_running(status: dict[str, Any]) -> bool:
    """Whether the process that marked a run `running` is alive on this machine (another machine: unknown, no)."""
    pid = status.get("pid")
    if status["status"] != "running" or not isinstance(pid, int) or status.get("host") != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        return True
    return True


def resumable_config(run_dir: Path) -> Config:
    """The config of a run `train --resume` can continue; anything else is refused with the reason."""
    check_run_format(run_dir)
    status = read_status(run_dir)
    if status is None:
        raise UserInputError(f"{run_dir}: no {STATUS_FILE} here (not a run directory of mnist-dnn train)")
    if status.get("kind", "train") != "train":
        raise UserInputError(
            f"{run_dir}: one run of a custom-digit experiment; it cannot be resumed alone (run the experiment again)"
        )
    if status["status"] == "complete":
        raise UserInputError(f"{run_dir}: this run is complete; there is nothing to resume")
    check_not_running(run_dir, status)
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise UserInputError(f"{config_file}: missing; the run cannot be resumed without its config")
    return load_config(config_file)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A finished run's metrics.json."""
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics is None:
        raise UserInputError(f"{run_dir / METRICS_FILE}: missing (the run has not finished)")
    check_format_version(metrics.get("format_version", 1), run_dir / METRICS_FILE)
    return metrics


def check_format_version(version: Any, where: Path) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserInputError(f"{where}: 'format_version' must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise UserInputError(
            f"{where}: written by a newer mnist-dnn (format {version}; this version reads up to {FORMAT_VERSION}); "
            "upgrade mnist-dnn to use it"
        )


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None if there is no such file; anything else unreadable is the user's to fix."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a directory (expected a JSON file)") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def storage_error(exc: OSError) -> UserInputError | None:
    """A full disk, a quota or a read-only/forbidden output as the user's one-line error; None for other OSErrors."""
    if exc.errno not in _STORAGE_ERRORS:
        return None
    where = exc.filename or "output"
    return UserInputError(f"{where}: cannot write ({exc.strerror or os.strerror(exc.errno)})")


def save_model(model, path: Path) -> None:
    """Save a Keras model atomically; Keras insists on the .keras suffix, so the temp name keeps it."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{path}: no {path.name} here (is this a run directory?)") from None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a directory (expected a CSV file)") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not a text file (expected CSV)") from None
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
                columns[name].append(float(cell) if cell != "" else float("nan"))
            except ValueError:
                raise UserInputError(f"{path}:{line_number}: column {name!r} is not a number: {cell!r}") from None
    return columns


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with what it takes to feed it: its run's config and preprocessing statistics."""

    model: Any
    config: Config
    stats: Statistics | None
    path: Path  # the .keras file


def load_trained(path: Path) -> TrainedModel:
    """A run directory or .keras file -> the model, the config it was trained with, and its input statistics.

    The model is loaded in Keras' safe mode (a Lambda layer's Python code is refused, not
    run) and must map 784 pixels to 10 digits. A bare .keras file without a config.toml
    beside it is taken to use the paper's preprocessing. The Keras backend must be chosen.
    """
    model_file = path / MODEL_FILE if path.is_dir() else path
    if path.is_dir() and not model_file.exists() and (path / "run-1" / MODEL_FILE).is_file():
        raise UserInputError(f"{path}: a directory of several runs; pass one of them, e.g. {path / 'run-1'}")
    if not model_file.is_file() or model_file.suffix != ".keras":
        raise UserInputError(f"{model_file}: no model here (expected a run directory or a .keras file from train)")
    check_run_format(model_file.parent)
    config_file = model_file.parent / CONFIG_FILE
    config = load_config(config_file if config_file.is_file() else None)
    stats = statistics_for_run(model_file.parent, config.preprocess.method)
    model = _load_keras_model(model_file)
    inputs, outputs = model.input_shape[-1], model.output_shape[-1]
    if len(model.input_shape) != 2 or (inputs, outputs) != (INPUT_SIZE, NUM_CLASSES):
        raise UserInputError(
            f"{model_file}: the model maps {model.input_shape[1:]} inputs to {outputs} classes; "
            f"mnist-dnn needs {INPUT_SIZE} pixels in and {NUM_CLASSES} digits out"
        )
    return TrainedModel(model, config, stats, model_file)


def _load_keras_model(model_file: Path):
    import keras

    try:
        return keras.saving.load_model(model_file, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and "safe_mode" in str(exc):
            raise UserInputError(
                f"{model_file}: refused: it holds Python code (a Lambda layer), which mnist-dnn never runs "
                "(Keras safe mode)"
            ) from None
        raise UserInputError(f"{model_file}: not a readable Keras model (expected a .keras file from train)") from None

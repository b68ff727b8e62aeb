"""Run directories and their files: naming, writing, reading back, and the status lifecycle.

Every file goes to a temporary name in the same directory and is renamed into place,
so a reader sees either the previous version or the new one. A new run never reuses
an existing directory; only `train --resume` (and a sweep continued into its own
directory) writes into one again, to finish the run it holds.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import re
import socket
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.config import Config, load_config, read_toml
from mnist_dnn.core.errors import UserInputError, open_regular, read_user_text
from mnist_dnn.core.memory import allocation_failure
from mnist_dnn.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    STATUS_FILE,
    STEPS_FILE,
    SWEEP_PLAN_FILE,
)
from mnist_dnn.runs.files import MODEL_FILE as MODEL_FILE  # read as runs.MODEL_FILE; load_trained moved to training
from mnist_dnn.runs.outputs import check_output_dir

STEP_COLUMNS = ("epoch", "step", "loss")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s")
GRAD_NORM_PREFIX = "grad_norm_"  # history.csv columns grad_norm_<layer>, one per Dense or convolution layer (section 6)
TIMING_COLUMNS = ("epoch_time_s",)  # the only history columns allowed to differ between identical runs
KIND_TRAIN = "train"  # status.json's kind: a run `train --resume` can continue
KIND_CUSTOM = "custom"  # one of the custom-digit experiment's runs: rerun the experiment instead
KIND_TRIAL = "tune-trial"  # a run of a tune trial: `tune` asks a cut-short trial again instead
_COUNTING_COLUMNS = ("epoch", "step")  # numbered from 1: they place points on a figure's x axis
MAX_COUNT = 10**9  # beyond any real run's epochs or steps; keeps an axis drawable
FORMAT_VERSION = 1  # of the run directory's files; raise it when a reader of older runs would misread newer ones
STATUSES = ("running", "complete", "interrupted", "failed")
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


def _status_json(status: str, details: dict[str, Any]) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return json_text({"format_version": FORMAT_VERSION, "status": status, **details})


def write_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json: running while training, then complete, interrupted (resumable) or failed.

    `started_at` (UTC, ISO 8601) is set by the first status a run gets and kept by every
    later one, resumes included: `plot` picks the latest run by it, whatever the run's name.
    """
    details.setdefault("started_at", _started_at(run_dir) or datetime.now(UTC).isoformat(timespec="seconds"))
    atomic_write_text(run_dir / STATUS_FILE, _status_json(status, details))


def _started_at(run_dir: Path) -> str | None:
    try:
        value = (read_json(run_dir / STATUS_FILE) or {}).get("started_at")
    except UserInputError:  # a damaged status.json is being replaced: its time is lost with it
        return None
    return value if isinstance(value, str) else None


def started_at(run_dir: Path) -> datetime | None:
    """When a run first started, from its status.json; None for runs from before it was recorded."""
    try:
        return datetime.fromisoformat(_started_at(run_dir) or "")
    except ValueError:
        return None


def overwrite_status(run_dir: Path, status: str, **details: Any) -> None:
    """status.json rewritten in place: the last resort when no new file can be made (full disk, read-only dir).

    Rewriting an existing small file needs no new blocks and no directory entry, so it can
    succeed where the atomic temp-file-and-rename cannot.
    """
    if (started := _started_at(run_dir)) is not None:
        details.setdefault("started_at", started)
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


_held_locks: dict[str, list[int]] = {}  # resolved directory -> [fd, times taken]: re-entrant within a process


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run (or sweep) directory for as long as the block runs.

    Two processes training one run would mix their epochs; a pid in status.json cannot
    tell "alive" from "a new process that got the same number", and checking it races.
    `flock` on the directory's own descriptor does neither: no file appears in the
    directory, the kernel releases it when the process ends however it ends, and only
    one process holds it. The pid status.json records only goes into the message.
    """
    key = str(directory.resolve())
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield
        finally:
            _held_locks[key][1] -= 1
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserInputError(f"{directory}: {_holder(directory)} is still working in it; stop it first") from None
    _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        _held_locks[key][1] -= 1
        if not _held_locks[key][1]:
            del _held_locks[key]
            os.close(fd)  # releases the lock


def _holder(directory: Path) -> str:
    """Who holds a run's lock, as far as its status.json says: words for a message, never a test."""
    try:
        status = read_json(directory / STATUS_FILE) or {}
    except UserInputError:
        status = {}
    pid = status.get("pid")
    return f"process {pid}" if isinstance(pid, int) and status.get("status") == "running" else "another process"


@contextmanager
def run_status(run_dir: Path, kind: str) -> Iterator[dict[str, Any]]:
    """status.json around one run: running, then complete (its checkpoint removed), interrupted or failed.

    The block may add to the dict it gets what the final status records ("diverged").
    """
    with run_statuses([run_dir], kind):
        outcome: dict[str, Any] = {}
        yield outcome
        write_status(run_dir, "complete", kind=kind, **outcome)
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # model.keras has it all now


@contextmanager
def run_statuses(run_dirs: Sequence[Path], kind: str) -> Iterator[None]:
    """Lock the runs and mark them running; if the block ends early, mark them interrupted or failed, in one line.

    Each run directory's lock (`run_lock`) is held throughout and taken before any status
    is written, so a second `train --resume` of the same run is refused, touching nothing,
    while this one trains; status.json's pid only names this process in that message. A
    full disk or an unwritable directory is the user's to fix: a one-line `UserInputError`
    naming the file.
    """
    with ExitStack() as locks:
        for run_dir in run_dirs:
            locks.enter_context(run_lock(run_dir))
        with _marked_on_exit(run_dirs, kind):
            yield


@contextmanager
def _marked_on_exit(run_dirs: Sequence[Path], kind: str) -> Iterator[None]:
    try:
        for run_dir in run_dirs:
            write_status(run_dir, "running", kind=kind, **this_process())
        yield
    except KeyboardInterrupt:
        _mark(run_dirs, "interrupted", kind)
        raise
    except OSError as exc:
        _mark(run_dirs, "failed", kind, reason=str(exc))
        problem = storage_error(exc)
        if problem is None:
            raise
        raise problem from None
    except BaseException as exc:
        problem = allocation_failure(exc)
        if problem is not None:  # the estimate checked before building missed it: still one line
            _mark(run_dirs, "failed", kind, reason=str(problem))
            raise problem from None
        _mark(run_dirs, "failed", kind, reason=str(exc) if isinstance(exc, UserInputError) else type(exc).__name__)
        raise


def _mark(run_dirs: Sequence[Path], status: str, kind: str, **details: Any) -> None:
    """Record how the runs ended; on a full or read-only disk in place, and if even that fails, leave it.

    The error that ended the run is on its way to the user either way, and says more than
    a status could.
    """
    for run_dir in run_dirs:
        if (run_dir / STATUS_FILE).exists() and read_status(run_dir)["status"] == "complete":
            continue  # of several runs, the ones that finished stay complete
        try:
            write_status(run_dir, status, kind=kind, **details)
        except OSError:
            with suppress(OSError):
                overwrite_status(run_dir, status, kind=kind, **details)


def resumable_config(run_dir: Path) -> Config:
    """The config of a run `train --resume` can continue; anything else is refused with the reason.

    A run another process is training is refused by its lock (`run_lock`); one whose
    status.json still says `running` but whose lock is free was stopped by a crash or a
    kill, and is resumable from its last checkpoint.
    """
    with run_lock(run_dir):
        return _resumable_config(run_dir)


def _resumable_config(run_dir: Path) -> Config:
    check_run_format(run_dir)
    status = read_status(run_dir)
    if status is None:
        raise UserInputError(f"{run_dir}: no {STATUS_FILE} here (not a run directory of mnist-dnn train)")
    kind = status.get("kind", KIND_TRAIN)
    if kind == KIND_TRIAL:
        raise UserInputError(f"{run_dir}: one run of a tune trial; it is not resumed (run the tune command again)")
    if kind != KIND_TRAIN:
        raise UserInputError(
            f"{run_dir}: one run of a custom-digit experiment; it cannot be resumed alone (run the experiment again)"
        )
    if status["status"] == "complete":
        raise UserInputError(f"{run_dir}: this run is complete; there is nothing to resume")
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise UserInputError(f"{config_file}: missing; the run cannot be resumed without its config")
    _check_checkpoint_present(run_dir)
    return load_config(config_file)


def _check_checkpoint_present(run_dir: Path) -> None:
    """Finished epochs with no checkpoint beside them: resuming would quietly start again from epoch 1."""
    if (run_dir / CHECKPOINT_FILE).exists() or not (run_dir / HISTORY_FILE).is_file():
        return
    epochs = len(read_history(run_dir / HISTORY_FILE)["epoch"])
    if epochs:
        raise UserInputError(
            f"{run_dir / CHECKPOINT_FILE}: missing, though {HISTORY_FILE} records {epochs} finished epoch(s); "
            "the run cannot be continued exactly (train it again as a new run)"
        )


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


def remove_if_unstarted(run_dir: Path) -> bool:
    """Remove a run directory this process made but never wrote to (a Ctrl-C before training began).

    An empty directory without a status.json says nothing true about any run; True if removed.
    """
    try:
        run_dir.rmdir()  # only succeeds when empty
    except OSError:
        return False
    return True


def latest_run_dir(runs_root: Path) -> Path:
    """The run under runs_root that started last, by status.json's started_at, not by its name.

    A name such as runs/quick sorts after every timestamped one; runs from before
    started_at was recorded fall back to the time in their name, then to the directory's.
    """
    candidates = [
        d
        for d in (runs_root.iterdir() if runs_root.is_dir() else [])
        if (d / HISTORY_FILE).is_file() or any(d.glob(f"run-*/{HISTORY_FILE}"))
    ]
    if not candidates:
        raise UserInputError(f"{runs_root}: no run directories here; pass RUN_DIR or run 'mnist-dnn train' first")
    return max(candidates, key=lambda d: (_start_time(d), d.name))


def _start_time(run_dir: Path) -> datetime:
    for where in (run_dir, run_dir / "run-1"):
        if (when := started_at(where)) is not None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    try:
        return datetime.strptime(run_dir.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(run_dir.stat().st_mtime, UTC)


def check_run_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise UserInputError(
            f"--name: expected letters, digits, '.', '_' or '-' (it becomes a directory name), got {name!r}"
        )
    return name


def default_run_name(config_path: Path | None) -> str:
    """The run name when --name is not given: the config file's stem made safe ("my exp" -> "my-exp", "été" -> "ete").

    The user never wrote a name, so nothing about it can be their mistake: letters lose their
    accents, anything else unsafe becomes '-', and a stem with nothing left gives "run".
    """
    if config_path is None:
        return "paper"
    ascii_stem = unicodedata.normalize("NFKD", config_path.stem).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_stem).lstrip("._-").rstrip("-")
    return safe or "run"


def check_new_run_dir(out: Path) -> None:
    """Refuse an --out that exists (or sits below a file) before any work starts, so nothing is half-written."""
    check_output_dir(out)
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


# --- reading run directories back for figures: plots.run_figures draws what these return ---------------------------


@dataclass(frozen=True)
class RunHistories:
    """One or several run directories: each one's history.csv and config.toml (None where it has none)."""

    names: list[str]
    histories: list[dict[str, list[float]]]
    configs: list[dict[str, Any] | None]


@dataclass(frozen=True)
class MultiRun:
    """A directory of run-1/, run-2/, ...: their histories, and predictions.csv when it is there."""

    run_names: list[str]  # "run-1", "run-2", ... in run order
    histories: list[dict[str, list[float]]]
    predictions: Predictions | None


@dataclass(frozen=True)
class Predictions:
    """predictions.csv: the digit each run's model read in each image."""

    files: list[str]
    labels: list[int]
    predicted: np.ndarray  # (runs, images)
    run_names: list[str]


@dataclass(frozen=True)
class SweepSteps:
    """A sweep directory's steps.csv files, grouped by setting in plan order (runs without one left out)."""

    steps: dict[str, list[dict[str, list[float]]]]


def read_for_figures(run_dirs: Sequence[Path]) -> RunHistories | MultiRun | SweepSteps:
    """Everything the figures of `run_dirs` are drawn from, whatever kind of directory it is.

    Every file is read before anything is drawn, so a bad one stops the lot with a
    `UserInputError` naming it.
    """
    if not run_dirs:
        raise ValueError("read_for_figures needs at least one run directory")
    if len(run_dirs) == 1 and (run_dirs[0] / SWEEP_PLAN_FILE).is_file():
        return read_sweep_steps(run_dirs[0])
    if len(run_dirs) == 1 and is_multi_run_dir(run_dirs[0]):
        return read_multi_run(run_dirs[0])
    histories = [read_checked_history(d / HISTORY_FILE, ("accuracy", "loss")) for d in run_dirs]
    configs = [read_config_dict(d / CONFIG_FILE) for d in run_dirs]
    return RunHistories([d.name for d in run_dirs], histories, configs)


def is_multi_run_dir(directory: Path) -> bool:
    """A directory of run-1/, run-2/, ... each with a history.csv, and no history.csv of its own."""
    return not (directory / HISTORY_FILE).exists() and bool(_multi_run_histories(directory))


def _multi_run_histories(directory: Path) -> list[Path]:
    """run-*/history.csv in run order (run-2 before run-10)."""
    found = [p for p in directory.glob("run-*/" + HISTORY_FILE) if re.fullmatch(r"run-\d+", p.parent.name)]
    return sorted(found, key=lambda p: int(p.parent.name.split("-")[1]))


def read_multi_run(directory: Path) -> MultiRun:
    """The custom-digit experiment's run-N/history.csv files (custom digits in val_*) and its predictions.csv."""
    paths = _multi_run_histories(directory)
    histories = [read_checked_history(path, ("val_accuracy", "val_loss")) for path in paths]
    predictions_file = directory / PREDICTIONS_FILE
    predictions = read_predictions(predictions_file) if predictions_file.exists() else None
    return MultiRun([path.parent.name for path in paths], histories, predictions)


def read_checked_history(path: Path, metrics: Sequence[str]) -> dict[str, list[float]]:
    """`read_history`, plus: at least one epoch, and a column for each of `metrics`."""
    history = read_history(path)
    missing = [name for name in metrics if name not in history]
    if missing:
        raise UserInputError(f"{path}: missing column {', '.join(repr(m) for m in missing)}")
    if not history["epoch"]:
        raise UserInputError(f"{path}: no epochs recorded yet")
    return history


def read_sweep_steps(directory: Path) -> SweepSteps:
    """Each setting's steps.csv files of a sweep directory, as its sweep.json plans them."""
    plan = read_json(directory / SWEEP_PLAN_FILE) or {}
    planned = plan.get("runs")
    if not isinstance(planned, list) or not all(
        isinstance(run, dict) and isinstance(run.get("directory"), str) and isinstance(run.get("setting"), str)
        for run in planned
    ):
        raise UserInputError(f"{directory / SWEEP_PLAN_FILE}: expected a 'runs' list with a directory and setting each")
    steps = {}
    for setting in dict.fromkeys(run["setting"] for run in planned):
        found = [
            read_steps(directory / run["directory"] / STEPS_FILE)
            for run in planned
            if run["setting"] == setting and (directory / run["directory"] / STEPS_FILE).exists()
        ]
        if found:
            steps[setting] = found
    if not steps:
        raise UserInputError(f"{directory}: no finished epochs in this sweep yet (no steps.csv)")
    return SweepSteps(steps)


def read_predictions(path: Path) -> Predictions:
    """predictions.csv (file, label, run-1, run-2, ...); a malformed one is the user's to fix."""
    rows = list(csv.reader(io.StringIO(read_user_text(path, "predictions CSV"))))
    header = rows[0] if rows else []
    run_names = [name for name in header[2:] if re.fullmatch(r"run-\d+", name)]
    if header[:2] != ["file", "label"] or not run_names or len(run_names) != len(header) - 2:
        raise UserInputError(f"{path}: expected a header 'file,label,run-1,run-2,...'")
    files, labels, predicted = [], [], []
    for line_number, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(header):
                raise ValueError
            labels.append(int(row[1]))
            predicted.append([int(cell) for cell in row[2:]])
        except ValueError:
            raise UserInputError(f"{path}:{line_number}: expected a file name and {len(header) - 1} digits") from None
        files.append(row[0])
    return Predictions(files, labels, np.array(predicted, dtype=int).reshape(len(files), len(run_names)).T, run_names)


def read_config_dict(path: Path) -> dict[str, Any] | None:
    """A run's config.toml as a plain dict, unvalidated (it may be an older run's); None when the run has none."""
    if not path.exists():
        return None
    return read_toml(path)

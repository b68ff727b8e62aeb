"""Run directories: naming and making them, finding the latest, and which run `train --resume` may continue.

A new run never reuses an existing directory; only `train --resume` (and a sweep
continued into its own directory) writes into one again, to finish the run it holds.
What is written into a run lives beside this module: records.py (history, steps, JSON),
lifecycle.py (status.json and the lock), files.py (the names), outputs.py, tensorboard.py.
"""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs.files import CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, STATUS_FILE
from mnist_dnn.runs.files import METRICS_FILE as METRICS_FILE  # read as runs.METRICS_FILE
from mnist_dnn.runs.files import MODEL_FILE as MODEL_FILE  # read as runs.MODEL_FILE; load_trained moved to training
from mnist_dnn.runs.files import STEPS_FILE as STEPS_FILE  # read as runs.STEPS_FILE
from mnist_dnn.runs.lifecycle import KIND_TRAIN, KIND_TRIAL, check_run_format, read_status, run_lock, started_at
from mnist_dnn.runs.outputs import check_output_dir
from mnist_dnn.runs.records import read_history

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # the UTC time a default run directory's name starts with (create_run_dir)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    return name_stamp(run_dir.name) or datetime.fromtimestamp(run_dir.stat().st_mtime, UTC)


def name_stamp(name: str) -> datetime | None:
    """The UTC time a run directory's name starts with ("20250101T120000Z-paper"), None when it has none."""
    try:
        return datetime.strptime(name[:16], STAMP_FORMAT).replace(tzinfo=UTC)  # 16 = len("20250101T120000Z")
    except ValueError:
        return None


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
    stamp = (now or datetime.now(UTC)).strftime(STAMP_FORMAT)
    runs_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = runs_root / (f"{stamp}-{name}" if attempt == 1 else f"{stamp}-{name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not find a free run directory name under {runs_root}")

"""The trained runs under a runs directory, as `mnist-dnn serve` offers them: listed, loaded once, asked to read.

    catalog = find_runs(Path("runs"))               # name -> RunInfo, oldest first
    shelf = ModelShelf()
    probabilities = shelf.predict(catalog[name], images)   # (N, 10), each model loaded once
    table = score_table(list(catalog.values()), shelf, files, labels, images)

A run is a directory holding model.keras or status.json, directly under the runs directory or
one level down (the run-1, run-2, ... of `eval --custom-csv`, a sweep's runs); its name is its
path below the runs directory. Requests name runs; the names are looked up here, never joined
onto a path. Nothing here writes: figures are drawn in memory.
"""

from __future__ import annotations

import dataclasses
import io
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.preprocess import transform
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.load import TrainedModel, load_trained
from mnist_dnn.training.model import model_kind

COMPLETE = "complete"
NOT_THE_EXPERIMENT = ("train.backend", "train.engine", "data.data_dir")  # how and where it ran, not what it computes
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # the UTC timestamp run directory names start with (runs.create_run_dir)


class UnknownRun(UserInputError):
    """A run name that is not under the runs directory."""


class UnusableModel(UserInputError):
    """A run whose model cannot be loaded or fed; shown as unusable, never retried per request."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the Runs page lists it."""

    name: str  # path below the runs directory, '/'-separated
    path: Path
    status: str  # one of runs.STATUSES, or 'unknown' for a directory without status.json or metrics.json
    date: str  # ISO UTC, from the directory name's timestamp, else its modification time
    test_accuracy: float | None
    epochs: int | None
    differences: dict[str, str]  # config key -> this run's value, where it differs from the paper's
    kind: str | None  # model.model_kind: dense, dense + batch norm, convolutional; None without a readable config
    has_model: bool
    problem: str | None  # an unreadable file of the run, if any

    @property
    def usable(self) -> bool:
        return self.has_model and self.status == COMPLETE and self.problem is None

    def as_json(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        del fields["path"]
        return {**fields, "usable": self.usable}


def find_runs(runs_dir: Path) -> dict[str, RunInfo]:
    """Every run under `runs_dir` by name, oldest first (names start with their UTC timestamp)."""
    found: dict[str, RunInfo] = {}
    if not runs_dir.is_dir():
        return found
    paper = _flat(load_config(None))
    for top in sorted(runs_dir.iterdir()):
        if not top.is_dir() or top.name.startswith("."):
            continue
        if _is_run(top):
            found[top.name] = _run_info(top.name, top, paper)
            continue
        for sub in sorted(top.iterdir(), key=lambda p: _natural(p.name)):
            if sub.is_dir() and _is_run(sub):
                found[f"{top.name}/{sub.name}"] = _run_info(f"{top.name}/{sub.name}", sub, paper)
    return found


def default_run(catalog: dict[str, RunInfo], kept_accuracy: Mapping[str, float] | None = None) -> str | None:
    """What the Draw page starts with: the run that reads the kept digits best, else the latest complete run.

    `kept_accuracy` is each run's accuracy on the digits kept so far (score_table's rows);
    ties go to the latest run. With no kept digits, the latest complete run with a model.
    """
    usable = [info for info in catalog.values() if info.usable]
    scored = [info for info in usable if kept_accuracy and info.name in kept_accuracy]
    if scored:
        return max(scored, key=lambda info: (kept_accuracy[info.name], info.date, info.name)).name
    return max(usable, key=lambda info: (info.date, info.name)).name if usable else None


def lookup(catalog: dict[str, RunInfo], name: str | None) -> RunInfo:
    if not name or name not in catalog:
        raise UnknownRun(f"run {name!r}: no such run under the runs directory")
    return catalog[name]


def _is_run(path: Path) -> bool:
    return (path / runs.MODEL_FILE).is_file() or (path / runs.STATUS_FILE).is_file()


def _natural(name: str) -> tuple:
    """run-2 before run-10."""
    head, _, tail = name.rpartition("-")
    return (head, int(tail), "") if tail.isdigit() else (name, -1, name)


def _flat(cfg: Config) -> dict[str, Any]:
    return {
        f"{section}.{key}": value for section, keys in dataclasses.asdict(cfg).items() for key, value in keys.items()
    }


def _run_info(name: str, path: Path, paper: dict[str, Any]) -> RunInfo:
    problem = None
    status, accuracy, epochs, differences, kind = "unknown", None, None, {}, None
    try:
        runs.check_run_format(path)
        status_data = runs.read_status(path) or {}
        metrics = runs.read_json(path / runs.METRICS_FILE) or {}
        status = status_data.get("status") or (COMPLETE if metrics else "unknown")
        accuracy = metrics.get("test_accuracy")
        epochs = metrics.get("epochs_completed")
        if not _finite(epochs) and (path / runs.HISTORY_FILE).is_file():
            epochs = len(runs.read_history(path / runs.HISTORY_FILE)["epoch"])
        config_file = path / runs.CONFIG_FILE
        if not config_file.exists():  # a bare model.keras is taken to be the paper's (load_trained)
            kind = model_kind(load_config(None).model)
        else:  # a FIFO or a directory there is refused by load_config, not skipped
            cfg = load_config(config_file)
            kind = model_kind(cfg.model)
            own = _flat(cfg)
            differences = {
                key: _text(value)
                for key, value in own.items()
                if paper.get(key) != value and key not in NOT_THE_EXPERIMENT
            }
    except UserInputError as exc:
        problem = str(exc)
    return RunInfo(
        name=name,
        path=path,
        status=status,
        date=_date(path),
        test_accuracy=float(accuracy) if _finite(accuracy) else None,
        epochs=int(epochs) if _finite(epochs) else None,
        differences=differences,
        kind=kind,
        has_model=(path / runs.MODEL_FILE).is_file(),
        problem=problem,
    )


def _finite(value: Any) -> bool:
    """A number JSON can carry: metrics.json of a diverged run may hold NaN, which no JSON reader accepts."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _date(path: Path) -> str:
    for candidate in (path.name, path.parent.name):
        try:
            stamp = datetime.strptime(candidate[:16], _STAMP_FORMAT).replace(tzinfo=UTC)
            return stamp.isoformat(timespec="seconds")
        except ValueError:
            continue
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")


class ModelShelf:
    """Models loaded once each (keyed by file and its modification time) and asked one at a time.

    A model that fails to load keeps its error, so a broken run costs one attempt, not one
    per request. The Keras backend must be active before the first load.
    """

    def __init__(self) -> None:
        self._loaded: dict[tuple[Path, int], TrainedModel | UnusableModel] = {}
        self._lock = threading.Lock()

    def get(self, info: RunInfo) -> TrainedModel:
        if not info.has_model:
            raise UnusableModel(f"run {info.name!r}: no {runs.MODEL_FILE} (status: {info.status})")
        model_file = info.path / runs.MODEL_FILE
        with self._lock:
            try:
                key = (model_file, model_file.stat().st_mtime_ns)
            except OSError:
                raise UnusableModel(f"run {info.name!r}: {model_file} is gone") from None
            if key not in self._loaded:
                try:
                    self._loaded[key] = load_trained(info.path)
                except UserInputError as exc:
                    self._loaded[key] = UnusableModel(f"run {info.name!r} is unusable: {exc}")
            found = self._loaded[key]
        if isinstance(found, UnusableModel):
            raise found
        return found

    def known_problem(self, info: RunInfo) -> str | None:
        """Why the run's model failed to load, if it was tried and failed; never loads it."""
        model_file = info.path / runs.MODEL_FILE
        try:
            key = (model_file, model_file.stat().st_mtime_ns)
        except OSError:
            return None
        with self._lock:
            found = self._loaded.get(key)
        return str(found) if isinstance(found, UnusableModel) else None

    def with_known_problems(self, catalog: dict[str, RunInfo]) -> dict[str, RunInfo]:
        """The catalog with each run whose model failed to load marked unusable (its problem set), so the
        Runs page says why and the Draw page does not start with it."""
        marked = {}
        for name, info in catalog.items():
            problem = self.known_problem(info) if info.usable else None
            marked[name] = dataclasses.replace(info, problem=problem) if problem else info
        return marked

    def predict(self, info: RunInfo, images: np.ndarray) -> np.ndarray:
        """(N, 10) probabilities for (N, 28, 28) images 0-255, preprocessed as the run's model was trained.

        One batch straight through the model (`predict_on_batch`): `model.predict`'s per-call
        set-up costs more than the network itself for the handful of images a page sends.
        """
        trained = self.get(info)
        x = transform(np.asarray(images, dtype=np.float32), trained.config.preprocess.method, trained.stats)
        with self._lock:
            return np.asarray(trained.model.predict_on_batch(x), dtype=np.float64)


def score_table(
    infos: Sequence[RunInfo], shelf: ModelShelf, files: Sequence[str], labels: Sequence[int], images: np.ndarray
) -> dict[str, Any]:
    """Every usable run x every digit: what it read, its accuracy, and the digits most runs miss."""
    labels_array = np.asarray(labels, dtype=np.int64)
    rows, misses, mistaken = [], Counter(), {name: Counter() for name in files}
    for info in infos:
        if not info.usable:
            continue
        row: dict[str, Any] = {"run": info.name, "test_accuracy": info.test_accuracy}
        try:
            predicted = shelf.predict(info, images).argmax(axis=1) if len(files) else np.zeros(0, np.int64)
        except UserInputError as exc:
            rows.append({**row, "error": str(exc)})
            continue
        correct = predicted == labels_array
        row.update(predicted=[int(p) for p in predicted], correct=[bool(c) for c in correct])
        row["accuracy"] = float(correct.mean()) if len(files) else None
        rows.append(row)
        for name, read, right in zip(files, predicted, correct, strict=True):
            if not right:
                misses[name] += 1
                mistaken[name][int(read)] += 1
    scored = sum(1 for row in rows if "predicted" in row)
    most_missed = [
        {
            "file": name,
            "label": int(labels_array[list(files).index(name)]),
            "missed_by": count,
            "of": scored,
            "read_as": {str(d): n for d, n in mistaken[name].most_common()},
        }
        for name, count in sorted(misses.items(), key=lambda item: (-item[1], item[0]))
    ]
    digits = [{"file": name, "label": int(label)} for name, label in zip(files, labels_array, strict=True)]
    return {"digits": digits, "runs": rows, "most_missed": most_missed}


def history(info: RunInfo) -> dict[str, list[float]]:
    """The run's history.csv columns (epoch, accuracy, loss, val_accuracy, val_loss, ...)."""
    return runs.read_history(info.path / runs.HISTORY_FILE)


def figure_png(infos: Sequence[RunInfo]) -> bytes:
    """One run: its figure 6 (the PNG train wrote, else drawn now). Several: their curves overlaid, drawn now."""
    from mnist_dnn.figures import plots

    if len(infos) == 1:
        saved = infos[0].path / f"{plots.FIG6}.png"
        if saved.is_file():
            return saved.read_bytes()
    figures = plots.run_figures(runs.read_for_figures([info.path for info in infos]))
    figure = figures[plots.FIG6 if len(infos) == 1 else plots.COMPARE]
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

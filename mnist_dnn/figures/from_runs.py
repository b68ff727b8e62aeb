"""The figures of run directories, whatever their kind: every file read first, then drawn.

    from mnist_dnn.figures import from_runs, plots
    figures = from_runs.run_figures(from_runs.read_for_figures([run_dir]))   # name -> Figure
    plots.save_figures(figures, run_dir)

One run directory gives figure 6 (and its gradient norms); a directory of run-1/, run-2/,
... figures 9 and 10; a sweep directory figure 4; several run directories one overlay.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnist_dnn.core.config import format_value, read_toml
from mnist_dnn.core.errors import UserInputError, read_user_text
from mnist_dnn.figures.diagnostics import plot_gradient_norms
from mnist_dnn.figures.plots import (
    COMPARE,
    FIG4,
    FIG6,
    FIG9,
    FIG10,
    GRADIENTS,
    PREDICTIONS,
    plot_history,
    plot_history_overlay,
    plot_loss_vs_step,
    plot_multi_run,
    plot_prediction_matrix,
)
from mnist_dnn.runs.files import CONFIG_FILE, HISTORY_FILE, PREDICTIONS_FILE, STEPS_FILE, SWEEP_PLAN_FILE
from mnist_dnn.runs.records import GRAD_NORM_PREFIX, read_history, read_json, read_steps

# --- reading: run directories back into plain data --------------------------------------------------------------


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


# --- drawing: what was read -> name -> Figure -----------------------------------------------------------------------


MAX_LEGEND_LABEL = 60  # characters; a legend of longer config differences is unreadable at README size


def run_figures(inputs: RunHistories | MultiRun | SweepSteps) -> dict[str, Figure]:
    """Every figure what `read_for_figures` read gives, by file name (without suffix).

    One run directory: figure 6 (and its gradient norms). A multi-run directory: figures 9
    and 10 (and the prediction matrix when predictions.csv is there). A sweep directory:
    figure 4. Several run directories: their curves overlaid, labelled by what differs
    between their config.toml files.
    """
    if isinstance(inputs, SweepSteps):
        return _sweep_figures(inputs)
    if isinstance(inputs, MultiRun):
        return _multi_run_figures(inputs)
    histories = inputs.histories
    validations = [_validation_name(config) for config in inputs.configs]
    if len(histories) == 1:
        figures = {FIG6: plot_history(histories[0], validation=validations[0])}
        if any(name.startswith(GRAD_NORM_PREFIX) for name in histories[0]):
            figures[GRADIENTS] = plot_gradient_norms(histories[0])
        return figures
    labels = config_labels(inputs.configs, inputs.names)
    return {COMPARE: plot_history_overlay(histories, labels, validations=validations)}


def config_labels(configs: Sequence[Mapping[str, Any] | None], names: Sequence[str]) -> list[str]:
    """Legend labels from what differs between configs ("optimizer.learning_rate=0.01"), else `names`.

    A missing config (None) means nothing can be compared, so `names` are used, as when a
    label would run past MAX_LEGEND_LABEL characters; labels that would still coincide get
    the name appended.
    """
    if any(config is None for config in configs):
        return list(names)
    flat = [_flatten(config) for config in configs]
    keys = sorted({key for one in flat for key in one})
    differing = [key for key in keys if len({repr(one.get(key)) for one in flat}) > 1]
    if not differing:
        return list(names)
    labels = [", ".join(f"{key}={format_value(one.get(key))}" for key in differing) for one in flat]
    if max(len(label) for label in labels) > MAX_LEGEND_LABEL:  # too much differs to say: the names say it
        return list(names)
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({name})" for label, name in zip(labels, names, strict=True)]
    return labels


def _validation_name(config: Mapping[str, Any] | None) -> str:
    """'test' for the paper's validation on the test set, else 'validation' (held-out training images)."""
    section = (config or {}).get("validation", {})
    return "test" if not isinstance(section, Mapping) or section.get("source", "test") == "test" else "validation"


def _multi_run_figures(multi: MultiRun) -> dict[str, Figure]:
    names = [_model_name(run) for run in multi.run_names]
    figures = {
        FIG9: plot_multi_run(multi.histories, "accuracy", model_names=names),
        FIG10: plot_multi_run(multi.histories, "loss", model_names=names),
    }
    if multi.predictions is not None:
        found = multi.predictions
        model_names = [_model_name(run) for run in found.run_names]
        figures[PREDICTIONS] = plot_prediction_matrix(found.predicted, found.labels, found.files, model_names)
    return figures


def _model_name(run_name: str) -> str:
    """'run-3' -> 'Model 3', as figures 9 and 10 name the models."""
    return f"Model {run_name.split('-')[1]}"


def _sweep_figures(sweep: SweepSteps) -> dict[str, Figure]:
    """Figure 4 (right) of a sweep directory: each setting's loss per step, averaged over its runs."""
    curves = {}
    for setting, histories in sweep.steps.items():
        length = min(len(h["loss"]) for h in histories)
        mean = np.mean([h["loss"][:length] for h in histories], axis=0)
        curves[setting] = ([int(step) for step in histories[0]["step"][:length]], mean)
    return {FIG4: plot_loss_vs_step(curves)}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"learning_rate": 0.01}} -> {"optimizer.learning_rate": 0.01}."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat

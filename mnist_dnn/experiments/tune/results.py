"""A study's results: the ranked trials table, the best setting retrained on the whole training set (the
test set read once), best.toml and best.json, and the figures.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.config import Config, apply_overrides, config_to_toml
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.experiments.tune.loop import TrialDone
from mnist_dnn.experiments.tune.space import Dimension, TunePlan, full_training_config, setting_of
from mnist_dnn.runs import records

log = logging.getLogger(__name__)


BEST_DIR = "best"
TABLE_FILE = "trials.csv"
BEST_CONFIG_FILE = "best.toml"
RESULT_FILE = "best.json"
HISTORY_FIGURE = "optimization_history"
IMPORTANCE_FIGURE = "param_importances"


def trials_table(study, space: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Finished trials (complete, then pruned), best mean validation accuracy first, with mean ± std over seeds."""
    from optuna.trial import TrialState

    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        scores = trial.user_attrs.get("validation_accuracy", [])
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "epochs": trial.user_attrs.get("epochs"),
                "val_accuracy_mean": float(np.mean(scores)),
                "val_accuracy_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                **{key: _show(value) for key, value in setting_of(space, trial.params).items()},
            }
        )
    rows.sort(key=lambda row: (row["state"] != "complete", -row["val_accuracy_mean"], row["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def show_setting(space: Sequence[Dimension], params: dict[str, Any]) -> str:
    """'optimizer.learning_rate=0.00443, model.hidden_units=[400,100]': a trial's setting, short."""
    return ", ".join(f"{key}={_show(value)}" for key, value in setting_of(space, params).items())


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = ["rank", *[key for key in rows[0] if key != "rank"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "val_accuracy_mean": f"{row['val_accuracy_mean']:.6f}",
                "val_accuracy_std": f"{row['val_accuracy_std']:.6f}",
            }
        )
    return buffer.getvalue()


def table_markdown(rows: Sequence[dict[str, Any]], space: Sequence[Dimension]) -> str:
    head = ["rank", "trial", "state", "epochs", "val accuracy (mean ± std)", *[dim.key for dim in space]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["rank"],
            row["trial"],
            row["state"],
            row["epochs"],
            f"{row['val_accuracy_mean']:.4f} ± {row['val_accuracy_std']:.4f}",
            *[row[dim.key] for dim in space],
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def best_setting(study, plan: TunePlan) -> tuple[Any, Config]:
    """The best complete trial and its setting as a full-training-set config (train.seed: its first seed)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserInputError("tune: no trial completed (all pruned or failed); widen --space or use --pruner none")
    best = study.best_trial
    cfg = apply_overrides(
        plan.base, {**setting_of(plan.space, best.params), "train.seed": best.user_attrs["train_seeds"][0]}
    )
    return best, full_training_config(cfg)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (created): processes sharing a tune directory retrain the best setting once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retrain_best(study, plan: TunePlan, dataset, tune_dir: Path) -> dict[str, Any]:
    """Retrain the best setting on the full training set with its trial's seeds; score the test set once.

    The seeds train as a sweep's bundle does (bundles.train_bundle: side by side on a CPU's
    cores, each run the ordinary run `train` makes of its config). Runs already complete
    in best/ are read, not trained again; an interrupted one is resumed. Writes best.toml
    and best.json; returns best.json's content.
    """
    from mnist_dnn.experiments.bundles import plan_bundles, train_bundle
    from mnist_dnn.experiments.sweep import PlannedRun

    best, cfg = best_setting(study, plan)
    atomic_write_text(tune_dir / BEST_CONFIG_FILE, config_to_toml(cfg))
    seeded = [dataclasses.replace(cfg.train, seed=seed) for seed in best.user_attrs["train_seeds"]]
    runs = [
        PlannedRun("best", f"seed{k}", dataclasses.replace(cfg, train=train), k, None)
        for k, train in zip(plan.seeds, seeded, strict=True)
    ]
    results = []
    with _locked(tune_dir / ".best.lock"):
        for bundle in plan_bundles(runs):  # one, unless the setting cannot share a program: a run each
            dirs = [tune_dir / BEST_DIR / run.directory for run in bundle.members]
            results += train_bundle(bundle, dirs, dataset, tensorboard=plan.tensorboard)
    test = [m["test_accuracy"] for m in results]
    summary = {
        "trial": best.number,
        "params": best.params,  # as Optuna stores them (a choice by its TOML text)
        "setting": setting_of(plan.space, best.params),
        "search_val_accuracy_mean": best.value,
        "train_seeds": best.user_attrs["train_seeds"],
        "test_accuracy": test,
        "test_accuracy_mean": float(np.mean(test)),
        "test_accuracy_std": statistics.stdev(test) if len(test) > 1 else 0.0,
    }
    records.write_json(tune_dir / RESULT_FILE, summary)
    return summary


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA over complete trials); empty while too few trials completed.

    With too few, Optuna warns and calls every parameter equally important: no figure beats a misleading one.
    """
    import warnings

    import optuna

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shares = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):
            return {}
    return {} if any("too small" in str(w.message) for w in caught) else shares


def write_results(study, plan: TunePlan, tune_dir: Path, plots: bool = True) -> list[dict[str, Any]]:
    """trials.csv (the ranked table) and, with `plots`, the optimisation history and importances; -> the rows."""
    rows = trials_table(study, plan.space)
    atomic_write_text(tune_dir / TABLE_FILE, table_csv(rows))
    if plots:
        from mnist_dnn.figures.diagnostics import plot_optimization_history, plot_param_importances
        from mnist_dnn.figures.plots import save_figure

        save_figure(plot_optimization_history(rows), tune_dir / f"{HISTORY_FIGURE}.png")
        shares = importances(study)
        if shares:
            save_figure(plot_param_importances(shares), tune_dir / f"{IMPORTANCE_FIGURE}.png")
    return rows


def log_trial(space: Sequence[Dimension]) -> TrialDone:
    """A progress line per finished trial, through logging (the CLI shows it unless --quiet)."""

    def report(trial) -> None:
        scores, epochs_run = trial.user_attrs["validation_accuracy"], trial.user_attrs["epochs"]
        state = f"pruned after epoch {epochs_run}" if trial.state.name == "PRUNED" else "complete"
        log.info(
            "[trial %d] %s: val accuracy %.4f (%s)",
            trial.number,
            state,
            np.mean(scores),
            show_setting(space, trial.params),
        )

    return report


def best_summary(plan: TunePlan, best: dict[str, Any]) -> str:
    """The line saying which trial won and what its retrained runs scored on the test set."""
    return (
        f"Best: trial {best['trial']} ({show_setting(plan.space, best['params'])}), "
        f"validation {best['search_val_accuracy_mean']:.4f}; "
        f"retrained on the full training set: test accuracy {best['test_accuracy_mean']:.4f} "
        f"± {best['test_accuracy_std']:.4f} over {len(plan.seeds)} seeds"
    )

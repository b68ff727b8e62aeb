"""mnist-dnn from Python: train, sweep, read runs back, predict and draw, as the commands do.

    from mnist_dnn import train, load_run, predict, plot_history

    result = train("paper", {"data.train_limit": 2000}, epochs=1)   # a run directory under runs/
    run = load_run(result.run_dir)                                   # history, metrics, config, model
    predict(run, ["custom_digits"]).digits                           # array([3, 8, 9, 5, 4])
    plot_history(run)                                                # figure 6, a matplotlib Figure

The commands call these same functions, so a notebook gets the very run files, numbers and
messages the CLI gives. Each function chooses the Keras backend itself before anything
imports Keras, as every command does. A mistake in what is passed raises UserInputError (a
ValueError) with the one line the CLI would print; nothing here prints or exits.

Nothing heavy is imported until a function runs: `import mnist_dnn` stays instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_dnn.core.config import Config, resolve_backend, resolve_config
from mnist_dnn.core.errors import UserInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from mnist_dnn.training.load import TrainedModel

__all__ = [
    "Config",
    "Predictions",
    "Run",
    "SweepResult",
    "TrainResult",
    "UserInputError",
    "load_run",
    "open_model",
    "plot_history",
    "predict",
    "run_figures",
    "sweep",
    "train",
]

DEFAULT_RUNS_ROOT = Path("runs")  # where a run goes when no `out` is given, as for the commands

PathLike = str | Path
EpochCallback = Callable[[int, dict[str, float]], None]


# --- one run -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """What `train` made: the run directory, its metrics.json as a dict, and the figure files drawn into it."""

    run_dir: Path
    metrics: dict[str, Any]
    config: Config
    figures: tuple[Path, ...] = ()


def train(
    config: PathLike | Config | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    epochs: int | None = None,
    backend: str | None = None,
    engine: str | None = None,
    out: PathLike | None = None,
    name: str | None = None,
    resume: PathLike | None = None,
    runs_root: PathLike = DEFAULT_RUNS_ROOT,
    figures: bool = True,
    tensorboard: bool = True,
    checkpoint_every: int = 1,
    verbose: int = 0,
    progress: Sequence[EpochCallback] = (),
) -> TrainResult:
    """Train one run, evaluate it on the test set and save it, as `mnist-dnn train` does.

    Args:
        config: a TOML file, a built-in config's name ("sgd"; `mnist-dnn config list`), a Config, or None for
            the paper's settings.
        overrides: dotted keys, as `--set` takes them: `{"optimizer.learning_rate": 1e-2}`.
        seed: like the other keywords, wins over `overrides` as the CLI's flags win over `--set`.
        out: the run directory to create (must not exist); default runs_root/<UTC time>-<name>.
        name: label in the default directory name; default the config file's name ("paper").
        resume: an interrupted run directory to continue with its own config.toml (give no config then).
        figures: draw figure 6 (and the gradient norms) into the run directory, as `train` does.
        verbose: Keras' progress for the fit engine (0 silent, 1 bar, 2 a line per epoch).
        progress: called as f(epoch, metrics) after every epoch, on any engine.

    Same config and seed on the same machine and backend give byte-identical history and metrics.
    """
    from mnist_dnn.runs import directory as runs

    flags = {"train.seed": seed, "train.epochs": epochs, "train.backend": backend, "train.engine": engine}
    given_out = None if out is None else Path(out)
    if resume is not None:
        given = dict(config=config, overrides=overrides, out=out, name=name, seed=seed, epochs=epochs)
        given.update(backend=backend, engine=engine)
        if wrong := [key for key, value in given.items() if value is not None]:
            raise UserInputError(f"{wrong[0]}: only applies to a new run (a resumed run keeps its config.toml)")
        resume = Path(resume)
        cfg, run_name = runs.resumable_config(resume), None
    else:
        source = _config_source(config)
        cfg = resolve_config(source, {**(overrides or {}), **{k: v for k, v in flags.items() if v is not None}})
        run_name = runs.check_run_name(name) if name else runs.default_run_name(_path_or_none(source))
        if given_out is not None:
            runs.check_new_run_dir(given_out)
    _activate(cfg.train.backend)
    from mnist_dnn.experiments.experiment import run_training

    run_dir, metrics = run_training(
        cfg, Path(runs_root), run_name, given_out, resume, verbose, tuple(progress), checkpoint_every, tensorboard
    )
    drawn = tuple(_save(_figures([run_dir]), run_dir)) if figures else ()
    return TrainResult(run_dir, metrics, cfg, drawn)


# --- many runs -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """What `sweep` made: the sweep directory, its runs in plan order, and the ranked summary."""

    sweep_dir: Path
    runs: list[Path]
    summary: pd.DataFrame  # a row per setting, best first: summary.csv as a table
    rows: list[dict[str, Any]]  # the same, as plain dicts
    folds: bool
    figures: tuple[Path, ...] = ()


def sweep(
    settings: Mapping[str, Any] | Sequence[str] = (),
    seeds: int | str | Iterable[int] = 0,
    *,
    configs: Sequence[PathLike] = (),
    folds: int | None = None,
    epochs: int | None = None,
    backend: str | None = None,
    engine: str | None = None,
    data_dir: PathLike | None = None,
    out: PathLike | None = None,
    name: str = "sweep",
    executor: str = "local",
    workers: int | None = None,
    cores: int | None = None,
    ray_address: str | None = None,
    runs_root: PathLike = DEFAULT_RUNS_ROOT,
    figures: bool = True,
    tensorboard: bool = True,
) -> SweepResult:
    """Train every combination of settings x seeds (x folds) and rank the settings, as `mnist-dnn sweep` does.

    Args:
        settings: what to vary, `{"optimizer.learning_rate": [1e-3, 1e-2]}` (a single value is one setting),
            or the CLI's texts `["optimizer.learning_rate=1e-3,1e-2"]`.
        seeds: the seeds every setting is trained with: 0, "0-2", "0,3,7" or range(3).
        configs: config files (or built-in configs' names), each an axis value of its own; default the paper's.
        folds: k-fold cross-validation on the training set; the ranking is then by validation accuracy.
        out: the sweep directory; the same `out` again continues an interrupted sweep.
        executor: "local", "processes" (`workers` of them) or "ray" (at `ray_address`, else a local Ray).
        cores: CPU cores the local executor trains a bundle's runs on side by side; default every usable one.

    Each run is an ordinary run directory inside the sweep directory (`load_run` reads it).
    """
    from mnist_dnn.experiments import sweep as sweeps
    from mnist_dnn.runs import directory as runs
    from mnist_dnn.runs.outputs import check_output_dir

    given_out = None if out is None else Path(out)
    if given_out is not None:
        check_output_dir(given_out)
    flags = {"train.epochs": epochs, "train.backend": backend, "data.data_dir": data_dir and str(data_dir)}
    if isinstance(settings, Mapping):
        axes = [sweeps.make_axis(k, v if isinstance(v, list | tuple) else [v]) for k, v in settings.items()]
    else:
        axes = [settings] if isinstance(settings, str) else list(settings)
    paths = [_config_path(c) for c in configs]
    resolved, plan = sweeps.plan_from_flags(paths, {**flags, "train.engine": engine}, axes, _seeds_text(seeds), folds)
    run_name = runs.check_run_name(name)
    from mnist_dnn.experiments.executors import run_sweep

    sweep_dir, rows = run_sweep(
        plan, resolved, given_out, Path(runs_root), run_name, executor, workers, ray_address, tensorboard, cores
    )
    drawn = tuple(_save(_figures([sweep_dir]), sweep_dir)) if figures else ()
    import pandas as pd

    summary = pd.DataFrame(rows, columns=sweeps.summary_columns())
    return SweepResult(sweep_dir, [sweep_dir / run.directory for run in plan], summary, rows, bool(folds), drawn)


def _seeds_text(seeds: int | str | Iterable[int]) -> str:
    """Seeds as `--seeds` writes them, so they are checked as the CLI checks them: range(3) -> "0,1,2"."""
    if isinstance(seeds, str):
        return seeds
    if isinstance(seeds, int):
        return str(seeds)
    return ",".join(str(seed) for seed in seeds)


# --- reading a run back --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A finished run directory read back: its history per epoch, metrics and config; the model when asked."""

    path: Path
    history: pd.DataFrame  # history.csv: a row per epoch (loss, accuracy, val_loss, val_accuracy, ...)
    metrics: dict[str, Any]  # metrics.json
    config: Config  # config.toml

    @functools.cached_property
    def model(self) -> TrainedModel:
        """The trained Keras model with its preprocessing (loaded on first use: it imports Keras)."""
        return open_model(self.path)


def load_run(run: PathLike | TrainResult) -> Run:
    """A run directory (or what `train` returned) -> Run; nothing of Keras is loaded until `.model`."""
    import pandas as pd

    from mnist_dnn.core.config import load_config
    from mnist_dnn.runs import directory as runs
    from mnist_dnn.runs.files import CONFIG_FILE, HISTORY_FILE

    path = _run_dir(run)
    history = pd.DataFrame(runs.read_history(path / HISTORY_FILE))
    history["epoch"] = history["epoch"].astype(int)  # read as floats, as every column; whole numbers from 1
    return Run(path, history, runs.read_metrics(path), load_config(path / CONFIG_FILE))


def open_model(path: PathLike, backend: str | None = None) -> TrainedModel:
    """A run directory or .keras file -> the model, its config and preprocessing statistics (backend chosen first).

    `backend` defaults to the one Keras already runs on in this process, else $KERAS_BACKEND, else jax.
    """
    _activate(backend)
    from mnist_dnn.training.load import load_trained

    return load_trained(Path(path))


# --- predicting ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predictions:
    """The digit a model reads in each image, and all ten probabilities."""

    names: list[str]  # file names, or "0", "1", ... for arrays
    probabilities: np.ndarray  # (N, 10)
    rows: list[dict[str, Any]]  # a dict per image, as `mnist-dnn predict --json` prints them

    @property
    def digits(self) -> np.ndarray:
        """(N,) the most probable digit of each image; -1 where the model's output is not a number."""
        import numpy as np

        return np.array([-1 if row["predicted"] is None else row["predicted"] for row in self.rows], dtype=np.int64)


def predict(
    model: PathLike | Run | TrainResult | TrainedModel,
    images: np.ndarray | PathLike | Sequence[PathLike],
    *,
    invert: bool = False,
    method: str = "mnist",
    backend: str | None = None,
) -> Predictions:
    """The digit `model` reads in each image, preprocessed as its training images were.

    Args:
        model: a run directory or .keras file, a Run, what `train` returned, or an opened model.
        images: raw pixels 0-255 (0 = paper, 255 = ink, as MNIST's arrays), shape (N, 28, 28) or
            (N, 784); or CSV/PNG/JPEG files or directories of them, as `mnist-dnn predict` reads them
            ("paper": the paper's five digits, packaged).
        invert: image files hold light ink on dark paper.
        method: how photos are digitized: "mnist" (as MNIST was made) or "naive".
        backend: as for `open_model`.
    """
    from mnist_dnn.training.evaluate import digit_probabilities, prediction_rows

    if isinstance(images, str | Path) or (
        isinstance(images, Sequence) and all(isinstance(path, str | Path) for path in images)
    ):
        from mnist_dnn.handwriting.digits import load_digits

        files = [_digits_path(images)] if isinstance(images, str | Path) else [_digits_path(p) for p in images]
        digits = load_digits(files, invert=invert, method=method, require_labels=False)
        pixels, names = digits.images, digits.names
    else:
        pixels = _pixels(images)
        names = [str(k) for k in range(len(pixels))]
    trained = _trained(model, backend)
    probabilities = digit_probabilities(trained, pixels)
    return Predictions(names, probabilities, prediction_rows(trained.path, names, probabilities))


def _pixels(images) -> np.ndarray:
    """(N, 28, 28) float32 0-255 from an array of (N, 28, 28), (N, 784) or one image; anything else refused."""
    import numpy as np

    from mnist_dnn.handwriting.digits import PIXEL_MAX, SIDE

    array = np.asarray(images)
    if array.shape in ((SIDE, SIDE), (SIDE * SIDE,)):
        array = array[np.newaxis]
    if array.ndim == 2 and array.shape[1] == SIDE * SIDE:
        array = array.reshape(-1, SIDE, SIDE)
    if array.ndim != 3 or array.shape[1:] != (SIDE, SIDE) or not np.issubdtype(array.dtype, np.number):
        raise UserInputError(f"images: expected shape (N, 28, 28) or (N, 784), got {array.dtype} {array.shape}")
    array = array.astype(np.float32)
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= PIXEL_MAX):
        raise UserInputError("images: expected raw pixels 0-255 (0 = paper, 255 = ink)")
    if array.size and 0 < array.max() <= 1:
        raise UserInputError("images: values in 0..1; expected raw pixels 0-255 (0 = paper, 255 = ink), times 255")
    return array


def _trained(model, backend: str | None) -> TrainedModel:
    if isinstance(model, Run):
        return model.model
    if isinstance(model, str | Path | TrainResult):
        return open_model(_run_dir(model), backend)
    return model


# --- figures -------------------------------------------------------------------------------------------------------


def run_figures(*run_dirs: PathLike | Run | TrainResult) -> dict[str, Figure]:
    """Every figure `mnist-dnn plot` draws from these directories, by file name (without suffix).

    One run: figure 6 (and its gradient norms); a multi-run directory (section 5.2.2): figures 9
    and 10; a sweep directory: figure 4; several runs: their curves overlaid.
    """
    return _figures([_run_dir(run) for run in run_dirs])


def plot_history(run: PathLike | Run | TrainResult) -> Figure:
    """Figure 6 of one run: accuracy and loss per epoch, train and test (or validation) lines."""
    from mnist_dnn.figures import plots

    drawn = run_figures(run)
    if plots.FIG6 not in drawn:
        raise UserInputError(f"{_run_dir(run)}: not a single run's directory (figure 6 draws one run)")
    return drawn[plots.FIG6]


def _figures(run_dirs: list[Path]) -> dict[str, Figure]:
    """name -> Figure of whatever kind of run directories these are (every file read before drawing)."""
    from mnist_dnn.figures import plots
    from mnist_dnn.runs import directory as runs

    return plots.run_figures(runs.read_for_figures(run_dirs))


def _save(drawn: Mapping[str, Figure], directory: Path) -> list[Path]:
    from mnist_dnn.figures import plots

    return plots.save_figures(drawn, directory)


# --- inputs --------------------------------------------------------------------------------------------------------


def _activate(backend: str | None) -> None:
    """Choose the Keras backend before Keras is imported; once it is, keep the one it runs on (None asks that)."""
    from mnist_dnn.core.backend import activate_backend

    if backend is None and "keras" in sys.modules:
        backend = sys.modules["keras"].backend.backend()
    activate_backend(resolve_backend(backend))


def _config_source(config: PathLike | Config | None) -> Path | Config | None:
    return config if config is None or isinstance(config, Config) else _config_path(config)


def _config_path(config: PathLike) -> Path:
    """As --config reads its value: a text is a file, else a built-in config's name ("sgd"); a Path is a file."""
    from mnist_dnn.core.packaged import config_arg

    return config if isinstance(config, Path) else config_arg(config)


def _digits_path(path: PathLike) -> Path:
    """As `predict` reads its files: a text is a path, or "paper" for the packaged digits when no such path is here."""
    from mnist_dnn.core.packaged import digits_arg

    return path if isinstance(path, Path) else digits_arg(path)


def _path_or_none(source: Path | Config | None) -> Path | None:
    return source if isinstance(source, Path) else None


def _run_dir(run: PathLike | Run | TrainResult) -> Path:
    if isinstance(run, TrainResult):
        return run.run_dir
    if isinstance(run, Run):
        return run.path
    return Path(run)

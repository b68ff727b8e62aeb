"""The commands' flags: shared flags, each command's flag group, some sets packed into one argument.

`mnist_dnn.cli.app` declares the commands with these; like it, this module imports no framework.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import click

from mnist_dnn.core.config import BACKENDS, ENGINES, MAX_SEED, resolve_config

DEFAULT_RUNS_ROOT = Path("runs")
DEFAULT_CUSTOM_RUNS = 6  # section 5.2.2: "six independent network training instances"
CONFUSION_FILE = "confusion_matrix.csv"
FIGURE_FORMATS = ("png", "svg", "pdf")  # = plots.FORMATS, repeated so --help does not import matplotlib


class ConfigArgument(click.ParamType):
    """--config: a TOML file, or a built-in config's name (`mnist-dnn config list`); a path that exists wins."""

    name = "file|name"

    def convert(self, value, param, ctx):
        from mnist_dnn.core.packaged import config_arg

        return value if isinstance(value, Path) else config_arg(value)


class DigitsArgument(click.ParamType):
    """A digit directory or file, or 'paper' for the packaged digits of section 5.2.2; a path that exists wins."""

    name = "path|paper"

    def __init__(self, exists: bool = False):
        self.path = click.Path(exists=exists, path_type=Path)

    def convert(self, value, param, ctx):
        from mnist_dnn.core.packaged import digits_arg

        return self.path.convert(value if isinstance(value, Path) else digits_arg(value), param, ctx)


CONFIG_HELP = "TOML config, or a built-in config's name (mnist-dnn config list)"


backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Keras backend [default: $KERAS_BACKEND, else jax].",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Read IDX files (raw or .gz) or mnist.npz from DIR instead of the cache.",
)


@dataclasses.dataclass(frozen=True)
class ExperimentFlags:
    """The flags of `experiment_options` as given (None: not given)."""

    config: Path | None
    epochs: int | None
    batch_size: int | None
    seed: int | None
    backend: str | None
    learning_rate: float | None
    data_dir: Path | None

    def resolve(self, engine: str | None = None, assignments: tuple[str, ...] = ()):
        """File + --set + these flags + defaults -> the run's Config, backend and engine made concrete."""
        flags = {
            "train.epochs": self.epochs,
            "train.batch_size": self.batch_size,
            "train.seed": self.seed,
            "optimizer.learning_rate": self.learning_rate,
            "train.backend": self.backend,
            "data.data_dir": str(self.data_dir) if self.data_dir is not None else None,
            "train.engine": engine,
        }
        return resolve_config(self.config, flags, assignments)


def resolve_train(experiment: ExperimentFlags, *, engine, assignments, out, name, resume_dir):
    """`train`'s (Config, run name): the run's own config.toml with --resume, else file + flags (name checked)."""
    from mnist_dnn.runs import directory as runs

    if resume_dir is not None:
        flags = dataclasses.asdict(experiment)
        flags.update(engine=engine, set=assignments, out=out, name=name)
        refuse_inapplicable("to a new run, not with --resume (a resumed run keeps its config.toml)", **flags)
        return runs.resumable_config(resume_dir), None
    cfg = experiment.resolve(engine, assignments)
    run_name = runs.check_run_name(name) if name else runs.default_run_name(experiment.config)
    if out is not None:
        runs.check_new_run_dir(out)
    return cfg, run_name


def experiment_options(command):
    """The flags that change the experiment, shared by `train`, `eval` and `config show`.

    The command receives them as one `experiment` argument (an ExperimentFlags).
    """

    @functools.wraps(command)
    def packed(*args, config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, **kwargs):
        flags = ExperimentFlags(config_path, epochs, batch_size, seed, backend, learning_rate, data_dir)
        return command(*args, experiment=flags, **kwargs)

    options = [
        click.option(
            "--config",
            "config_path",
            type=ConfigArgument(),
            help=f"{CONFIG_HELP}; default: the paper's settings (paper).",
        ),
        click.option("--epochs", type=int, help="Passes over the training set [paper: 10]."),
        click.option("--batch-size", type=int, help="Images per gradient step [paper: 64]."),
        click.option("--seed", type=int, help="Random seed for Python, NumPy and the backend [paper: 0]."),
        click.option("--learning-rate", type=float, help="Optimizer step size [paper: Adam's 0.001]."),
        backend_option,
        data_dir_option,
    ]
    for option in reversed(options):
        packed = option(packed)
    return packed


cores_option = click.option(
    "--cores",
    type=click.IntRange(min=1),
    help="CPU cores that runs train on side by side, one JAX CPU device each: in this process with --executor local "
    "[default: $MNIST_DNN_CORES, else every core this process may use; never more]; shared by the Ray tasks "
    "with --executor ray [default: the cluster's CPUs].",
)


no_tensorboard_option = click.option(
    "--no-tensorboard", is_flag=True, help="Write no TensorBoard event files (RUN/tensorboard/) for this run."
)
set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change any config key, e.g. --set model.activation=sigmoid (repeatable; see configs/README.md).",
)


def refuse_other_executor(executor: str, **given: tuple[Any, tuple[str, ...]]) -> None:
    """name=(value, the executors it belongs to): --ray-address given with --executor local, say, is a mistake."""
    for name, (value, executors) in given.items():
        if value is not None and executor not in executors:
            raise click.UsageError(f"--{name.replace('_', '-')}: only with --executor {' or '.join(executors)}")


def refuse_inapplicable(when: str, **given: Any) -> None:
    """A flag that means nothing in this mode is a mistake, not something to ignore silently."""
    for name, value in given.items():
        if value not in (None, False, ()):
            raise click.UsageError(f"--{name.replace('_', '-')}: only applies {when}")


DIGITIZE_METHODS = ("mnist", "naive")  # = digitize.METHODS, repeated so --help does not import numpy


METHOD_HELP = (
    "How a PNG/JPEG becomes 28x28: 'mnist' isolates the ink, scales it into a 20 px box and centres it by mass, "
    "as MNIST was made; 'naive' is the paper's square crop and shrink [default: mnist]."
)


@dataclasses.dataclass(frozen=True)
class DigitFlags:
    """`eval`'s custom digits and how to read them, as given."""

    paths: tuple[Path, ...]
    labels: str | None
    invert: bool
    method: str

    def load(self, compare_methods: bool):
        """(digits.Digits, method -> the same digits digitized from their page images that way, or None)."""
        from mnist_dnn.handwriting.digits import load_digits, method_images

        digits = load_digits(self.paths, self.labels, invert=self.invert, method=self.method)
        return digits, method_images(digits, DIGITIZE_METHODS) if compare_methods else None


def custom_digit_options(command):
    """`eval`'s flags that name custom digits and say how they are read; the command gets one `digit_flags`."""

    @functools.wraps(command)
    def packed(*args, custom_paths, labels, invert, method, **kwargs):
        return command(*args, digit_flags=DigitFlags(custom_paths, labels, invert, method), **kwargs)

    options = [
        click.option(
            "--custom-csv",
            "custom_paths",
            multiple=True,
            type=DigitsArgument(),
            help="Your digits: a directory such as custom_digits, or CSV/PNG/JPEG files (repeat the flag); "
            "'paper': the paper's five, packaged.",
        ),
        click.option(
            "--labels", help="The true digits in file order, e.g. 3,8,9,5,4 [default: labels.csv, else file names]."
        ),
        click.option(
            "--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them."
        ),
        click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=METHOD_HELP),
    ]
    for option in reversed(options):
        packed = option(packed)
    return packed


def _options(*decorators):
    """Several click decorators as one, listed in --help order: a command's flags declared in one place."""

    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


train_options = _options(
    experiment_options,
    click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="Run directory to create (must not exist) [default: runs/<UTC time>-<name>].",
    ),
    click.option("--name", help="Label in the default run directory name [default: the config file's name]."),
    click.option("-q", "--quiet", is_flag=True, help="No progress output; only the final scores."),
    click.option(
        "--log-every-epoch",
        is_flag=True,
        help="One line per epoch instead of a progress bar (automatic when output is not a terminal).",
    ),
    click.option("--no-plots", is_flag=True, help="Do not draw fig6_accuracy_loss.png into the run directory."),
    click.option(
        "--engine",
        type=click.Choice(["auto", "fused", "fit"]),
        help="Training loop: fused (jax: one compiled call per epoch) or Keras fit [default: auto = fused on jax].",
    ),
    set_option,
    click.option(
        "--resume",
        "resume_dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Continue the interrupted run in RUN_DIR from its last checkpoint, with the run's own config.toml.",
    ),
    click.option(
        "--checkpoint-every",
        type=click.IntRange(min=0),
        default=1,
        show_default=True,
        help="Save a resumable checkpoint every N epochs (0: never).",
    ),
    no_tensorboard_option,
)


sweep_options = _options(
    click.option(
        "--config",
        "config_paths",
        multiple=True,
        type=ConfigArgument(),
        help=f"{CONFIG_HELP}; give several to compare them (the file becomes an axis) [default: the paper's].",
    ),
    click.option(
        "--set",
        "axis_texts",
        multiple=True,
        metavar="KEY=V1,V2,...",
        help="A config key and the values to try, e.g. optimizer.learning_rate=1e-4,1e-3 "
        "(repeatable: all combinations).",
    ),
    click.option("--seeds", default="0", show_default=True, help="Seeds of every setting: 0-4, or 0,3,7."),
    click.option(
        "--folds",
        type=click.IntRange(min=2, max=20),
        help="k-fold cross-validation: each setting and seed trains k times, validating on each fold of the "
        "training set.",
    ),
    click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run [default: the config's]."),
    backend_option,
    click.option("--engine", type=click.Choice(ENGINES), help="Training loop, as for train."),
    data_dir_option,
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        help="Sweep directory; the same command with the same --out continues an interrupted sweep "
        "[default: runs/<UTC time>-<name>].",
    ),
    click.option("--name", default="sweep", show_default=True, help="Label in the default sweep directory name."),
    click.option(
        "--executor",
        type=click.Choice(["local", "processes", "ray"]),  # make_executor's names (executors is imported lazily)
        default="local",
        show_default=True,
        help="Where bundles train: this process, --workers processes here, or Ray tasks "
        "(pip install 'mnist-dnn[ray]').",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes of --executor processes, each pinned to its share of the CPUs [default: one per CPU]; "
        "Ray tasks at a time of --executor ray, sharing --cores [default: one per bundle, up to the CPUs].",
    ),
    cores_option,
    click.option(
        "--ray-address",
        metavar="HOST:PORT|auto",
        help="Join this Ray cluster (started with 'ray start --head') [default: start a local Ray for the sweep].",
    ),
    click.option("--no-plots", is_flag=True, help="Do not draw figure 4 into the sweep directory."),
    click.option("-q", "--quiet", is_flag=True, help="Only the summary table."),
    no_tensorboard_option,
)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output file that mnist-dnn did not write."
)


plot_options = _options(
    click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path)),
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory for the figures, created if missing [default: the run directory; needed for several].",
    ),
    click.option(
        "--format", "fmt", type=click.Choice(FIGURE_FORMATS), default="png", help="Figure file format [default: png]."
    ),
    click.option(
        "--diagnostics",
        is_flag=True,
        help="Also load model.keras and draw the test set's confusion matrix and most confidently wrong digits.",
    ),
    click.option(
        "--activations",
        is_flag=True,
        help="Draw figure 3 (ReLU, sigmoid, tanh and their derivatives) into --out, or here; needs no run.",
    ),
    click.option(
        "--show", "open_window", is_flag=True, help="Also open the figures in windows, if there is a display."
    ),
    overwrite_option,
)


show_options = _options(
    click.option("--index", type=click.IntRange(min=0), help="Training image to draw [default: 20, as section 5.1]."),
    click.option("--grid", type=click.IntRange(1, 400), help="Draw the first N test digits in a grid instead."),
    click.option(
        "--custom-csv",
        "custom_paths",
        multiple=True,
        type=DigitsArgument(exists=True),
        help="Draw your own digits instead (CSV files or a directory of them, as section 5.2.2; 'paper': the "
        "paper's five, packaged); repeatable.",
    ),
    click.option(
        "--model",
        "model_path",
        type=click.Path(exists=True, path_type=Path),
        help="Run directory or .keras file: caption each digit with its prediction and probability.",
    ),
    data_dir_option,
    click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Image to write, .png, .svg or .pdf [default: mnist-train-INDEX.png or mnist-test-grid-N.png here].",
    ),
    click.option("--show", "open_window", is_flag=True, help="Also open it in a window, if there is a display."),
    overwrite_option,
)


digitize_options = _options(
    click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.option(
        "--out",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory for NAME.csv and NAME.preview.png per image (and labels.csv), created if missing.",
    ),
    click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=METHOD_HELP),
    click.option(
        "--label",
        "labels",
        type=click.IntRange(0, 9),
        multiple=True,
        help="The digit in each image, once per image in order; goes into labels.csv [default: a leading digit "
        "of each file name].",
    ),
    click.option("--overwrite", is_flag=True, help="Replace files of the same names in --out."),
)


eval_options = _options(
    click.option(
        "--model",
        "model_path",
        type=click.Path(exists=True, path_type=Path),
        help="Run directory or .keras file to score [default: train --runs new models instead].",
    ),
    custom_digit_options,
    click.option(
        "--runs",
        "runs_count",
        type=click.IntRange(1, 100),
        help=f"Models to train, seeds seed, seed+1, ... [default: {DEFAULT_CUSTOM_RUNS}, as section 5.2.2].",
    ),
    click.option(
        "--compare-methods",
        is_flag=True,
        help="Also digitize each digit's page image (source/NAME.png) both ways and score the same models on each.",
    ),
    experiment_options,
    click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="Training: the run directory to create [default: runs/<UTC time>-custom]. "
        f"--model alone: the confusion matrix CSV [default: {CONFUSION_FILE} beside the model].",
    ),
    click.option("--name", help="Label in the default run directory name [default: custom]."),
    click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables."),
    click.option("--no-plots", is_flag=True, help="Do not draw figures 8, 9, 10 and the prediction matrix."),
    click.option(
        "--engine",
        type=click.Choice(ENGINES),
        help="Training loop, as for train [default: auto = fused on jax].",
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress output; only the results."),
    no_tensorboard_option,
    overwrite_option,
)


predict_options = _options(
    click.argument("files", nargs=-1, required=True, type=DigitsArgument()),
    click.option(
        "--model",
        "model_path",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help="Run directory or .keras file.",
    ),
    click.option("--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them."),
    click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=METHOD_HELP),
    backend_option,
    click.option("--json", "as_json", is_flag=True, help="Print the results as JSON."),
)


serve_options = _options(
    click.option(
        "--runs-dir",
        type=click.Path(path_type=Path),
        default=DEFAULT_RUNS_ROOT,
        show_default=True,
        help="Where to find trained runs (read only).",
    ),
    click.option(
        "--digits",
        "digits_dir",
        type=click.Path(path_type=Path),
        default=Path("my_digits"),
        show_default=True,
        help="Directory your saved drawings go to: CSVs + labels.csv, as eval --custom-csv reads them.",
    ),
    click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on."),
    click.option(
        "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one)."
    ),
    backend_option,
)


export_options = _options(
    click.argument("run_dir", type=click.Path(path_type=Path)),
    click.option(
        "--format", "fmt", type=click.Choice(["onnx", "savedmodel"]), required=True, help="ONNX file or TF SavedModel."
    ),
    click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="Where to write it (must not exist) [default: RUN_DIR/model.onnx or RUN_DIR/saved_model].",
    ),
)


tune_options = _options(
    click.option(
        "--space",
        "space_texts",
        multiple=True,
        required=True,
        metavar="KEY=SPEC",
        help="A config key and its range: log:1e-4..1e-1, float:0..0.7, int:32..512 or choice:adam,sgd "
        "(lists in brackets: choice:[400,100],[800]); repeatable.",
    ),
    click.option("--trials", type=click.IntRange(min=1), required=True, help="Finished trials the study should hold."),
    click.option("--seeds", default="0", show_default=True, help="Seeds per trial, averaged: 0-2, or 0,3,7."),
    click.option("--config", "config_path", type=ConfigArgument(), help=f"Base {CONFIG_HELP} [default: the paper's]."),
    click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run [default: the config's]."),
    set_option,
    click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="Tune directory; the same command with the same --out continues the study "
        "[default: runs/<UTC time>-tune].",
    ),
    click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True),
    click.option(
        "--pruner",
        type=click.Choice(["median", "halving", "none"]),
        default="median",
        show_default=True,
        help="Stops hopeless trials: below the median of earlier trials at the same epoch, or successive halving.",
    ),
    click.option(
        "--startup-trials",
        type=click.IntRange(min=0),
        default=5,  # MedianPruner's own default
        show_default=True,
        help="Trials that finish before the median pruner compares.",
    ),
    click.option(
        "--warmup-epochs",
        type=click.IntRange(min=1),
        default=1,  # a trial stuck near chance shows it after one epoch (the README's Adam at 0.1)
        show_default=True,
        help="The first epoch at which a trial may be pruned.",
    ),
    click.option(
        "--study-seed",
        type=click.IntRange(min=0, max=MAX_SEED),
        default=0,
        show_default=True,
        help="Seeds the sampler, the validation holdout and the trials' training seeds.",
    ),
    click.option(
        "--storage",
        help="Optuna storage shared by several processes: an RDB URL or a journal file [default: <out>/study.journal].",
    ),
    click.option("--study-name", default="tune", show_default=True, help="The study's name in the storage."),
    click.option(
        "--executor",
        type=click.Choice(["local", "processes", "ray"]),
        default="local",
        show_default=True,
        help="local: trials one after another in this process; processes or ray: --workers trials at a time, "
        "in worker processes here or Ray tasks (pip install 'mnist-dnn[ray]').",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Trials at a time: worker processes pinned to their share of the CPUs, or Ray tasks "
        "[default: one per CPU; Ray: one per GPU, else per CPU, of the cluster].",
    ),
    cores_option,
    click.option(
        "--ray-address",
        metavar="HOST:PORT",
        help="Join this Ray cluster; its nodes must mount the tune directory "
        "[default: start a local Ray for the study].",
    ),
    backend_option,
    data_dir_option,
    click.option("--no-plots", is_flag=True, help="Do not draw the optimisation history and importances."),
    click.option("-q", "--quiet", is_flag=True, help="Only the table and the final scores."),
    no_tensorboard_option,
)


def files_under(paths) -> list[Path]:
    """The files a command reads from these paths: each file, and the files directly in each directory."""
    found = []
    for path in paths:
        found.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return found

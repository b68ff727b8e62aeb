"""The `mnist-dnn` command line: each command resolves its inputs, makes one call into a stage, prints.

Keras, TensorFlow and JAX are imported inside the commands only, so `--help` answers
at once and the backend can still be chosen when a command starts.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Any

import click

from mnist_dnn import __version__
from mnist_dnn.config import BACKENDS, ENGINES, resolve_backend, resolve_config
from mnist_dnn.errors import UserInputError
from mnist_dnn.interrupts import EXIT_INTERRUPTED

EXIT_USER_ERROR = 2
DEFAULT_RUNS_ROOT = Path("runs")


class _OneLineErrorGroup(click.Group):
    """A group whose every user error is one line on stderr with exit status 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UserInputError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except OSError as exc:  # a full disk or an unwritable output: the user's to fix, in one line
            from mnist_dnn.runs import storage_error

            problem = storage_error(exc)
            if problem is None:
                raise
            click.echo(f"Error: {problem}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


def _configure_logging(quiet: bool) -> None:
    """Our modules report through `logging`; only here does that reach the terminal.

    Only the `mnist_dnn` logger is set up: the root logger stays as it was, so the
    frameworks' own info messages (JAX's TPU probe, say) stay hidden.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("mnist_dnn")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _keras_verbosity(quiet: bool, one_line: bool = False) -> int:
    """Keras' verbose: 0 silent, 1 progress bar, 2 a line per epoch (asked for, or when stdout is no terminal)."""
    return 0 if quiet else 2 if one_line or not sys.stdout.isatty() else 1


_backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Keras backend [default: $KERAS_BACKEND, else jax].",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Read IDX files (raw or .gz) or mnist.npz from DIR instead of the cache.",
)


@dataclasses.dataclass(frozen=True)
class _ExperimentFlags:
    """The flags of `_experiment_options` as given (None: not given)."""

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


def _experiment_options(command):
    """The flags that change the experiment, shared by `train`, `eval` and `config show`.

    The command receives them as one `experiment` argument (an _ExperimentFlags).
    """

    @functools.wraps(command)
    def packed(*args, config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, **kwargs):
        flags = _ExperimentFlags(config_path, epochs, batch_size, seed, backend, learning_rate, data_dir)
        return command(*args, experiment=flags, **kwargs)

    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            help="TOML config; default: the paper's settings (configs/paper.toml).",
        ),
        click.option("--epochs", type=int, help="Passes over the training set [paper: 10]."),
        click.option("--batch-size", type=int, help="Images per gradient step [paper: 64]."),
        click.option("--seed", type=int, help="Random seed for Python, NumPy and the backend [paper: 0]."),
        click.option("--learning-rate", type=float, help="Optimizer step size [paper: Adam's 0.001]."),
        _backend_option,
        _data_dir_option,
    ]
    for option in reversed(options):
        packed = option(packed)
    return packed


_set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change any config key, e.g. --set model.activation=sigmoid (repeatable; see configs/README.md).",
)


def _refuse_inapplicable(when: str, **given: Any) -> None:
    """A flag that means nothing in this mode is a mistake, not something to ignore silently."""
    for name, value in given.items():
        if value not in (None, False, ()):
            raise click.UsageError(f"--{name.replace('_', '-')}: only applies {when}")


def _run_figures(run_dirs):
    """name -> Figure of whatever kind of run directories these are (every file read before drawing)."""
    from mnist_dnn import plots, runs

    return plots.run_figures(runs.read_for_figures(run_dirs))


def _save_figures(figures, directory: Path, quiet: bool) -> None:
    """Figures drawn into a finished run (or sweep) directory, each named on stderr."""
    from mnist_dnn import plots

    for path in plots.save_figures(figures, directory):
        if not quiet:
            click.echo(f"Figure: {path}", err=True)


@click.group(name="mnist-dnn", cls=_OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-dnn")
def main():
    """Reproduce the Keras MNIST experiment of "Deep Learning Basics: An Overview".

    \b
    mnist-dnn fetch                          # get and verify the MNIST files
    mnist-dnn train                          # the paper's run: 10 epochs, batch 64, Adam
    mnist-dnn train --epochs 1 --backend tensorflow
    mnist-dnn train --resume runs/RUN        # continue a run stopped by Ctrl-C
    mnist-dnn sweep --set optimizer.learning_rate=1e-3,1e-2 --seeds 0-2   # change a knob, compare
    mnist-dnn plot                           # figure 6 of the latest run
    mnist-dnn eval --custom-csv custom_digits  # section 5.2.2: six runs on your own digits
    mnist-dnn digitize photo.jpg --out mine  # a photographed digit -> MNIST-style CSV
    mnist-dnn config show                    # the settings a train would use
    """


@main.command()
@_experiment_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Run directory to create (must not exist) [default: runs/<UTC time>-<name>].",
)
@click.option("--name", help="Label in the default run directory name [default: the config file's name].")
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the final scores.")
@click.option(
    "--log-every-epoch",
    is_flag=True,
    help="One line per epoch instead of a progress bar (automatic when output is not a terminal).",
)
@click.option("--no-plots", is_flag=True, help="Do not draw fig6_accuracy_loss.png into the run directory.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "fused", "fit"]),
    help="Training loop: fused (jax: one compiled call per epoch) or Keras fit [default: auto = fused on jax].",
)
@_set_option
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the interrupted run in RUN_DIR from its last checkpoint, with the run's own config.toml.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Save a resumable checkpoint every N epochs (0: never).",
)
def train(
    experiment,
    out,
    name,
    quiet,
    log_every_epoch,
    no_plots,
    engine,
    assignments,
    resume_dir,
    checkpoint_every,
):
    """Train the paper's network on MNIST, evaluate it on the test set, and save the run.

    Ctrl-C stops after saving what the finished epochs produced; --resume continues such
    a run to exactly the result it would have had.

    \b
    mnist-dnn train
    mnist-dnn train --epochs 1 --seed 3 --out runs/quick
    mnist-dnn train --config configs/sgd.toml --set optimizer.learning_rate=0.05
    mnist-dnn train --resume runs/20250101T120000Z-paper
    """
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend
    from mnist_dnn.interrupts import graceful_interrupts

    _configure_logging(quiet)
    if resume_dir is not None:
        flags = dataclasses.asdict(experiment)
        flags.update(engine=engine, set=assignments, out=out, name=name)
        _refuse_inapplicable("to a new run, not with --resume (a resumed run keeps its config.toml)", **flags)
        cfg = runs.resumable_config(resume_dir)
    else:
        cfg = experiment.resolve(engine, assignments)
        run_name = runs.check_run_name(name or (experiment.config.stem if experiment.config else "paper"))
        if out is not None:
            runs.check_new_run_dir(out)
    activate_backend(cfg.train.backend)

    from mnist_dnn.data import load_configured
    from mnist_dnn.experiment import train_and_evaluate

    dataset = load_configured(cfg.data)
    run_dir = resume_dir or runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name, out)
    if not quiet:
        click.echo(
            f"Data: {dataset.name} from {dataset.source} ({len(dataset.y_train)} train, {len(dataset.y_test)} test)",
            err=True,
        )
        click.echo(
            f"{'Resuming' if resume_dir else 'Run directory'}: {run_dir}  (backend {cfg.train.backend}, "
            f"engine {cfg.train.engine}, seed {cfg.train.seed})",
            err=True,
        )
    verbose = _keras_verbosity(quiet, log_every_epoch)
    progress = () if quiet or cfg.train.engine == "fit" else (_epoch_line_printer(cfg.train.epochs),)
    try:
        with graceful_interrupts():
            resume = resume_dir is not None
            metrics = train_and_evaluate(cfg, dataset, run_dir, verbose, progress, resume, checkpoint_every)
    except KeyboardInterrupt:
        click.echo(_interrupted_message(run_dir), err=True)
        return EXIT_INTERRUPTED
    if not no_plots:
        _save_figures(_run_figures([run_dir]), run_dir, quiet)
    click.echo(f"Test loss: {metrics['test_loss']}")
    click.echo(f"Test accuracy: {metrics['test_accuracy']}")
    click.echo(f"Saved: {run_dir}")
    return 0


def _interrupted_message(run_dir: Path) -> str:
    """What survived an interrupt, and the command that continues it."""
    from mnist_dnn.checkpoint import saved_epoch

    epoch = saved_epoch(run_dir)
    if epoch is None:
        return f"Interrupted with no checkpoint saved; --resume {run_dir} starts it again from epoch 1"
    saved = "epoch 1 is" if epoch == 1 else f"epochs 1-{epoch} are"
    return (
        f"Interrupted: {saved} saved in {run_dir} (history.csv, checkpoint.npz). "
        f"Resume: mnist-dnn train --resume {run_dir}"
    )


def _epoch_line_printer(epochs: int):
    """One line per finished epoch, in Keras' verbose=2 style, for engines that have no progress bar."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        scores = " - ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items()) if k != "epoch_time_s")
        click.echo(f"Epoch {epoch}/{epochs} - {metrics['epoch_time_s']:.2f}s - {scores}")

    return report


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Take the files from DIR (raw or .gz IDX, or mnist.npz) instead of downloading.",
)
def fetch(data_dir):
    """Download (if needed) and verify the MNIST files, and say where they are.

    \b
    mnist-dnn fetch
    mnist-dnn fetch --data-dir ~/Downloads/mnist
    MNIST_DNN_DATA=/data/mnist mnist-dnn fetch
    """
    from mnist_dnn.backend import activate_backend

    _configure_logging(quiet=False)
    activate_backend(resolve_backend(None))  # Keras' download source imports keras: keep it off TensorFlow
    from mnist_dnn.data import MNIST_FILES, load_mnist

    dataset = load_mnist(data_dir)
    verified = all(dataset.checksums.get(f) == digest for f, digest in MNIST_FILES.items())
    click.echo(f"Data: {dataset.name} from {dataset.source}")
    click.echo(f"Directory: {dataset.directory}")
    click.echo(
        f"Images: {len(dataset.y_train)} train, {len(dataset.y_test)} test, "
        f"{dataset.x_train.shape[1]}x{dataset.x_train.shape[2]} pixels"
    )
    click.echo(
        "SHA-256: "
        + (
            "all four files match MNIST's published checksums"
            if verified
            else "not MNIST's files (loaded as another dataset in IDX layout)"
        )
    )


@main.group()
def config():
    """Inspect the experiment's settings."""


@config.command("show")
@_experiment_options
@_set_option
@click.option("--explain", is_flag=True, help="Add each setting's meaning as a comment.")
def config_show(experiment, assignments, explain):
    """Print the fully resolved config (file + flags + defaults) as TOML.

    \b
    mnist-dnn config show
    mnist-dnn config show --config configs/paper.toml --epochs 3 --explain
    mnist-dnn config show --set optimizer.name=sgd --set optimizer.learning_rate=0.05
    """
    from mnist_dnn.config import config_to_toml, explained_toml

    cfg = experiment.resolve(None, assignments)
    click.echo(explained_toml(cfg) if explain else config_to_toml(cfg), nl=False)


@main.command()
@click.option(
    "--config",
    "config_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="TOML config; give several to compare them (the file becomes an axis) [default: the paper's].",
)
@click.option(
    "--set",
    "axis_texts",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A config key and the values to try, e.g. optimizer.learning_rate=1e-4,1e-3 (repeatable: all combinations).",
)
@click.option("--seeds", default="0", show_default=True, help="Seeds of every setting: 0-4, or 0,3,7.")
@click.option(
    "--folds",
    type=click.IntRange(min=2, max=20),
    help="k-fold cross-validation: each setting and seed trains k times, validating on each fold of the training set.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run [default: the config's].")
@_backend_option
@click.option("--engine", type=click.Choice(ENGINES), help="Training loop, as for train.")
@_data_dir_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sweep directory; the same command with the same --out continues an interrupted sweep "
    "[default: runs/<UTC time>-<name>].",
)
@click.option("--name", default="sweep", show_default=True, help="Label in the default sweep directory name.")
@click.option("--no-plots", is_flag=True, help="Do not draw figure 4 into the sweep directory.")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary table.")
def sweep(config_paths, axis_texts, seeds, folds, epochs, backend, engine, data_dir, out, name, no_plots, quiet):
    """Train every combination of settings x seeds (x folds) and rank the settings.

    Each run is an ordinary run directory inside the sweep directory; summary.csv holds
    mean ± std of test accuracy and loss per setting, best first (by validation accuracy
    with --folds), and fig4_loss_vs_step.png is the paper's figure 4 (right).

    \b
    mnist-dnn sweep --set optimizer.learning_rate=1e-4,1e-3,1e-2,1e-1 --seeds 0-2 --out runs/lr
    mnist-dnn sweep --config configs/sgd.toml --config configs/adam.toml --seeds 0-2
    mnist-dnn sweep --set model.dropout=0,0.5 --folds 5 --epochs 3
    """
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend
    from mnist_dnn.interrupts import graceful_interrupts
    from mnist_dnn.sweep import parse_axis, parse_seeds, plan_sweep, resolve_configs, sweep_backend

    _configure_logging(quiet)
    flags = {"train.epochs": epochs, "train.backend": backend, "data.data_dir": data_dir and str(data_dir)}
    configs = resolve_configs(config_paths, {**flags, "train.engine": engine})
    plan = plan_sweep(configs, [parse_axis(text) for text in axis_texts], parse_seeds(seeds), folds)
    run_name = runs.check_run_name(name)
    activate_backend(sweep_backend(configs))

    from mnist_dnn.sweep import load_datasets, open_sweep_dir, run_sweep, summarize, summary_markdown, trainer

    datasets = load_datasets(plan)
    sweep_dir = out or runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name)
    resumed = open_sweep_dir(sweep_dir, plan)
    if not quiet:
        settings = len({run.setting for run in plan})
        click.echo(
            f"{'Continuing' if resumed else 'Sweep'}: {len(plan)} runs ({settings} settings) in {sweep_dir}", err=True
        )

    def report(number, run, metrics, how):
        if not quiet:
            click.echo(
                f"[{number}/{len(plan)}] {run.directory}: test accuracy {metrics['test_accuracy']:.4f}, "
                f"loss {metrics['test_loss']:.4f} ({how})",
                err=True,
            )

    try:
        with graceful_interrupts():
            results = run_sweep(plan, sweep_dir, trainer(datasets), report)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; finished runs are kept. Continue: the same command with --out {sweep_dir}", err=True)
        return EXIT_INTERRUPTED
    click.echo(summary_markdown(summarize(plan, results), folds=bool(folds)), nl=False)
    if not no_plots:
        _save_figures(_run_figures([sweep_dir]), sweep_dir, quiet)
    click.echo(f"Saved: {sweep_dir}")
    return 0


# --- Figures: `plot` and `show` (drawing lives in mnist_dnn.plots; matplotlib loads inside the commands) ---

FIGURE_FORMATS = ("png", "svg", "pdf")  # = plots.FORMATS, repeated so --help does not import matplotlib
PAPER_DIGIT_INDEX = 20  # the training image section 5.1 draws: X_train[20]


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the figures, created if missing [default: the run directory; needed for several].",
)
@click.option(
    "--format", "fmt", type=click.Choice(FIGURE_FORMATS), default="png", help="Figure file format [default: png]."
)
@click.option(
    "--diagnostics",
    is_flag=True,
    help="Also load model.keras and draw the test set's confusion matrix and most confidently wrong digits.",
)
@click.option(
    "--activations",
    is_flag=True,
    help="Draw figure 3 (ReLU, sigmoid, tanh and their derivatives) into --out, or here; needs no run.",
)
@click.option("--show", "open_window", is_flag=True, help="Also open the figures in windows, if there is a display.")
def plot(run_dirs, out, fmt, diagnostics, activations, open_window):
    """Draw the paper's figures from saved runs: 6, or 9 and 10, or 4; and figure 3.

    One run directory gives figure 6 (and its per-layer gradient norms), written into
    it. A multi-run directory (run-1/, run-2/, ...) gives figures 9 and 10; a sweep
    directory figure 4 (loss per training step, a line per setting); several run
    directories one overlay whose legend says what differs in their config.toml.

    \b
    mnist-dnn plot                            # the latest run under runs/
    mnist-dnn plot runs/20250101T120000Z-paper --format svg
    mnist-dnn plot runs/A runs/B --out compare
    mnist-dnn plot runs/A --diagnostics       # + confusion matrix, confident mistakes
    mnist-dnn plot runs/SWEEP                 # a sweep directory: figure 4, loss per training step
    mnist-dnn plot --activations --out figures
    """
    from mnist_dnn import plots, runs

    if activations and not run_dirs:
        figures = {plots.FIG3: plots.plot_activations()}
        for path in plots.save_figures(figures, out or Path("."), fmt):
            click.echo(f"Wrote {path}")
        if open_window:
            _show_windows(figures.values())
        return
    if not run_dirs:
        run_dirs = (runs.latest_run_dir(DEFAULT_RUNS_ROOT),)
        click.echo(f"Latest run: {run_dirs[0]}", err=True)
    if len(run_dirs) > 1 and out is None:
        raise click.UsageError("--out: needed when plotting several run directories")
    if len(run_dirs) > 1 and diagnostics:
        raise click.UsageError("--diagnostics: give a single run directory")
    figures = _run_figures(run_dirs)
    if diagnostics:
        from mnist_dnn.evaluate import predict_test_set

        found = predict_test_set(_open_model(run_dirs[0], None))
        dataset = found.dataset
        figures.update(
            plots.diagnostic_figures(dataset.name, dataset.x_test, dataset.y_test, found.probabilities, found.matrix)
        )
    if activations:
        figures[plots.FIG3] = plots.plot_activations()
    for path in plots.save_figures(figures, out or run_dirs[0], fmt):
        click.echo(f"Wrote {path}")
    if open_window:
        _show_windows(figures.values())


@main.command("show")
@click.option("--index", type=click.IntRange(min=0), help="Training image to draw [default: 20, as section 5.1].")
@click.option("--grid", type=click.IntRange(1, 400), help="Draw the first N test digits in a grid instead.")
@click.option(
    "--custom-csv",
    "custom_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Draw your own digits instead (CSV files or a directory of them, as section 5.2.2); repeatable.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file: caption each digit with its prediction and probability.",
)
@_data_dir_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image to write, .png, .svg or .pdf [default: mnist-train-INDEX.png or mnist-test-grid-N.png here].",
)
@click.option("--show", "open_window", is_flag=True, help="Also open it in a window, if there is a display.")
def show_digits(index, grid, custom_paths, model_path, data_dir, out, open_window):
    """Draw digits as the paper does (matshow, binary colour map), with labels.

    MNIST training image 20 by default, the first N test digits with --grid, or your own
    digits with --custom-csv; --model adds each digit's prediction and its probability.

    \b
    mnist-dnn show                            # training image 20, as section 5.1
    mnist-dnn show --index 7 --out seven.svg
    mnist-dnn show --grid 16 --model runs/20250101T120000Z-paper
    mnist-dnn show --custom-csv custom_digits --model runs/20250101T120000Z-paper   # figure 8
    """
    if (index is not None) + (grid is not None) + bool(custom_paths) > 1:
        raise click.UsageError("--index, --grid and --custom-csv: choose one")
    if grid is None and not custom_paths:
        index = PAPER_DIGIT_INDEX if index is None else index
    if out is not None and out.suffix.lstrip(".").lower() not in FIGURE_FORMATS:
        raise click.BadParameter(f"{out}: expected a .png, .svg or .pdf file name", param_hint="'--out'")
    from mnist_dnn import plots
    from mnist_dnn.evaluate import digit_probabilities

    images, labels, names, title, default_out = _digits_to_show(index, grid, custom_paths, data_dir)
    predictions = confidence = None
    if model_path is not None:
        probabilities = digit_probabilities(_open_model(model_path, None), images)  # (images, classes)
        predictions, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    if index is None:
        fig = plots.plot_digit_grid(images, labels, predictions, confidence, title=title, names=names)
    else:
        if predictions is not None:
            title += f", predicted {predictions[0]} ({confidence[0]:.1%})"
        fig = plots.plot_digit(images[0], title)
    out = out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"Wrote {plots.save_figure(fig, out)}")
    if open_window:
        _show_windows([fig])


def _digits_to_show(index, grid, custom_paths, data_dir):
    """`show`'s digits: (images, labels or None, names or None, title, default output file)."""
    if custom_paths:
        from mnist_dnn.digits import load_digits

        digits = load_digits(list(custom_paths), require_labels=False)
        return digits.images, None, digits.names, "Custom digits", Path("custom-digits.png")
    from mnist_dnn.data import load_mnist

    dataset = load_mnist(data_dir)
    name = "MNIST" if dataset.name == "mnist" else dataset.name
    if grid is not None:
        images, labels = dataset.x_test[:grid], dataset.y_test[:grid]
        return images, labels, None, f"First {len(images)} {name} test digits", Path(f"mnist-test-grid-{grid}.png")
    if index >= len(dataset.x_train):
        raise UserInputError(f"--index: expected 0..{len(dataset.x_train) - 1}, got {index}")
    images, labels = dataset.x_train[index : index + 1], dataset.y_train[index : index + 1]
    return images, labels, None, f"{name} training image {index}: label {labels[0]}", Path(f"mnist-train-{index}.png")


def _show_windows(figures) -> None:
    from mnist_dnn import plots

    if not plots.show_figures(list(figures)):
        click.echo("--show: no display available; the figures are in the files above", err=True)


# --- Custom digits: `digitize`, `eval`, `predict` (section 5.2.2; reading and digitizing in mnist_dnn.digits) ---

DIGITIZE_METHODS = ("mnist", "naive")  # = digits.METHODS, repeated so --help does not import numpy
DEFAULT_CUSTOM_RUNS = 6  # section 5.2.2: "six independent network training instances"
CONFUSION_FILE = "confusion_matrix.csv"
_METHOD_HELP = (
    "How a PNG/JPEG becomes 28x28: 'mnist' isolates the ink, scales it into a 20 px box and centres it by mass, "
    "as MNIST was made; 'naive' is the paper's square crop and shrink [default: mnist]."
)


def _custom_digit_options(command):
    """The flags that say how custom digits are read, shared by `eval` and `predict`."""
    options = [
        click.option(
            "--labels", help="The true digits in file order, e.g. 3,8,9,5,4 [default: labels.csv, else file names]."
        ),
        click.option(
            "--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them."
        ),
        click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for NAME.csv and NAME.preview.png per image (and labels.csv), created if missing.",
)
@click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP)
@click.option(
    "--label",
    "labels",
    type=click.IntRange(0, 9),
    multiple=True,
    help="The digit in each image, once per image in order; goes into labels.csv [default: a leading digit "
    "of each file name].",
)
@click.option("--overwrite", is_flag=True, help="Replace files of the same names in --out.")
def digitize(images, out, method, labels, overwrite):
    """Turn photos of digits (PNG/JPEG) into 28x28 CSVs in the paper's format (0 = paper, 255 = ink).

    Dark ink on light paper or the reverse is detected. Writes NAME.csv, a
    NAME.preview.png drawn as the paper's figure 8, and labels.csv when every
    image has a label.

    \b
    mnist-dnn digitize photo-3.jpg --out mine
    mnist-dnn digitize a.png b.png --label 3 --label 8 --out mine
    mnist-dnn digitize custom_digits/source/3.png --method naive --out naive
    """
    from mnist_dnn.digits import write_digitized

    for path in write_digitized(images, out, method, labels, overwrite):
        click.echo(f"Wrote {path}")


@main.command("eval")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file to score [default: train --runs new models instead].",
)
@click.option(
    "--custom-csv",
    "custom_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Your digits: a directory such as custom_digits, or CSV/PNG/JPEG files (repeat the flag).",
)
@_custom_digit_options
@click.option(
    "--runs",
    "runs_count",
    type=click.IntRange(1, 100),
    help=f"Models to train, seeds seed, seed+1, ... [default: {DEFAULT_CUSTOM_RUNS}, as section 5.2.2].",
)
@click.option(
    "--compare-methods",
    is_flag=True,
    help="Also digitize each digit's page image (source/NAME.png) both ways and score the same models on each.",
)
@_experiment_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Training: the run directory to create [default: runs/<UTC time>-custom]. "
    f"--model alone: the confusion matrix CSV [default: {CONFUSION_FILE} beside the model].",
)
@click.option("--name", help="Label in the default run directory name [default: custom].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("--no-plots", is_flag=True, help="Do not draw figures 8, 9, 10 and the prediction matrix.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    help="Training loop, as for train [default: auto = fused on jax].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the results.")
def eval_command(
    model_path,
    custom_paths,
    labels,
    invert,
    method,
    runs_count,
    compare_methods,
    experiment,
    out,
    name,
    as_json,
    no_plots,
    engine,
    quiet,
):
    """Score models on your own digits (section 5.2.2) or on the MNIST test set.

    Without --model it runs the paper's experiment: --runs models trained on MNIST with
    the custom digits as validation set, their accuracy and loss per epoch (figures 9
    and 10), which images each model misses and as what, and each model's MNIST score.

    \b
    mnist-dnn eval --custom-csv custom_digits                # 6 runs x 10 epochs
    mnist-dnn eval --custom-csv custom_digits --runs 2 --epochs 1 --compare-methods
    mnist-dnn eval --model runs/RUN --custom-csv custom_digits --json
    mnist-dnn eval --model runs/RUN                          # MNIST test set + confusion_matrix.csv
    """
    if model_path is None and not custom_paths:
        raise click.UsageError("give --custom-csv (train and test), --model (score it), or both")
    _configure_logging(quiet)
    if model_path is None:
        digits = _CustomDigits(custom_paths, labels, invert, method, compare_methods)
        cfg = experiment.resolve(engine)
        return _custom_experiment(cfg, digits, runs_count or DEFAULT_CUSTOM_RUNS, out, name, as_json, no_plots, quiet)
    given = experiment
    training = dict(runs=runs_count, config=given.config, epochs=given.epochs, seed=given.seed)
    training.update(learning_rate=given.learning_rate, engine=engine, no_plots=no_plots)
    _refuse_inapplicable("when training, without --model", name=name, batch_size=given.batch_size, **training)
    if not custom_paths:
        _refuse_inapplicable("with --custom-csv", labels=labels, invert=invert, compare_methods=compare_methods)
        from mnist_dnn import evaluate

        if out is not None and out.is_dir():
            raise UserInputError(f"--out {out}: is a directory (expected a CSV file name)")
        trained = _open_model(model_path, given.backend)
        result = evaluate.score_test_set(trained, out or trained.path.parent / CONFUSION_FILE, given.data_dir)
        click.echo(evaluate.test_set_json(result) if as_json else evaluate.format_test_set(result), nl=as_json)
        return 0
    _refuse_inapplicable("when training or scoring on MNIST", out=out, data_dir=given.data_dir)
    from mnist_dnn import evaluate

    digits = _CustomDigits(custom_paths, labels, invert, method, compare_methods)
    loaded, methods = digits.load()
    report = evaluate.score_on_digits(_open_model(model_path, given.backend), model_path, loaded, methods)
    click.echo(evaluate.digit_report_json(report) if as_json else evaluate.format_digit_report(report), nl=as_json)
    return 0


@dataclasses.dataclass(frozen=True)
class _CustomDigits:
    """How `eval` was told to read the custom digits."""

    paths: tuple[Path, ...]
    labels: str | None
    invert: bool
    method: str
    compare_methods: bool

    def load(self):
        """(digits.Digits, method -> the same digits digitized from their page images that way, or None)."""
        from mnist_dnn.digits import load_digits, method_images

        digits = load_digits(self.paths, self.labels, invert=self.invert, method=self.method)
        return digits, method_images(digits, DIGITIZE_METHODS) if self.compare_methods else None


def _custom_experiment(cfg, custom: _CustomDigits, runs_count, out, name, as_json, no_plots, quiet):
    """Section 5.2.2: train `runs_count` models with the custom digits as validation set, report each."""
    import json

    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend

    run_name = runs.check_run_name(name or "custom")
    if out is not None:
        runs.check_new_run_dir(out)
    digits, methods = custom.load()
    activate_backend(cfg.train.backend)

    from mnist_dnn.custom_experiment import custom_figures, format_summary, run_custom_experiment
    from mnist_dnn.data import load_configured

    dataset = load_configured(cfg.data)
    run_dir = runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name, out)
    if not quiet:
        click.echo(
            f"{len(digits.files)} custom digits; {runs_count} run(s) of {cfg.train.epochs} epoch(s) on {dataset.name} "
            f"(seeds {cfg.train.seed}-{cfg.train.seed + runs_count - 1}, backend {cfg.train.backend})",
            err=True,
        )
        click.echo(f"Run directory: {run_dir}", err=True)

    def report(number, entry):
        if not quiet:
            click.echo(
                f"run-{number}: MNIST test accuracy {entry['mnist_test_accuracy']:.4f}, "
                f"custom accuracy {entry['custom_accuracy']:.2f}",
                err=True,
            )

    verbose = _keras_verbosity(quiet)
    try:
        summary = run_custom_experiment(cfg, dataset, digits, run_dir, runs_count, verbose, methods, report)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: finished runs are kept in {run_dir}", err=True)
        return EXIT_INTERRUPTED
    if not no_plots:
        _save_figures(custom_figures(run_dir, digits, summary, methods), run_dir, quiet)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary), nl=as_json)
    if not as_json:
        click.echo(f"Saved: {run_dir}")
    return 0


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file.",
)
@click.option("--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them.")
@click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP)
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def predict(files, model_path, invert, method, backend, as_json):
    """The digit a model reads in each CSV or image, with its probabilities.

    \b
    mnist-dnn predict custom_digits/3.csv --model runs/RUN
    mnist-dnn predict photo.jpg custom_digits --model runs/RUN/model.keras --json
    """
    import json

    from mnist_dnn.digits import load_digits
    from mnist_dnn.evaluate import format_predictions, predict_digits

    digits = load_digits(files, invert=invert, method=method, require_labels=False)
    rows = predict_digits(_open_model(model_path, backend), digits)
    click.echo(json.dumps(rows, indent=2) if as_json else format_predictions(rows), nl=as_json)
    return 0


def _open_model(path: Path, backend: str | None):
    """A run directory or .keras file -> runs.TrainedModel (model, config, preprocessing statistics)."""
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend

    activate_backend(resolve_backend(backend))
    return runs.load_trained(path)

"""The `mnist-dnn` command line: parses, calls the pipeline, prints.

Keras, TensorFlow and JAX are imported inside the commands only, so `--help` answers
at once and the backend can still be chosen when a command starts.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import click

from mnist_dnn import __version__
from mnist_dnn.errors import UserInputError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_RUNS_ROOT = Path("runs")


class _Group(click.Group):
    """A group whose every user error is one line on stderr with exit status 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UserInputError as exc:
            click.echo(f"Error: {exc}", err=True)
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
    """Library modules report through `logging`; only here does that reach the terminal."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr, force=True
    )


def _experiment_options(command):
    """The flags that change the experiment, shared by `train` and `config show`."""
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
        click.option(
            "--backend",
            type=click.Choice(["jax", "tensorflow", "torch"]),
            help="Keras backend [default: $KERAS_BACKEND, else jax].",
        ),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            help="Read IDX files (raw or .gz) or mnist.npz from DIR instead of the cache.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _resolved_config(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir):
    from mnist_dnn.backend import resolve_backend
    from mnist_dnn.config import load_config

    flags = {
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.seed": seed,
        "optimizer.learning_rate": learning_rate,
        "train.backend": backend,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
    }
    cfg = load_config(config_path, {key: value for key, value in flags.items() if value is not None})
    resolved = resolve_backend(cfg.train.backend)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, backend=resolved))


@click.group(name="mnist-dnn", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-dnn")
def main():
    """Reproduce the Keras MNIST experiment of "Deep Learning Basics: An Overview".

    \b
    mnist-dnn fetch                 # get and verify the MNIST files
    mnist-dnn train                 # the paper's run: 10 epochs, batch 64, Adam
    mnist-dnn train --epochs 1 --backend tensorflow
    mnist-dnn config show           # the settings a train would use
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
def train(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, out, name, quiet, log_every_epoch):
    """Train the paper's network on MNIST, evaluate it on the test set, and save the run.

    \b
    mnist-dnn train
    mnist-dnn train --epochs 1 --seed 3 --out runs/quick
    mnist-dnn train --config configs/paper.toml --backend tensorflow
    """
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend

    _configure_logging(quiet)
    cfg = _resolved_config(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir)
    run_name = runs.check_run_name(name or (config_path.stem if config_path else "paper"))
    if out is not None:
        runs.check_new_run_dir(out)
    activate_backend(cfg.train.backend)

    from mnist_dnn.data import load_mnist
    from mnist_dnn.experiment import train_and_evaluate

    dataset = load_mnist(Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    run_dir = runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name, out)
    if not quiet:
        click.echo(
            f"Data: {dataset.name} from {dataset.source} ({len(dataset.y_train)} train, {len(dataset.y_test)} test)",
            err=True,
        )
        click.echo(f"Run directory: {run_dir}  (backend {cfg.train.backend}, seed {cfg.train.seed})", err=True)
    verbose = 0 if quiet else 2 if log_every_epoch or not sys.stdout.isatty() else 1
    try:
        metrics = train_and_evaluate(cfg, dataset, run_dir, verbose)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: finished epochs are kept in {run_dir / runs.HISTORY_FILE}", err=True)
        return EXIT_INTERRUPTED
    click.echo(f"Test loss: {metrics['test_loss']}")
    click.echo(f"Test accuracy: {metrics['test_accuracy']}")
    click.echo(f"Saved: {run_dir}")
    return 0


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
    from mnist_dnn.backend import activate_backend, resolve_backend

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
@click.option("--explain", is_flag=True, help="Add each setting's meaning as a comment.")
def config_show(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, explain):
    """Print the fully resolved config (file + flags + defaults) as TOML.

    \b
    mnist-dnn config show
    mnist-dnn config show --config configs/paper.toml --epochs 3 --explain
    """
    from mnist_dnn.config import config_to_toml, field_docs

    text = config_to_toml(_resolved_config(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir))
    if explain:
        docs = field_docs()
        section = ""
        lines = []
        for line in text.splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif " = " in line:
                lines.append(f"# {docs[section + '.' + line.split(' = ')[0]]}")
            lines.append(line)
        text = "\n".join(lines) + "\n"
    click.echo(text, nl=False)

"""The command line's plumbing: shared flags, each set packed into one argument, and user errors in one line.

`mnist_dnn.cli` declares the commands with these; like it, this module imports no framework.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Any

import click

from mnist_dnn.config import BACKENDS, resolve_config
from mnist_dnn.errors import UserInputError
from mnist_dnn.interrupts import EXIT_INTERRUPTED, graceful_interrupts, pending

EXIT_USER_ERROR = 2


class OneLineErrorGroup(click.Group):
    """A group whose every user error is one line on stderr with exit status 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Ctrl-C is caught from the first moment, before Keras or JAX is imported (see mnist_dnn.interrupts)."""
        with graceful_interrupts():
            result = self._main(args, prog_name, complete_var, **extra)
            if pending():  # a Ctrl-C that arrived after the command's last safe point
                click.echo("Interrupted.", err=True)
                sys.exit(EXIT_INTERRUPTED)
        sys.exit(result)

    def _main(self, args, prog_name, complete_var, **extra) -> int:
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
        return result if isinstance(result, int) else 0


def configure_logging(quiet: bool) -> None:
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


def keras_verbosity(quiet: bool, one_line: bool = False) -> int:
    """Keras' verbose: 0 silent, 1 progress bar, 2 a line per epoch (asked for, or when stdout is no terminal)."""
    return 0 if quiet else 2 if one_line or not sys.stdout.isatty() else 1


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
            type=click.Path(path_type=Path),
            help="TOML config; default: the paper's settings (configs/paper.toml).",
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


def refuse_inapplicable(when: str, **given: Any) -> None:
    """A flag that means nothing in this mode is a mistake, not something to ignore silently."""
    for name, value in given.items():
        if value not in (None, False, ()):
            raise click.UsageError(f"--{name.replace('_', '-')}: only applies {when}")


DIGITIZE_METHODS = ("mnist", "naive")  # = digits.METHODS, repeated so --help does not import numpy


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
        from mnist_dnn.digits import load_digits, method_images

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
            type=click.Path(path_type=Path),
            help="Your digits: a directory such as custom_digits, or CSV/PNG/JPEG files (repeat the flag).",
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


def epoch_line_printer(epochs: int):
    """One line per finished epoch, in Keras' verbose=2 style, for engines that have no progress bar."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        scores = " - ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items()) if k != "epoch_time_s")
        click.echo(f"Epoch {epoch}/{epochs} - {metrics['epoch_time_s']:.2f}s - {scores}")

    return report

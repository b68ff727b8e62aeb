"""What the terminal shows besides results: user errors in one line with their exit status, log lines, progress.

Like the rest of the CLI, this module imports no framework.
"""

from __future__ import annotations

import logging
import sys

import click

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import EXIT_INTERRUPTED, Interrupted, graceful_interrupts, pending

EXIT_USER_ERROR = 2


class OneLineErrorGroup(click.Group):
    """A group whose every user error is one line on stderr with exit status 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Ctrl-C is caught from the first moment, before Keras or JAX is imported (see mnist_dnn.core.interrupts)."""
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
            from mnist_dnn.runs.outputs import storage_error

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
        except Interrupted as exc:  # what Ctrl-C left behind, and how to continue
            click.echo(str(exc), err=True)
            return EXIT_INTERRUPTED
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


def epoch_line_printer(epochs: int):
    """One line per finished epoch, in Keras' verbose=2 style, for engines that have no progress bar."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        scores = " - ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items()) if k != "epoch_time_s")
        click.echo(f"Epoch {epoch}/{epochs} - {metrics['epoch_time_s']:.2f}s - {scores}")

    return report


def echo_figures(paths, quiet: bool) -> None:
    """Each figure a command wrote, named on stderr (unless quiet): the results go to stdout."""
    for path in paths:
        if not quiet:
            click.echo(f"Figure: {path}", err=True)

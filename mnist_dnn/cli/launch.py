"""The `mnist-dnn` command's entry point: a Ctrl-C while the CLI is still being imported ends quietly.

Python's own SIGINT handler raises KeyboardInterrupt wherever the import happens to be,
and the user sees a traceback of click's modules. Until the command installs its own
handlers (interrupts.graceful_interrupts, which put this one back when the command ends),
a Ctrl-C here ends the process at once with exit 130 and one line: nothing has been
written yet.
"""

import os
import signal

EXIT_INTERRUPTED = 130  # = interrupts.EXIT_INTERRUPTED, not imported: this module runs before anything else


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"Interrupted.\n")
    os._exit(EXIT_INTERRUPTED)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from mnist_dnn.cli.app import main as cli

    cli(prog_name="mnist-dnn")

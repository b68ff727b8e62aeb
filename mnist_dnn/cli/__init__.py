"""The command line: click app (app), flag groups (options), one-line errors and logs (console), entry point (launch).

The commands live in app, and by topic in figure_commands (plot, show) and digit_commands (digitize, eval, predict).

`from mnist_dnn.cli import main` loads the click app on first use, not on import, so that
`mnist_dnn.cli.launch` can install its Ctrl-C handler before anything heavy is imported.
"""


def __getattr__(name: str):
    if name == "main":
        from mnist_dnn.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The command line: the click app (app), its option groups (options) and the entry point (launch).

`from mnist_dnn.cli import main` loads the click app on first use, not on import, so that
`mnist_dnn.cli.launch` can install its Ctrl-C handler before anything heavy is imported.
"""


def __getattr__(name: str):
    if name == "main":
        from mnist_dnn.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

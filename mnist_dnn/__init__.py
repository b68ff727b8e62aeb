"""mnist-dnn: the Keras MNIST experiment of "Deep Learning Basics: An Overview", reproducible.

`from mnist_dnn import train, sweep, load_run, predict, plot_history` gives the Python API
(mnist_dnn.api), loaded on first use (PEP 562) so that `import mnist_dnn` and the CLI's
`--help` stay instant and the Keras backend can still be chosen when a function runs.
"""

from mnist_dnn.core.version import __version__

_API = (  # = mnist_dnn.api.__all__, spelled here so that dir() and tab completion need not import it
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
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from mnist_dnn import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})

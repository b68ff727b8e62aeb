"""Shared fixtures: the backend is fixed before any test imports keras.

Keras picks its backend once per process, so this process runs on jax (the default);
tests of other backends start a subprocess.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST files: from the cache, fetched and verified on first use as `mnist-dnn fetch` does."""
    from mnist_dnn.data.mnist import load_mnist

    return load_mnist()


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """Run CLI commands from a scratch directory so default run directories land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def mnist_dnn_command() -> list[str]:
    """The installed console script next to this interpreter, as a user would run it."""
    script = Path(sys.executable).parent / "mnist-dnn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mnist_dnn"]

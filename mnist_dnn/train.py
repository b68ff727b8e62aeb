"""Training: one function with two engines behind it, Keras' `fit` and our `fused` loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnist_dnn.config import TrainConfig

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 1-based epoch number and that epoch's metrics."""


@dataclass(frozen=True)
class TrainingData:
    """Network-ready arrays; the paper validates on the test set (section 5.1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def train(
    model, data: TrainingData, cfg: TrainConfig, callbacks: Sequence[EpochCallback] = (), verbose: int = 1
) -> dict[str, list[float]]:
    """Fit a compiled model as the paper does and return its per-epoch history.

    `cfg.engine` must be resolved ('fit' or 'fused', see config.resolve_engine).
    `verbose` is Keras' own and applies to `fit`: 0 silent, 1 progress bar, 2 one line
    per epoch; the fused engine reports only through callbacks. The history holds loss,
    accuracy, val_loss, val_accuracy and epoch_time_s (wall seconds of the epoch,
    validation included); callbacks see the same numbers as soon as an epoch ends, so an
    interrupted run keeps what it finished.
    """
    if cfg.engine == "fused":
        from mnist_dnn.fused import train_fused

        return train_fused(model, data, cfg.epochs, cfg.batch_size, cfg.seed, cfg.shuffle, callbacks)
    if cfg.engine != "fit":
        raise ValueError(f"unresolved training engine {cfg.engine!r}")
    import keras

    class _EpochReporter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {name: float(value) for name, value in (logs or {}).items()}
            metrics["epoch_time_s"] = time.perf_counter() - self.started
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            for callback in callbacks:
                callback(epoch + 1, metrics)

    history: dict[str, list[float]] = {}
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        verbose=verbose,
        validation_data=(data.x_val, data.y_val),
        shuffle=cfg.shuffle,
        callbacks=[_EpochReporter()],
    )
    return history

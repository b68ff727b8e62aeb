"""Training: one function with two engines behind it, Keras' `fit` and our `fused` loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnist_dnn.config import TrainConfig

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 1-based epoch number and that epoch's metrics."""

EpochInputs = Callable[[int], np.ndarray]
"""1-based epoch -> that epoch's training inputs, same shape as x_train (data augmentation)."""


@dataclass
class TrainingControl:
    """What epoch callbacks may ask of the training loop; both engines honour it between epochs.

    A callback that holds this object sets `stop` to end training after the current epoch
    (early stopping), or `learning_rate` to change the rate from the next epoch on
    (reduce-on-plateau); the loop applies the new rate and clears the field.
    """

    stop: bool = False
    learning_rate: float | None = None


def apply_control(model, control: TrainingControl | None) -> bool:
    """Carry out a control's requests on `model` after an epoch; True when training should stop."""
    if control is None:
        return False
    if control.learning_rate is not None:
        model.optimizer.learning_rate = control.learning_rate
        control.learning_rate = None
    return control.stop


@dataclass(frozen=True)
class TrainingData:
    """Network-ready arrays; the paper validates on the test set (section 5.1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def train(
    model,
    data: TrainingData,
    cfg: TrainConfig,
    callbacks: Sequence[EpochCallback] = (),
    verbose: int = 1,
    control: TrainingControl | None = None,
    epoch_inputs: EpochInputs | None = None,
) -> dict[str, list[float]]:
    """Fit a compiled model as the paper does and return its per-epoch history.

    `cfg.engine` must be resolved ('fit' or 'fused', see config.resolve_engine).
    `verbose` is Keras' own and applies to `fit`: 0 silent, 1 progress bar, 2 one line
    per epoch; the fused engine reports only through callbacks. The history holds loss,
    accuracy, val_loss, val_accuracy and epoch_time_s (wall seconds of the epoch,
    validation included); callbacks see the same numbers as soon as an epoch ends, so an
    interrupted run keeps what it finished.

    `control` is the object the callbacks use to stop training or change the learning
    rate; `epoch_inputs` gives fresh training inputs every epoch (augmentation) in place
    of `data.x_train`.
    """
    if cfg.engine == "fused":
        from mnist_dnn.fused import train_fused

        return train_fused(
            model, data, cfg.epochs, cfg.batch_size, cfg.seed, cfg.shuffle, callbacks, control, epoch_inputs
        )
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
            if apply_control(self.model, control):
                self.model.stop_training = True

    history: dict[str, list[float]] = {}
    # With augmentation, one fit call per epoch, each on that epoch's images; else one call, as the paper.
    spans = [(e, e + 1) for e in range(cfg.epochs)] if epoch_inputs is not None else [(0, cfg.epochs)]
    for first, last in spans:
        model.fit(
            data.x_train if epoch_inputs is None else epoch_inputs(last),
            data.y_train,
            batch_size=cfg.batch_size,
            epochs=last,
            initial_epoch=first,
            verbose=verbose,
            validation_data=(data.x_val, data.y_val),
            shuffle=cfg.shuffle,
            callbacks=[_EpochReporter()],
        )
        if control is not None and control.stop:
            break
    return history

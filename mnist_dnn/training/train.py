"""Training: one function with two engines behind it, Keras' `fit` and our `fused` loop.

Both draw each epoch's batch order from the run's seed and the epoch number alone, so
epoch k is the same whether a run goes straight through or resumes from a checkpoint
after epoch k - 1.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mnist_dnn.core.config import TrainConfig
from mnist_dnn.core.interrupts import poll
from mnist_dnn.training.fused import train_fused
from mnist_dnn.training.loop import (
    ORDER_STREAM,
    EpochCallback,
    EpochInputs,
    StepLossCallback,
    TrainingControl,
    TrainingData,
    apply_control,
    batch_losses,
)


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The `fit` engine's batch order in 0-based `epoch`: a permutation fixed by the seed and the epoch."""
    return np.random.default_rng([seed, ORDER_STREAM, epoch]).permutation(count)


def train(
    model,
    data: TrainingData,
    cfg: TrainConfig,
    callbacks: Sequence[EpochCallback] = (),
    verbose: int = 1,
    control: TrainingControl | None = None,
    epoch_inputs: EpochInputs | None = None,
    start_epoch: int = 0,
    step_callbacks: Sequence[StepLossCallback] = (),
) -> dict[str, list[float]]:
    """Fit a compiled model as the paper does and return its per-epoch history.

    `cfg.engine` must be resolved ('fit' or 'fused', see config.resolve_engine).
    `verbose` is Keras' own and applies to `fit`: 0 silent, 1 progress bar, 2 one line
    per epoch; the fused engine reports only through callbacks. The history holds loss,
    accuracy, val_loss, val_accuracy and epoch_time_s (wall seconds of the epoch,
    validation included) of the epochs trained here; callbacks see the same numbers as
    soon as an epoch ends, so an interrupted run keeps what it finished.

    `control` is the object the callbacks use to stop training or change the learning
    rate; `epoch_inputs` gives fresh training inputs every epoch (augmentation) in place
    of `data.x_train`; `start_epoch` (0-based) skips the epochs a restored checkpoint
    already holds; `step_callbacks` receive every batch's training loss (figure 4).
    """
    if cfg.engine == "fused":
        return train_fused(
            model,
            data,
            cfg.epochs,
            cfg.batch_size,
            cfg.seed,
            cfg.shuffle,
            callbacks,
            control,
            epoch_inputs,
            start_epoch,
            step_callbacks,
        )
    if cfg.engine != "fit":
        raise ValueError(f"unresolved training engine {cfg.engine!r}")
    return _train_fit(model, data, cfg, callbacks, verbose, control, epoch_inputs, start_epoch, step_callbacks)


def _train_fit(model, data, cfg, callbacks, verbose, control, epoch_inputs, start_epoch, step_callbacks):
    """Keras' own `fit`, one call per epoch on that epoch's batch order.

    One call per epoch costs nothing measurable and puts the batch order in our hands:
    Keras' own shuffle draws from NumPy's global state on jax but from TensorFlow's
    op-level state on tensorflow, which no checkpoint can restore.
    """
    import keras

    count = len(data.x_train)

    class _EpochReporter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            self.running_loss = []

        def on_train_batch_end(self, batch, logs=None):
            poll()  # a Ctrl-C that landed in Keras or the backend takes effect after this batch
            if step_callbacks:
                self.running_loss.append(float(logs["loss"]))

        def on_epoch_end(self, epoch, logs=None):
            metrics = {name: float(value) for name, value in (logs or {}).items()}
            metrics["epoch_time_s"] = time.perf_counter() - self.started
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            for callback in step_callbacks:
                callback(epoch + 1, batch_losses(self.running_loss, cfg.batch_size, count))
            for callback in callbacks:
                callback(epoch + 1, metrics)

    class _Progress(keras.callbacks.ProgbarLogger):
        """Keras' progress bar, told the run's epoch count although each fit call covers one epoch."""

        def set_params(self, params):
            super().set_params({**params, "epochs": cfg.epochs})

    reporters = [_EpochReporter(), *([_Progress()] if verbose else [])]
    history: dict[str, list[float]] = {}
    for epoch in range(start_epoch, cfg.epochs):
        x_train = data.x_train if epoch_inputs is None else epoch_inputs(epoch + 1)
        y_train = data.y_train
        if cfg.shuffle:
            order = epoch_order(cfg.seed, epoch, count)
            x_train, y_train = x_train[order], y_train[order]
        model.fit(
            x_train,
            y_train,
            batch_size=cfg.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=verbose,
            validation_data=(data.x_val, data.y_val),
            shuffle=False,
            callbacks=reporters,
        )
        if apply_control(model, control):
            break
    return history

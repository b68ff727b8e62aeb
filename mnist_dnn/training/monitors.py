"""Epoch callbacks that watch training and steer it: early stopping, reduce-on-plateau, gradient norms.

They have the plain `(epoch, metrics)` signature of every epoch callback, so they work
with both training engines; the two that steer hold the run's `train.TrainingControl`
and set its `stop` or `learning_rate`, which the engine carries out between epochs.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from mnist_dnn.runs.directory import GRAD_NORM_PREFIX
from mnist_dnn.training.loop import TrainingControl

log = logging.getLogger(__name__)
GRAD_SAMPLE_SIZE = 1024  # training images the gradient norms are measured on, the same ones every epoch


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if monitor.endswith("accuracy") else value < best


class Divergence:
    """Stop after the first epoch whose training loss is not finite: every later one would be NaN too.

    A learning rate far too high (section 4.7) overflows the weights; the run still ends
    `complete`, with `diverged_epoch` saying where, so that nobody mistakes it for a result
    and a sweep does not train it again.
    """

    def __init__(self, control: TrainingControl | None):
        self.control = control
        self.diverged_epoch: int | None = None

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.diverged_epoch is None and not math.isfinite(metrics["loss"]):
            self.diverged_epoch = epoch
            log.warning(
                "Warning: training diverged: the loss of epoch %d is %s; stopped there "
                "(a lower optimizer.learning_rate usually cures it)",
                epoch,
                metrics["loss"],
            )
        if self.diverged_epoch is not None and self.control is not None:
            self.control.stop = True

    def resume(self, losses: list[float]) -> None:
        """Carry on from a checkpoint's history: a run interrupted right after diverging stays stopped."""
        for epoch, loss in enumerate(losses, start=1):
            self(epoch, {"loss": loss})


class EarlyStopping:
    """Stop once `monitor` has not improved for `patience` epochs (section 6); remember the best weights."""

    def __init__(self, model, control: TrainingControl, monitor: str, patience: int, restore_best: bool):
        self.model, self.control = model, control
        self.monitor, self.patience, self.restore_best = monitor, patience, restore_best
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights = None
        self.stopped_epoch: int | None = None

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.monitor]
        if _improved(self.monitor, value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best:
                self.best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.control.stop = True
            self.stopped_epoch = epoch

    def restore(self) -> None:
        """Put the best epoch's weights back, if asked to and training went past it."""
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self) -> tuple[dict, list[np.ndarray]]:
        values = {"best": self.best, "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}
        return values, list(self.best_weights or [])

    def set_state(self, values: dict, arrays: list[np.ndarray]) -> None:
        self.best, self.best_epoch, self.stopped_epoch = values["best"], values["best_epoch"], values["stopped_epoch"]
        self.best_weights = list(arrays) if arrays else None
        self.control.stop = self.stopped_epoch is not None


class PlateauSchedule:
    """Multiply the learning rate by `factor` when val_loss has not improved for `patience` epochs."""

    def __init__(self, control: TrainingControl, learning_rate: float, factor: float, patience: int):
        self.control, self.rate, self.factor, self.patience = control, learning_rate, factor, patience
        self.best: float | None = None
        self.waited = 0

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if _improved("val_loss", metrics["val_loss"], self.best):
            self.best, self.waited = metrics["val_loss"], 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            self.rate *= self.factor
            self.control.learning_rate = self.rate
            self.waited = 0

    def get_state(self) -> tuple[dict, list[np.ndarray]]:
        return {"rate": self.rate, "best": self.best, "waited": self.waited}, []

    def set_state(self, values: dict, arrays: list[np.ndarray]) -> None:
        """Restore, and ask again for the current rate: a checkpoint can be written before the loop applies it."""
        self.rate, self.best, self.waited = values["rate"], values["best"], values["waited"]
        self.control.learning_rate = self.rate


def learning_rate_recorder(model):
    """An epoch callback adding the optimizer's current learning rate to the metrics (column learning_rate)."""

    def record(epoch: int, metrics: dict[str, float]) -> None:
        metrics["learning_rate"] = float(np.asarray(model.optimizer.learning_rate))

    return record


class GradientNorms:
    """Adds grad_norm_<layer> to each epoch's metrics: the L2 norm of d(loss)/d(kernel) per Dense or convolution layer.

    Measured after the epoch on a fixed sample of training images, in inference mode
    (no dropout) and without the weight penalty, so epochs and runs compare. The vanishing
    gradients of section 6 show as first-layer norms far below the last layer's.
    Put it before the callbacks that should see the columns (the history writer).
    """

    def __init__(self, model, x: np.ndarray, y: np.ndarray, loss: str):
        import keras

        self.model, self.x, self.y = model, x, y
        self.loss = keras.losses.get({"mse": "mean_squared_error"}.get(loss, loss))
        self.kernels = [
            (index, variable.path.split("/")[-2])
            for index, variable in enumerate(model.trainable_variables)
            if variable.path.endswith("/kernel")
        ]
        self.backend = keras.backend.backend()
        self._grad = None
        if self.backend not in ("jax", "tensorflow"):
            log.info("Gradient norms: not measured on the %s backend (jax and tensorflow only)", self.backend)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        grads = self.gradients()
        if grads is None:
            return
        for index, layer in self.kernels:
            metrics[f"{GRAD_NORM_PREFIX}{layer}"] = float(np.linalg.norm(np.asarray(grads[index])))

    def gradients(self) -> list | None:
        """d(mean loss)/d(trainable variable), in model.trainable_variables' order; None if unsupported."""
        if self.backend == "jax":
            return self._jax_gradients()
        if self.backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(self.loss(self.y, self.model(self.x, training=False)))
            return tape.gradient(loss, [v.value for v in self.model.trainable_variables])
        return None

    def share_compiled(self, other: GradientNorms) -> None:
        """Use `other`'s compiled gradient (a model of the same architecture and loss): one compile per bundle."""
        if self.backend == "jax":
            self._grad = other._jax_program()

    def _jax_program(self):
        import jax
        import jax.numpy as jnp

        if self._grad is None:

            def mean_loss(trainable, non_trainable, x, y):
                y_pred, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
                return jnp.mean(self.loss(y, y_pred))

            self._grad = jax.jit(jax.grad(mean_loss))
        return self._grad

    def _jax_gradients(self) -> list:
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        return self._jax_program()(trainable, non_trainable, self.x, self.y)

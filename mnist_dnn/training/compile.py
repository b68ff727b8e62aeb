"""Loss, optimizer and metric for the model (section 5.1, `compile_model`)."""

from __future__ import annotations

import math

from mnist_dnn.core.config import OptimizerConfig

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}
_LOSSES = {"categorical_crossentropy": "categorical_crossentropy", "mse": "mean_squared_error"}  # section 4.4


def learning_rate(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int):
    """The learning rate, or a Keras schedule of it per optimizer step (section 4.8's learning strategies).

    'plateau' is a constant here; the training loop lowers it between epochs (monitors.PlateauSchedule).
    """
    import keras

    schedules = keras.optimizers.schedules
    decay_steps = max(1, round(cfg.decay_epochs * steps_per_epoch))
    if cfg.schedule == "step":
        return schedules.ExponentialDecay(cfg.learning_rate, decay_steps, cfg.decay_rate, staircase=True)
    if cfg.schedule == "exponential":
        return schedules.ExponentialDecay(cfg.learning_rate, decay_steps, cfg.decay_rate)
    if cfg.schedule == "cosine":
        return schedules.CosineDecay(cfg.learning_rate, max(1, steps_per_epoch * epochs))
    return cfg.learning_rate


def make_optimizer(cfg: OptimizerConfig, steps_per_epoch: int = 1, epochs: int = 1):
    """A fresh Keras optimizer; settings the config does not name stay at Keras' defaults, as in the paper."""
    import keras

    rate = learning_rate(cfg, steps_per_epoch, epochs)
    if cfg.name == "momentum":
        return keras.optimizers.SGD(learning_rate=rate, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return getattr(keras.optimizers, _OPTIMIZERS[cfg.name])(learning_rate=rate)


def count_steps(train_size: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: full batches plus the remainder."""
    return math.ceil(train_size / batch_size)


def compile_model(model, optimizer_cfg: OptimizerConfig, loss: str, steps_per_epoch: int = 1, epochs: int = 1) -> None:
    """Attach loss, optimizer and the accuracy metric the paper reports.

    `steps_per_epoch` and `epochs` place a learning-rate schedule's decay; a constant rate ignores them.
    """
    optimizer = make_optimizer(optimizer_cfg, steps_per_epoch, epochs)
    model.compile(loss=_LOSSES.get(loss, loss), optimizer=optimizer, metrics=["accuracy"])


def compile_for_scoring(model, loss: str) -> None:
    """Attach the run's loss and the accuracy metric to a loaded model, so evaluate() can score it.

    A model saved by plain Keras without compile() loads uncompiled, and one compiled with
    other metrics lacks 'accuracy'; the optimizer is never used for scoring.
    """
    model.compile(loss=_LOSSES.get(loss, loss), metrics=["accuracy"])

"""Loss, optimizer and metric for the model (section 5.1, `compile_model`)."""

from __future__ import annotations

from mnist_dnn.config import OptimizerConfig

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def make_optimizer(cfg: OptimizerConfig):
    """A fresh Keras optimizer; every setting but the learning rate stays at Keras' default, as in the paper."""
    import keras

    return getattr(keras.optimizers, _OPTIMIZERS[cfg.name])(learning_rate=cfg.learning_rate)


def compile_model(model, optimizer_cfg: OptimizerConfig, loss: str) -> None:
    """Attach loss, optimizer and the accuracy metric the paper reports."""
    model.compile(loss=loss, optimizer=make_optimizer(optimizer_cfg), metrics=["accuracy"])

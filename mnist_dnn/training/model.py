"""The paper's network, built from config values (section 5.1, `create_DNN`)."""

from __future__ import annotations

from mnist_dnn.core.config import ModelConfig
from mnist_dnn.data.mnist import NUM_CLASSES

INPUT_SIZE = 28 * 28  # one input per pixel, section 5.1


def activations(cfg: ModelConfig) -> tuple[str, ...]:
    """One activation name per hidden layer (the config allows a single name for all)."""
    if isinstance(cfg.activation, str):
        return (cfg.activation,) * len(cfg.hidden_units)
    return tuple(cfg.activation)


def dropout_positions(cfg: ModelConfig) -> set[int]:
    """1-based hidden layers followed by Dropout; empty when the rate is 0."""
    layers = len(cfg.hidden_units)
    return {p if p > 0 else layers + 1 + p for p in cfg.dropout_after} if cfg.dropout > 0 else set()


def _initializer(name: str, scale: float):
    """A Keras initializer; 'uniform' is U[-s, s] and 'normal' N(0, s^2) of section 4.3, s = model.init_scale."""
    import keras

    if name == "uniform":
        return keras.initializers.RandomUniform(-scale, scale)
    if name == "normal":
        return keras.initializers.RandomNormal(0.0, scale)
    return name


def build_model(
    cfg: ModelConfig,
    input_size: int = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
    l1: float = 0.0,
    l2: float = 0.0,
):
    """Dense(400, relu) -> Dense(100, relu) -> Dropout(0.5) -> Dense(10, softmax), not compiled.

    Other widths, activations per layer, dropout positions and initialisers come from
    `cfg`; `l1`/`l2` add l1*sum|W| + l2*sum W^2 of every Dense kernel to the loss (section 6).
    Keras draws the initial weights from its global seed, so call
    `backend.seed_everything` first for a reproducible start.
    """
    import keras

    regularizer = keras.regularizers.L1L2(l1=l1, l2=l2) if l1 or l2 else None

    def dense(units: int, activation: str, name: str):
        # a fresh initializer per layer: one unseeded instance would give every layer the same draw
        return keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=_initializer(cfg.kernel_initializer, cfg.init_scale),
            bias_initializer=_initializer(cfg.bias_initializer, cfg.init_scale),
            kernel_regularizer=regularizer,
            name=name,
        )

    after = dropout_positions(cfg)
    layers = [keras.Input(shape=(input_size,), name="pixels")]
    for index, (units, activation) in enumerate(zip(cfg.hidden_units, activations(cfg), strict=True), start=1):
        layers.append(dense(units, activation, f"hidden_{index}"))
        if index in after:
            name = "dropout" if len(after) == 1 else f"dropout_{index}"
            layers.append(keras.layers.Dropout(cfg.dropout, name=name))
    layers.append(dense(num_classes, "softmax", "digits"))
    return keras.Sequential(layers, name="dnn")

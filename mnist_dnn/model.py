"""The paper's network, built from config values (section 5.1, `create_DNN`)."""

from __future__ import annotations

from mnist_dnn.config import ModelConfig

INPUT_SIZE = 28 * 28  # one input per pixel, section 5.1
NUM_CLASSES = 10  # digits 0-9


def build_model(cfg: ModelConfig, input_size: int = INPUT_SIZE, num_classes: int = NUM_CLASSES):
    """Dense(400, relu) -> Dense(100, relu) -> Dropout(0.5) -> Dense(10, softmax), not compiled.

    Keras draws the initial weights from its global seed, so call
    `backend.seed_everything` first for a reproducible start.
    """
    import keras

    layers = [keras.Input(shape=(input_size,), name="pixels")]
    for index, units in enumerate(cfg.hidden_units, start=1):
        layers.append(
            keras.layers.Dense(
                units,
                activation=cfg.activation,
                kernel_initializer=cfg.kernel_initializer,
                bias_initializer=cfg.bias_initializer,
                name=f"hidden_{index}",
            )
        )
    if cfg.dropout > 0:
        layers.append(keras.layers.Dropout(cfg.dropout, name="dropout"))
    layers.append(
        keras.layers.Dense(
            num_classes,
            activation="softmax",
            kernel_initializer=cfg.kernel_initializer,
            bias_initializer=cfg.bias_initializer,
            name="digits",
        )
    )
    return keras.Sequential(layers, name="dnn")

"""The paper's network, built from config values (section 5.1, `create_DNN`), and what goes beyond it.

Beyond the paper, two knobs (off by default, so the paper's network is built layer for layer
as before): batch normalisation after each hidden Dense layer, and convolution layers in
front of the Dense stack (LeNet-5, LeCun et al. 1998). Inputs stay the 784-vectors of the
data pipeline; a convolutional network reshapes them to 28x28 images inside itself, so
data, checkpoints and the export contract do not change.
"""

from __future__ import annotations

from mnist_dnn.core.config import IMAGE_SIDE, ModelConfig, conv_paddings
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


def model_kind(cfg: ModelConfig) -> str:
    """What a person picks a run by: 'convolutional', 'dense + batch norm' or 'dense'."""
    if cfg.conv_filters:
        return "convolutional + batch norm" if cfg.batch_norm else "convolutional"
    return "dense + batch norm" if cfg.batch_norm else "dense"


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
    `cfg`; `l1`/`l2` add l1*sum|W| + l2*sum W^2 of every Dense and convolution kernel to the
    loss (section 6). `cfg.conv_filters` puts Conv2D + MaxPooling layers first (the input
    reshaped to a 28x28 image, then flattened again for the Dense layers); `cfg.batch_norm`
    normalises each hidden Dense layer's pre-activations. Keras draws the initial weights
    from its global seed, so call `backend.seed_everything` first for a reproducible start.
    """
    import keras

    regularizer = keras.regularizers.L1L2(l1=l1, l2=l2) if l1 or l2 else None

    def dense(units: int, activation: str | None, name: str, use_bias: bool = True):
        # a fresh initializer per layer: one unseeded instance would give every layer the same draw
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=_initializer(cfg.kernel_initializer, cfg.init_scale),
            bias_initializer=_initializer(cfg.bias_initializer, cfg.init_scale),
            kernel_regularizer=regularizer,
            name=name,
        )

    after = dropout_positions(cfg)
    layers = [keras.Input(shape=(input_size,), name="pixels")]
    if cfg.conv_filters:
        layers += _convolutions(cfg, input_size, regularizer)
    for index, (units, activation) in enumerate(zip(cfg.hidden_units, activations(cfg), strict=True), start=1):
        if cfg.batch_norm:
            # Ioffe & Szegedy (2015) normalise x = Wu + b before the nonlinearity: x is the sum of many
            # inputs and closer to Gaussian than the activation's skewed output, and the normalised
            # values sit where a sigmoid's slope is largest. BN's own shift makes the bias redundant.
            layers.append(dense(units, None, f"hidden_{index}", use_bias=False))
            layers.append(keras.layers.BatchNormalization(name=f"hidden_{index}_bn"))
            layers.append(keras.layers.Activation(activation, name=f"hidden_{index}_{activation}"))
        else:
            layers.append(dense(units, activation, f"hidden_{index}"))
        if index in after:
            name = "dropout" if len(after) == 1 else f"dropout_{index}"
            layers.append(keras.layers.Dropout(cfg.dropout, name=name))
    layers.append(dense(num_classes, "softmax", "digits"))
    return keras.Sequential(layers, name="cnn" if cfg.conv_filters else "dnn")


def _convolutions(cfg: ModelConfig, input_size: int, regularizer) -> list:
    """Reshape the 784-vector to a 28x28x1 image, Conv2D + MaxPooling per filter count, then Flatten."""
    import keras

    side = round(input_size**0.5)
    if side * side != input_size or side != IMAGE_SIDE:
        raise ValueError(f"convolutions need {IMAGE_SIDE}x{IMAGE_SIDE} images, got {input_size} inputs")
    layers = [keras.layers.Reshape((side, side, 1), name="image")]  # (N, 784) -> (N, 28, 28, 1)
    for index, (filters, padding) in enumerate(zip(cfg.conv_filters, conv_paddings(cfg), strict=True), start=1):
        layers.append(
            keras.layers.Conv2D(
                filters,
                cfg.conv_kernel,
                padding=padding,
                activation=cfg.conv_activation,
                kernel_initializer=_initializer(cfg.kernel_initializer, cfg.init_scale),
                bias_initializer=_initializer(cfg.bias_initializer, cfg.init_scale),
                kernel_regularizer=regularizer,
                name=f"conv_{index}",
            )
        )
        if cfg.pool > 1:
            layers.append(keras.layers.MaxPooling2D(cfg.pool, name=f"pool_{index}"))
    layers.append(keras.layers.Flatten(name="features"))  # (N, s, s, filters) -> (N, s*s*filters)
    return layers

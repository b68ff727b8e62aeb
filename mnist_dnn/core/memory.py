"""Will the network fit? An estimate of training memory, checked before anything is built.

    check_training_memory(cfg.model, cfg.optimizer, input_size=784, classes=10, runs_together=6, batch_size=64)

A `--set model.hidden_units=[100000000]` would otherwise end minutes later in a JAX
out-of-memory traceback, with a failed run directory. The estimate counts what every
step keeps: the parameters, their gradients and the optimizer's slots, and every layer's
outputs for a batch with their gradients (a convolution's feature maps can outweigh its
few weights), 4 bytes each (float32), once per run trained together. It is a floor, not a
bound: the framework's own buffers come on top, so `allocation_failure` still catches what
it misses.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_dnn.core.config import IMAGE_SIDE, ModelConfig, OptimizerConfig, conv_paddings, conv_sides
from mnist_dnn.core.errors import UserInputError

BYTES_PER_NUMBER = 4  # float32, Keras' default dtype
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}  # per parameter (Keras' own)


def parameter_count(model: ModelConfig, input_size: int, classes: int) -> int:
    """Weights and biases of the convolutions (if any) and the Dense stack -> hidden_units... -> classes."""
    channels, count = 1, 0
    for filters in model.conv_filters or ():
        count += (model.conv_kernel * model.conv_kernel * channels + 1) * filters
        channels = filters
    if model.batch_norm:  # gamma, beta, moving mean and variance per unit, in place of the Dense bias
        count += 3 * sum(model.hidden_units)
    widths = [_features(model, input_size), *model.hidden_units, classes]
    return count + sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:], strict=False))


def activation_count(model: ModelConfig, input_size: int, classes: int) -> int:
    """Numbers one image leaves behind in the forward pass: every layer's output, input included."""
    count = input_size
    for filters, padding, (side, pooled) in zip(
        model.conv_filters or (), conv_paddings(model), conv_sides(model), strict=True
    ):
        after_conv = side if padding == "same" else side - model.conv_kernel + 1
        count += filters * (after_conv * after_conv + pooled * pooled)
    per_hidden = 3 if model.batch_norm else 1  # Dense, BatchNormalization, Activation outputs
    return count + per_hidden * sum(model.hidden_units) + classes


def _features(model: ModelConfig, input_size: int) -> int:
    """Inputs of the first Dense layer: the pixels, or the last convolution's pooled maps."""
    if not model.conv_filters:
        return input_size
    if input_size != IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"convolutions need {IMAGE_SIDE}x{IMAGE_SIDE} images, got {input_size} inputs")
    side = conv_sides(model)[-1][1]
    return side * side * model.conv_filters[-1]


def training_bytes(
    model: ModelConfig, optimizer: OptimizerConfig, input_size: int, classes: int, runs: int = 1, batch_size: int = 0
) -> int:
    """(Parameters x (weights + gradients + optimizer slots) + activations x batch x 2) x 4 bytes x runs."""
    copies = 2 + OPTIMIZER_SLOTS[optimizer.name]
    numbers = parameter_count(model, input_size, classes) * copies
    numbers += activation_count(model, input_size, classes) * batch_size * 2  # outputs and their gradients
    return numbers * BYTES_PER_NUMBER * runs


def available_bytes() -> int | None:
    """Memory this process may still take: MemAvailable, capped by a cgroup limit; None where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append(int(text))
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return min(found)


def check_training_memory(
    model: ModelConfig,
    optimizer: OptimizerConfig,
    input_size: int,
    classes: int,
    runs_together: int = 1,
    available: int | None = None,
    batch_size: int = 0,
) -> None:
    """Refuse, in one line naming model.hidden_units (or conv_filters), a network that cannot train in memory."""
    needed = training_bytes(model, optimizer, input_size, classes, runs_together, batch_size)
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    copies = 2 + OPTIMIZER_SLOTS[optimizer.name]
    together = f" x {runs_together} runs trained together" if runs_together > 1 else ""
    key, value = ("conv_filters", model.conv_filters) if model.conv_filters else ("hidden_units", model.hidden_units)
    activations = (
        f", plus {activation_count(model, input_size, classes):,} activations x {batch_size} images x 2"
        if batch_size
        else ""
    )
    raise UserInputError(
        f"model.{key}: training {list(value)} needs at least {_size(needed)} "
        f"({parameter_count(model, input_size, classes):,} parameters x {BYTES_PER_NUMBER} bytes x {copies}: "
        f"weights, gradients and {optimizer.name}'s {copies - 2} slot(s){activations}{together}), "
        f"more than the {_size(available)} of memory available"
    )


LOADING_COPIES = 2  # loading a model holds its weights twice: the layers Keras builds, and the file's arrays


def check_loading_memory(parameters: int, model_file: Path, available: int | None = None) -> None:
    """Refuse, in one line naming the file, a saved model whose layers cannot be built in the memory available."""
    needed = parameters * BYTES_PER_NUMBER * LOADING_COPIES
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise UserInputError(
        f"{model_file}: loading it needs at least {_size(needed)} ({parameters:,} parameters x {BYTES_PER_NUMBER} "
        f"bytes x {LOADING_COPIES}), more than the {_size(available)} of memory available"
    )


def allocation_failure(exc: BaseException) -> UserInputError | None:
    """An out-of-memory error from NumPy or the backend, as one line; None for anything else."""
    text = str(exc)
    if isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return UserInputError(
            f"out of memory while training ({first[:200]}); make the model smaller (model.hidden_units) "
            "or train fewer runs at once"
        )
    return None


def _size(count: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:,} bytes"

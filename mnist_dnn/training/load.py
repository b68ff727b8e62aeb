"""Load a trained model back from its run directory or .keras file, checked before Keras unpacks it.

trained = load_trained(Path("runs/RUN"))  # .model, .config, .stats (preprocessing), .path
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.memory import BYTES_PER_NUMBER, check_loading_memory
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.data.preprocess import Statistics, statistics_for_run
from mnist_dnn.runs.files import CONFIG_FILE, MODEL_FILE
from mnist_dnn.runs.lifecycle import check_run_format
from mnist_dnn.training.compile import compile_for_scoring
from mnist_dnn.training.model import INPUT_SIZE


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with what it takes to feed it: its run's config and preprocessing statistics."""

    model: Any
    config: Config
    stats: Statistics | None
    path: Path  # the .keras file


def load_trained(path: Path) -> TrainedModel:
    """A run directory or .keras file -> the model, the config it was trained with, and its input statistics.

    The model is loaded in Keras' safe mode (a Lambda layer's Python code is refused, not
    run) and must map 784 pixels to 10 digits. A bare .keras file without a config.toml
    beside it is taken to use the paper's preprocessing. The Keras backend must be chosen.
    """
    model_file = path / MODEL_FILE if path.is_dir() else path
    if path.is_dir() and not model_file.exists() and (path / "run-1" / MODEL_FILE).is_file():
        raise UserInputError(f"{path}: a directory of several runs; pass one of them, e.g. {path / 'run-1'}")
    if not model_file.is_file() or model_file.suffix != ".keras":
        raise UserInputError(f"{model_file}: no model here (expected a run directory or a .keras file from train)")
    check_model_archive(model_file)
    check_run_format(model_file.parent)
    config_file = model_file.parent / CONFIG_FILE
    config = load_config(config_file if config_file.exists() else None)  # a FIFO there is refused, not skipped
    stats = statistics_for_run(model_file.parent, config.preprocess.method)
    model = _load_keras_model(model_file)
    inputs, outputs = model.input_shape[-1], model.output_shape[-1]
    if len(model.input_shape) != 2 or (inputs, outputs) != (INPUT_SIZE, NUM_CLASSES):
        raise UserInputError(
            f"{model_file}: the model maps {model.input_shape[1:]} inputs to {outputs} classes; "
            f"mnist-dnn needs {INPUT_SIZE} pixels in and {NUM_CLASSES} digits out"
        )
    compile_for_scoring(model, config.train.loss)
    return TrainedModel(model, config, stats, model_file)


MAX_MODEL_BYTES = 2**31  # a .keras archive's declared content: a 500-million-parameter float32 model
_BOMB_RATIO = 200  # float32 weights compress to ~90%; text JSON ~10%: far past this is a decompression bomb
_BOMB_FLOOR = 2**24  # members under 16 MiB are not worth flagging, whatever their ratio


def check_model_archive(model_file: Path) -> None:
    """Refuse a .keras zip from its declared sizes, before Keras unpacks a byte of it.

    A 3 MB archive can declare gigabytes; Keras would spend a minute and that much memory
    finding out. Python's zipfile stops at a member's declared size, so this bound holds.
    """
    try:
        with zipfile.ZipFile(model_file) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        raise UserInputError(f"{model_file}: not a readable Keras model (expected a .keras file from train)") from None
    total = sum(info.file_size for info in members)
    if total > MAX_MODEL_BYTES:
        raise UserInputError(f"{model_file}: expands to {total:,} bytes, more than the {MAX_MODEL_BYTES:,} accepted")
    for info in members:
        if info.file_size > _BOMB_FLOOR and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
            raise UserInputError(
                f"{model_file}: {info.filename} expands {info.file_size // max(info.compress_size, 1):,}-fold "
                f"({info.compress_size:,} to {info.file_size:,} bytes), which no saved model does; refused"
            )
    _check_declared_layers(model_file, {info.filename: info for info in members})


_KERAS_CONFIG = "config.json"  # inside a .keras zip: the layers, which Keras builds before reading any weight
_KERAS_WEIGHTS = "model.weights.h5"
MAX_CONFIG_BYTES = 2**24  # a Dense stack's config.json is a few KB per layer


def _check_declared_layers(model_file: Path, members: dict[str, zipfile.ZipInfo]) -> None:
    """Refuse a model whose config.json Keras could not build within reason, before Keras reads it.

    Keras allocates every layer its config declares before it reads a weight: a 4 MB file
    declaring a hidden layer of a million units costs a minute and 12 GB before it fails.
    The parameters the Dense layers declare must fit in the weights file actually held,
    and in memory (memory.check_loading_memory); a config nested too deep to parse is one
    line here, not a RecursionError inside Keras.
    """
    config_info = members.get(_KERAS_CONFIG)
    if config_info is None:
        raise UserInputError(f"{model_file}: no {_KERAS_CONFIG} inside (expected a .keras file from train)")
    if config_info.file_size > MAX_CONFIG_BYTES:
        raise UserInputError(f"{model_file}: its {_KERAS_CONFIG} is {config_info.file_size:,} bytes; refused")
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read(config_info))
    except (OSError, zipfile.BadZipFile, ValueError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else type(exc).__name__
        raise UserInputError(f"{model_file}: its {_KERAS_CONFIG} is not readable JSON ({reason})") from None
    parameters = declared_parameters(config, model_file)
    weights = members.get(_KERAS_WEIGHTS)
    held = weights.file_size if weights is not None else 0
    if parameters * BYTES_PER_NUMBER > held:
        raise UserInputError(
            f"{model_file}: its layers declare {parameters:,} parameters ({parameters * BYTES_PER_NUMBER:,} bytes) "
            f"but it holds {held:,} bytes of weights; refused before building it"
        )
    check_loading_memory(parameters, model_file)


def declared_parameters(config: Any, model_file: Path) -> int:
    """Weights and biases of the Dense layers a Keras config.json declares, in order (fan-in: the layer before).

    Walked without recursion: a hostile config may nest as deep as the JSON parser allows.
    """
    total, fan_in, stack = 0, INPUT_SIZE, [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        if node.get("class_name") == "InputLayer" and isinstance(node.get("config"), dict):
            _check_width(node["config"].get("batch_shape"), INPUT_SIZE, "its input", model_file)
        if node.get("class_name") == "Dense" and isinstance(node.get("config"), dict):
            units = node["config"].get("units")
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise UserInputError(f"{model_file}: a Dense layer declares units={units!r}; not a model from train")
            fan_in = _built_width(node.get("build_config"), fan_in)
            total += (fan_in + 1) * units
            fan_in = units
            continue
        if isinstance(node.get("config"), dict):
            total += _other_layer_parameters(node.get("class_name"), node["config"], node.get("build_config"))
        stack.extend(reversed(list(node.values())))
    return total


def _other_layer_parameters(class_name: Any, config: dict, build_config: Any) -> int:
    """Weights a convolution or an embedding declares: as hostile as a wide Dense layer when declared huge.

    A convolution's kernel is filters x kernel area x input channels (its build_config's, else 1);
    an embedding's table is input_dim x output_dim. Other layers hold no weights of that size.
    """
    if not isinstance(class_name, str):
        return 0
    if class_name.startswith("Conv") and "filters" in config:
        filters, kernel = config.get("filters"), config.get("kernel_size")
        kernel = kernel if isinstance(kernel, list) else [kernel]
        if not _whole(filters) or not kernel or not all(_whole(k) for k in kernel):
            return 0
        channels = _built_width(build_config, 1)
        return filters * math.prod(kernel) * channels + filters
    if class_name == "Embedding" and _whole(config.get("input_dim")) and _whole(config.get("output_dim")):
        return config["input_dim"] * config["output_dim"]
    return 0


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_width(shape: Any, expected: int, what: str, model_file: Path) -> None:
    """A declared shape's last axis must be the width train gives it: a wider one allocates unseen weights."""
    if isinstance(shape, list) and shape and shape[-1] != expected:
        raise UserInputError(
            f"{model_file}: {what} is declared {shape[-1]!r} wide, not {expected}; not a model from train"
        )


def _built_width(build_config: Any, fan_in: int) -> int:
    """The input width Keras builds a Dense kernel for: its build_config's (after a Flatten, the flattened
    convolution features), else the layer before's. A hostile one may declare any width: it is counted."""
    shape = build_config.get("input_shape") if isinstance(build_config, dict) else None
    if isinstance(shape, list) and shape and isinstance(shape[-1], int) and not isinstance(shape[-1], bool):
        return max(shape[-1], 1)
    return fan_in


def _load_keras_model(model_file: Path):
    import keras

    try:
        return keras.saving.load_model(model_file, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, AttributeError, RecursionError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and "safe_mode" in str(exc):
            raise UserInputError(
                f"{model_file}: refused: it holds Python code (a Lambda layer), which mnist-dnn never runs "
                "(Keras safe mode)"
            ) from None
        raise UserInputError(f"{model_file}: not a readable Keras model (expected a .keras file from train)") from None

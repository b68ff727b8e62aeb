"""Load a trained model back from its run directory or .keras file, checked before Keras unpacks it.

trained = load_trained(Path("runs/RUN"))  # .model, .config, .stats (preprocessing), .path
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.data.preprocess import Statistics, statistics_for_run
from mnist_dnn.runs.directory import check_run_format
from mnist_dnn.runs.files import CONFIG_FILE, MODEL_FILE
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
    config = load_config(config_file if config_file.is_file() else None)
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


def _load_keras_model(model_file: Path):
    import keras

    try:
        return keras.saving.load_model(model_file, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ValueError) and "safe_mode" in str(exc):
            raise UserInputError(
                f"{model_file}: refused: it holds Python code (a Lambda layer), which mnist-dnn never runs "
                "(Keras safe mode)"
            ) from None
        raise UserInputError(f"{model_file}: not a readable Keras model (expected a .keras file from train)") from None

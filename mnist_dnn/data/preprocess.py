"""Turning raw MNIST arrays into network inputs, as the paper's section 5.1 does.

The paper's Table 1 transforms sit beside its own `scale`: `zero_center` and
`standardize` need per-pixel statistics, which are fitted on the training images only
(`fit`), saved beside the model (`save_statistics` -> preprocess.npz) and applied
unchanged to every later input (`load_statistics`)::

    stats = fit("standardize", dataset.x_train)
    x_train, y_train = prepare(dataset.x_train, dataset.y_train, "standardize", 10, stats)
    x_test, y_test = prepare(dataset.x_test, dataset.y_test, "standardize", 10, stats)
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.errors import UserInputError, open_regular
from mnist_dnn.runs.files import STATISTICS_FILE

PIXEL_MAX = 255.0  # 8-bit gray levels, section 5: "pixel values range from 0 to 255"
METHODS = ("scale", "zero_center", "standardize", "log")  # = PreprocessConfig.method
FITTED_METHODS = ("zero_center", "standardize")  # the ones whose statistics come from the training set
STD_FLOOR = 1e-3 * PIXEL_MAX  # sigma of a (near-)constant pixel, e.g. MNIST's blank corners: avoids 0/0


@dataclass(frozen=True)
class Statistics:
    """Per-pixel mean and standard deviation of the training images, in raw 0-255 units, shape (pixels,)."""

    method: str
    mean: np.ndarray
    std: np.ndarray


def fit(method: str, train_images: np.ndarray) -> Statistics | None:
    """The statistics `method` needs, from the training images only; None for methods that need none."""
    if method not in METHODS:
        raise ValueError(f"unknown preprocessing method {method!r}")
    if method not in FITTED_METHODS:
        return None
    pixels = flatten(train_images).astype(np.float64)
    std = np.maximum(pixels.std(axis=0), STD_FLOOR)
    return Statistics(method, pixels.mean(axis=0).astype(np.float32), std.astype(np.float32))


def save_statistics(stats: Statistics, path: Path) -> None:
    """Write the statistics as a plain .npz (no pickles), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, method=np.array(stats.method), mean=stats.mean, std=stats.std)
    atomic_write_bytes(path, buffer.getvalue())


def load_statistics(path: Path) -> Statistics:
    """Read what `save_statistics` wrote; a missing or foreign file is the user's to fix."""
    try:
        with open_regular(path, "preprocessing statistics") as handle, np.load(handle, allow_pickle=False) as data:
            stats = Statistics(str(data["method"]), data["mean"].astype(np.float32), data["std"].astype(np.float32))
    except UserInputError:
        raise
    except FileNotFoundError:
        raise UserInputError(f"{path}: missing (the run's preprocessing statistics)") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        raise UserInputError(f"{path}: not a preprocessing statistics file (expected method, mean, std)") from None
    if not (np.isfinite(stats.mean).all() and np.isfinite(stats.std).all()):
        # statistics of 0-255 pixels are finite; NaN here would make every prediction NaN, read as "0"
        raise UserInputError(f"{path}: holds NaN or infinite statistics (damaged); the run's model cannot be fed")
    return stats


def statistics_for_run(run_dir: Path, method: str) -> Statistics | None:
    """The statistics a model trained in `run_dir` was fed with: its preprocess.npz, or None if `method` needs none."""
    return load_statistics(run_dir / STATISTICS_FILE) if method in FITTED_METHODS else None


def transform(images: np.ndarray, method: str, stats: Statistics | None = None) -> np.ndarray:
    """(N, 28, 28) or (N, 784) raw pixels 0-255 -> (N, 784) float32 network inputs by `method`."""
    if method == "scale":
        return scale_pixels(images)
    if method == "log":
        return np.log1p(flatten(images).astype(np.float32))  # log(1 + x): Table 1's log without log(0)
    if method not in FITTED_METHODS:
        raise ValueError(f"unknown preprocessing method {method!r}")
    if stats is None or stats.method != method:
        raise ValueError(
            f"preprocess.method {method!r} needs the per-pixel statistics of the training images "
            f"({STATISTICS_FILE} in the run directory)"
        )
    centred = flatten(images).astype(np.float32) - stats.mean
    return centred if method == "zero_center" else centred / stats.std


def flatten(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H*W): the paper's Dense network sees each image as one 784-vector."""
    return images.reshape(images.shape[0], -1)


def scale_pixels(images: np.ndarray) -> np.ndarray:
    """Flatten, cast to float32 and divide by 255 into [0, 1] (section 5.1, Table 1)."""
    return flatten(images).astype(np.float32) / np.float32(PIXEL_MAX)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices -> one-hot float32 rows, what keras.utils.to_categorical gives the paper."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    encoded = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    encoded[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0
    return encoded


def prepare(
    images: np.ndarray, labels: np.ndarray, method: str, num_classes: int, stats: Statistics | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets for one split, by the configured preprocessing method.

    `stats` are the training set's (see `fit`); 'scale' and 'log' need none.
    """
    return transform(images, method, stats), one_hot(labels, num_classes)

"""Turning raw MNIST arrays into network inputs, as the paper's section 5.1 does.

Kept apart from loading so the paper's other transforms (Table 1) can be added as
alternatives without touching the data or model code.
"""

from __future__ import annotations

import numpy as np

PIXEL_MAX = 255.0  # 8-bit gray levels, section 5: "pixel values range from 0 to 255"


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


def prepare(images: np.ndarray, labels: np.ndarray, method: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets for one split, by the configured preprocessing method."""
    if method != "scale":
        raise ValueError(f"unknown preprocessing method {method!r}")
    return scale_pixels(images), one_hot(labels, num_classes)

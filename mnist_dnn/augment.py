"""Data augmentation (section 6): small random shifts and rotations of the training digits.

Applied to the raw 0-255 images before preprocessing, with a fresh draw every epoch
from the run's seed, so the network never sees exactly the same image twice::

    rng = np.random.default_rng([seed, epoch])
    images = augment_images(dataset.x_train, rng, max_shift=2, max_rotation=10.0)

All of it is NumPy, vectorised over chunks of images (bilinear sampling, background 0
outside the frame), so it serves both training engines unchanged: the fused engine
uploads the epoch's images in place of the originals.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 4096  # images transformed at once: ~50 MB of coordinates


def augment_images(images: np.ndarray, rng: np.random.Generator, max_shift: int, max_rotation: float) -> np.ndarray:
    """(N, H, W) images -> the same shape, float32, each shifted by whole pixels in [-max_shift, max_shift]
    along both axes and rotated about the centre by an angle in [-max_rotation, max_rotation] degrees."""
    images = np.asarray(images)
    count, height, width = images.shape
    shifts = rng.integers(-max_shift, max_shift + 1, size=(count, 2)).astype(np.float32)  # (N, [dy, dx])
    angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, size=count)).astype(np.float32)
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        out[start:stop] = _warp(images[start:stop].astype(np.float32), shifts[start:stop], angles[start:stop])
    return out


def _warp(images: np.ndarray, shifts: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Output pixel p samples the input at R(-angle) (p - c - shift) + c, bilinearly; outside is 0.

    The images get a one-pixel frame of zeros and the sample points are clipped onto it, so
    all four neighbours of every point exist and need no masks.
    """
    count, height, width = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1))).reshape(-1)  # (N * (H+2) * (W+2),)
    stride = width + 2
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    dy = rows.ravel()[None, :] - centre_y - shifts[:, :1]  # (N, H*W)
    dx = cols.ravel()[None, :] - centre_x - shifts[:, 1:]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    src_y = np.clip(cos * dy - sin * dx + centre_y, -1, height) + 1  # in padded coordinates
    src_x = np.clip(sin * dy + cos * dx + centre_x, -1, width) + 1
    y0, x0 = np.floor(src_y), np.floor(src_x)
    fy, fx = src_y - y0, src_x - x0
    y0 = np.minimum(y0, height).astype(np.int64)  # a point on the far frame samples only the frame
    x0 = np.minimum(x0, width).astype(np.int64)
    top_left = np.arange(count)[:, None] * ((height + 2) * stride) + y0 * stride + x0
    top = padded[top_left] * (1 - fx) + padded[top_left + 1] * fx
    bottom = padded[top_left + stride] * (1 - fx) + padded[top_left + stride + 1] * fx
    return (top * (1 - fy) + bottom * fy).reshape(count, height, width)

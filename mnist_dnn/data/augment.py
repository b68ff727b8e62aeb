"""Data augmentation (section 6): random shifts and rotations of the training digits, and what
other pens and hands change: stroke width, blur, size, and elastic distortion (Simard et al. 2003).

Applied to the raw 0-255 images before preprocessing, with a fresh draw every epoch
from the run's seed, so the network never sees exactly the same image twice::

    rng = np.random.default_rng([seed, epoch])
    images = augment_images(dataset.x_train, rng, max_shift=2, max_rotation=10.0)
    images = augment_images(dataset.x_train, rng, 2, 10.0, max_scale=0.15, stroke=1.0, blur=1.0, elastic=30.0)

Per image, in this order: the strokes grow or shrink by up to `stroke` pixels (grey-level
dilation or erosion with a 3x3 cross, fractional amounts interpolated: a felt pen, a fine
pen); the image is shifted, rotated, scaled by a factor in [1 - max_scale, 1 + max_scale]
and displaced by a smooth random field (`elastic` = its strength alpha, smoothed with a
Gaussian of ELASTIC_SIGMA px, as Simard et al.) in one bilinear resampling; then blurred by
a Gaussian of sigma up to `blur` pixels (a soft pen, an unsharp photo). Options left at 0
draw no random numbers, so runs that do not use them augment exactly as before.

All of it is NumPy, vectorised over chunks of images (background 0 outside the frame), so
it serves both training engines unchanged: the fused engine uploads the epoch's images in
place of the originals.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 4096  # images transformed at once: ~50 MB of coordinates
ELASTIC_SIGMA = 4.0  # px: smoothness of the elastic displacement field (Simard et al. 2003 used 4 on 28x28 MNIST)
_BLUR_RADIUS = 2  # taps each side of the Gaussian blur kernel: enough for sigma up to ~1.5 px


def augment_images(
    images: np.ndarray,
    rng: np.random.Generator,
    max_shift: int,
    max_rotation: float,
    *,
    max_scale: float = 0.0,
    stroke: float = 0.0,
    blur: float = 0.0,
    elastic: float = 0.0,
) -> np.ndarray:
    """(N, H, W) images -> the same shape, float32, each shifted by whole pixels in [-max_shift, max_shift]
    along both axes and rotated about the centre by an angle in [-max_rotation, max_rotation] degrees;
    with the keyword options also re-stroked, scaled, elastically distorted and blurred (module docstring)."""
    images = np.asarray(images)
    count, height, width = images.shape
    shifts = rng.integers(-max_shift, max_shift + 1, size=(count, 2)).astype(np.float32)  # (N, [dy, dx])
    angles = np.deg2rad(rng.uniform(-max_rotation, max_rotation, size=count)).astype(np.float32)
    scales = rng.uniform(1 - max_scale, 1 + max_scale, size=count).astype(np.float32) if max_scale else None
    strokes = rng.uniform(-stroke, stroke, size=count).astype(np.float32) if stroke else None
    sigmas = rng.uniform(0.0, blur, size=count).astype(np.float32) if blur else None
    out = np.empty(images.shape, dtype=np.float32)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        chunk = images[start:stop].astype(np.float32)
        if strokes is not None:
            chunk = _restroke(chunk, strokes[start:stop])
        fields = _elastic_fields(rng, stop - start, height, width, elastic) if elastic else None
        scale = None if scales is None else scales[start:stop]
        chunk = _warp(chunk, shifts[start:stop], angles[start:stop], scale, fields)
        if sigmas is not None:
            chunk = _blur(chunk, sigmas[start:stop])
        out[start:stop] = chunk
    return out


def _neighbours(images: np.ndarray, reduce) -> np.ndarray:
    """Each pixel's max (or min) over itself and its 4 neighbours (a 3x3 cross); outside counts as 0."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    centre = padded[:, 1:-1, 1:-1]
    result = reduce(centre, padded[:, :-2, 1:-1])
    for view in (padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]):
        result = reduce(result, view)
    return result


def _restroke(images: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Strokes thicker (amount > 0: grey dilation) or thinner (< 0: erosion) by |amount| px, interpolated.

    Piecewise linear in the amount: 0.5 is halfway between the image and its dilation by one step.
    """
    out = images.copy()
    grown, shrunk = images, images
    for step in range(int(np.ceil(np.abs(amounts).max()))):
        more, less = _neighbours(grown, np.maximum), _neighbours(shrunk, np.minimum)
        thicker = np.clip(amounts - step, 0.0, 1.0)[:, None, None]
        thinner = np.clip(-amounts - step, 0.0, 1.0)[:, None, None]
        out += thicker * (more - grown) + thinner * (less - shrunk)
        grown, shrunk = more, less
    return out


def _gaussian_weights(sigmas: np.ndarray, radius: int) -> np.ndarray:
    """(N,) sigmas -> (N, 2 radius + 1) normalised Gaussian taps; sigma 0 is the identity."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    safe = np.maximum(sigmas, 1e-3)[:, None]
    weights = np.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _blur(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur, each image with its own sigma; the ink's total is kept (edges aside)."""
    weights = _gaussian_weights(sigmas, _BLUR_RADIUS)[:, :, None, None]
    radius = _BLUR_RADIUS
    for axis in (1, 2):
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(images, pad)
        length = images.shape[axis]
        images = sum(
            weights[:, k] * np.take(padded, np.arange(k, k + length), axis=axis) for k in range(2 * radius + 1)
        )
    return images.astype(np.float32)


def _elastic_fields(rng: np.random.Generator, count: int, height: int, width: int, alpha: float) -> np.ndarray:
    """(count, 2, H, W) smooth displacements: uniform noise in [-1, 1], Gaussian-smoothed, times alpha."""
    noise = rng.uniform(-1.0, 1.0, size=(count, 2, height, width)).astype(np.float32)
    along_rows = (noise.reshape(-1, width) @ _smoothing_matrix(width).T).reshape(count, 2, height, width)
    columns = along_rows.transpose(0, 1, 3, 2).reshape(-1, height) @ _smoothing_matrix(height).T
    return alpha * columns.reshape(count, 2, width, height).transpose(0, 1, 3, 2)


def _smoothing_matrix(size: int) -> np.ndarray:
    """Convolution with a Gaussian of ELASTIC_SIGMA px as a (size, size) matrix (zeros beyond the edge)."""
    offsets = np.arange(size, dtype=np.float32)
    kernel = np.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / ELASTIC_SIGMA) ** 2)
    return (kernel / (np.sqrt(2 * np.pi) * ELASTIC_SIGMA)).astype(np.float32)


def _warp(
    images: np.ndarray,
    shifts: np.ndarray,
    angles: np.ndarray,
    scales: np.ndarray | None = None,
    fields: np.ndarray | None = None,
) -> np.ndarray:
    """Output pixel p samples the input at R(-angle) (p - c - shift) / scale + c + field(p), bilinearly; outside is 0.

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
    if scales is not None:
        dy, dx = dy / scales[:, None], dx / scales[:, None]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    src_y, src_x = cos * dy - sin * dx + centre_y, sin * dy + cos * dx + centre_x
    if fields is not None:
        src_y, src_x = src_y + fields[:, 0].reshape(count, -1), src_x + fields[:, 1].reshape(count, -1)
    src_y = np.clip(src_y, -1, height) + 1  # in padded coordinates
    src_x = np.clip(src_x, -1, width) + 1
    y0, x0 = np.floor(src_y), np.floor(src_x)
    fy, fx = src_y - y0, src_x - x0
    y0 = np.minimum(y0, height).astype(np.int64)  # a point on the far frame samples only the frame
    x0 = np.minimum(x0, width).astype(np.int64)
    top_left = np.arange(count)[:, None] * ((height + 2) * stride) + y0 * stride + x0
    top = padded[top_left] * (1 - fx) + padded[top_left + 1] * fx
    bottom = padded[top_left + stride] * (1 - fx) + padded[top_left + stride + 1] * fx
    return (top * (1 - fy) + bottom * fy).reshape(count, height, width)


def configured(reg) -> dict[str, float] | None:
    """Config [regularization]'s augmentation as augment_images' arguments; None when all of it is off."""
    options = {
        "max_shift": reg.augment_shift,
        "max_rotation": reg.augment_rotation,
        "max_scale": reg.augment_scale,
        "stroke": reg.augment_stroke,
        "blur": reg.augment_blur,
        "elastic": reg.augment_elastic,
    }
    return options if any(options.values()) else None

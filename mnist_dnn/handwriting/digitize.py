"""Digitizing: a photo or a drawing of one digit -> a 28x28 grid as the paper's CSVs hold it.

    from mnist_dnn.handwriting.digitize import digitize_file
    grid = digitize_file(Path("photo.jpg"), method="mnist")    # uint8 (28, 28): 0 = paper, 255 = ink

Two ways to turn a photo into a 28x28 grid:

* ``mnist`` does what was done to MNIST itself (LeCun et al.): the ink is separated from
  the paper (uneven lighting divided out, paper grain and stray specks dropped), cropped
  to its bounding box, scaled so its longer side is 20 px with anti-aliasing, and placed
  in the 28x28 field so that its centre of mass is at the centre.
* ``naive`` does what section 5.2.2 did: a square crop, shrunk to 28x28 (each grid cell
  the average of the photo under it, as the paper's ChatGPT prompt asks), grayscale,
  inverted so ink is high. The paper's grey, unevenly lit background stays in.

Nothing here prints or exits; every bad input raises UserInputError naming the image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np

from mnist_dnn.core.errors import UserInputError, open_regular
from mnist_dnn.handwriting.png_header import png_size

SIDE = 28  # MNIST images are 28x28 (section 5)
BOX = 20  # MNIST digits were size-normalised to fit a 20x20 box, aspect ratio kept (LeCun's MNIST page)
CENTRE = 14.0  # MNIST's mean ink centre of mass, in pixel indices (measured on the training set: 14.0, 14.0)
PIXEL_MAX = 255  # 0 = white paper, 255 = black ink: the paper's CSV convention (section 5.2.2)
MAX_IMAGE_PIXELS = 80_000_000  # refused before decoding: more than any phone photo, < 1 GB to decode
_TOO_LARGE = f"more than the {MAX_IMAGE_PIXELS // 1_000_000} megapixels accepted; shrink it first"
WORK_SIDE = 512  # photos are shrunk to this longer side first; the 20 px box needs far less
BACKGROUND_CELLS = 24  # the lighting estimate's grid along the shorter side: smooth, coarser than any stroke
MIN_PART = 0.1  # ink blobs smaller than this fraction of the largest are specks, not part of the digit
MIN_CONTRAST = 0.15  # typical ink must be this much darker than its paper (fraction of the paper's brightness)
DRAWING_PAD = 8  # a drawing gets 1/8 of its side of paper around it: wider than the lighting estimate's window
MIN_INK_DIFFERENCE = 0.05  # a page whose extremes lie closer than this to its paper (13 of 255 levels) has no ink

Method = Literal["mnist", "naive"]
METHODS: tuple[str, ...] = ("mnist", "naive")
_IMAGE_FORMATS = ("PNG", "JPEG", "MPO")  # MPO: what some phones call their JPEGs


def digitize_file(path: Path, method: Method = "mnist") -> np.ndarray:
    """A PNG/JPEG photo of one digit -> uint8 (28, 28), 0 = paper, 255 = ink."""
    return digitize(read_photo(path), method, str(path))


def read_photo(path: Path) -> np.ndarray:
    """Brightness in [0, 1] (1 = white), upright, at most WORK_SIDE px on its longer side.

    The size is checked from the header, before any pixel is decoded; transparency is
    laid over white; 16-bit grayscale keeps its range.
    """
    return _read_brightness(path, str(path))


def read_photo_bytes(data: bytes, where: str) -> np.ndarray:
    """`read_photo` for an image held in memory (a drawing posted by `serve`), `where` naming it in errors."""
    return _read_brightness(io.BytesIO(data), where)


def _read_brightness(source: Path | io.BytesIO, where: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        # A FIFO named as a photo would block Image.open for good, deaf to SIGTERM: only regular files are opened.
        handle = open_regular(source, "a PNG or JPEG image") if isinstance(source, Path) else source
        with handle, Image.open(handle) as image:
            declared = png_size(image.fp, where) if image.format == "PNG" else None
            if declared is not None and declared != image.size:
                raise UserInputError(f"{where}: not a valid PNG (its header says {declared}, its decoder {image.size})")
            if image.format not in _IMAGE_FORMATS:
                raise UserInputError(f"{where}: {image.format} images are not supported (expected PNG or JPEG)")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserInputError(f"{where}: {width}x{height} pixels is {_TOO_LARGE}")
            image = ImageOps.exif_transpose(image)  # phones store photos sideways plus an orientation tag
            image = _to_brightness(image)
    except FileNotFoundError:
        raise UserInputError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise UserInputError(f"{where}: is a directory (expected a PNG or JPEG image)") from None
    except Image.DecompressionBombError:  # Pillow's own header check, for sizes far beyond ours
        raise UserInputError(f"{where}: {_TOO_LARGE}") from None
    except UnidentifiedImageError:  # its message is the repr of a file object, which tells the user nothing
        raise UserInputError(f"{where}: not a readable PNG or JPEG image") from None
    except (OSError, SyntaxError) as exc:
        raise UserInputError(f"{where}: not a readable PNG or JPEG image ({exc})") from None
    if min(image.size) < 2:
        raise UserInputError(f"{where}: {image.size[0]}x{image.size[1]} pixels is too small to hold a digit")
    scale = WORK_SIDE / max(image.size)
    if scale < 1:
        size = (max(2, round(image.size[0] * scale)), max(2, round(image.size[1] * scale)))
        image = image.resize(size, Image.Resampling.BOX)  # area average: no aliasing of paper grain
    return np.asarray(image, dtype=np.float32).clip(0.0, 1.0)


def _to_brightness(image):
    """Any PNG/JPEG mode -> a 32-bit float ('F') image in [0, 1]."""
    from PIL import Image

    if image.mode.startswith("I;16"):
        return Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0, mode="F")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    gray = np.asarray(image.convert("L"), dtype=np.float32) / PIXEL_MAX
    return Image.fromarray(gray, mode="F")


def _check_some_ink(brightness: np.ndarray, where: str) -> None:
    """Refuse a page with nothing on it, dark or light: it would come out a blank digit or a solid block."""
    paper = float(np.median(_border(brightness)))
    darkest, brightest = np.percentile(brightness, [0.5, 99.5])
    if max(paper - darkest, brightest - paper) < MIN_INK_DIFFERENCE:
        raise UserInputError(
            f"{where}: no ink found: the whole page is one shade ({paper * PIXEL_MAX:.0f} of 255); "
            "expected a digit clearly darker or lighter than its paper"
        )


def _border(brightness: np.ndarray) -> np.ndarray:
    """The outer 5% of the image on every side: mostly paper in any photo of one digit."""
    margin = max(1, round(0.05 * min(brightness.shape)))
    return np.concatenate(
        [
            brightness[:margin].ravel(),
            brightness[-margin:].ravel(),
            brightness[:, :margin].ravel(),
            brightness[:, -margin:].ravel(),
        ]
    )


def ink_is_dark(brightness: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: the border is mostly paper, so see which end it sits at."""
    paper = float(np.median(_border(brightness)))
    darkest, brightest = np.percentile(brightness, [0.5, 99.5])
    return paper - darkest >= brightest - paper


def digitize(
    brightness: np.ndarray, method: Method = "mnist", where: str = "image", ink_dark: bool | None = None
) -> np.ndarray:
    """Brightness in [0, 1] -> uint8 (28, 28), 0 = paper, 255 = ink.

    `ink_dark` is the polarity when the caller knows it; None guesses it from the border.
    """
    if method not in METHODS:
        raise ValueError(f"unknown digitize method {method!r} (expected one of {', '.join(METHODS)})")
    brightness = np.asarray(brightness, dtype=np.float32)  # Pillow's 'F' images are float32
    if brightness.ndim != 2:
        raise ValueError(f"expected a 2-D brightness array, got shape {brightness.shape}")
    _check_some_ink(brightness, where)
    if ink_dark is None:
        ink_dark = ink_is_dark(brightness)
    paper_bright = brightness if ink_dark else 1.0 - brightness
    field = _mnist_style(paper_bright, where) if method == "mnist" else _naive(paper_bright)
    return np.rint(field * PIXEL_MAX).clip(0, PIXEL_MAX).astype(np.uint8)


def digitize_drawing(brightness: np.ndarray, where: str = "drawing") -> np.ndarray | None:
    """A drawing of dark ink on white (the `serve` canvas) -> uint8 (28, 28), or None when nothing is drawn.

    The same `mnist` path as a photo, told the polarity instead of guessing it from a
    border the strokes may touch, and padded with paper so the lighting estimate always
    sees paper beside a stroke drawn along the edge.
    """
    brightness = np.asarray(brightness, dtype=np.float32)
    if not (brightness < 1.0 - MIN_CONTRAST).any():
        return None
    pad = max(1, max(brightness.shape) // DRAWING_PAD)
    padded = np.pad(brightness, pad, constant_values=1.0)
    return digitize(padded, "mnist", where, ink_dark=True)


def _naive(paper_bright: np.ndarray) -> np.ndarray:
    """Section 5.2.2: the centred square, a 28x28 grid of cell averages, grayscale inverted."""
    from PIL import Image

    height, width = paper_bright.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(paper_bright[top : top + side, left : left + side], mode="F")
    cells = np.asarray(square.resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float32)
    return 1.0 - cells


def _mnist_style(paper_bright: np.ndarray, where: str) -> np.ndarray:
    """Ink isolated, cropped, scaled to a 20 px box, centred by mass in 28x28: values in [0, 1]."""
    ink = 1.0 - (paper_bright / _paper_level(paper_bright)).clip(0.0, 1.0)  # lighting divided out
    threshold = _otsu(ink)
    strokes = ink[ink > threshold]
    if strokes.size == 0 or np.median(strokes) < MIN_CONTRAST:
        raise UserInputError(f"{where}: no ink found (expected a digit clearly darker or lighter than its paper)")
    floor, full = threshold / 2, float(np.percentile(strokes, 75))
    level = ((ink - floor) / max(full - floor, 1e-6)).clip(0.0, 1.0)  # grain -> 0, ink -> 1, edges between
    keep = _digit_mask(ink > threshold)
    level *= _grow(keep, radius=2)  # specks and marks away from the digit go; its soft edges stay
    rows, cols = np.nonzero(keep)
    digit = level[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return _centre_by_mass(_fit_box(digit))


def _paper_level(paper_bright: np.ndarray) -> np.ndarray:
    """The paper's own brightness everywhere (lighting), with the strokes taken out by a local maximum."""
    from PIL import Image, ImageFilter

    height, width = paper_bright.shape
    step = max(1.0, min(height, width) / BACKGROUND_CELLS)
    small_size = (max(3, round(width / step)), max(3, round(height / step)))
    small = Image.fromarray(paper_bright, mode="F").resize(small_size, Image.Resampling.BOX)
    small = small.filter(ImageFilter.MaxFilter(5))  # wider than a stroke: only paper survives
    level = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.maximum(level, 1e-3)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold on values in [0, 1]: the split that best separates two groups."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight
        mean_high = (mass[-1] - mass) / (total - weight)
        between = weight * (total - weight) * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between[:-1], nan=0.0)
    return float(edges[int(np.argmax(between)) + 1])


def _digit_mask(mask: np.ndarray) -> np.ndarray:
    """The ink blobs (8-connected) that make the digit: all but those much smaller than the largest.

    scipy's C labelling, not a Python flood fill: this runs on every live update of `serve`.
    """
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    big = sizes >= MIN_PART * sizes.max()
    big[0] = False
    return big[labels]


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """The mask widened by `radius` pixels in every direction (a square dilation; outside the image is empty).

    Separable: widened along the columns, then that along the rows.
    """
    tall = mask.copy()
    for step in range(1, radius + 1):
        tall[step:] |= mask[:-step]
        tall[:-step] |= mask[step:]
    grown = tall.copy()
    for step in range(1, radius + 1):
        grown[:, step:] |= tall[:, :-step]
        grown[:, :-step] |= tall[:, step:]
    return grown


def _fit_box(digit: np.ndarray) -> np.ndarray:
    """Scale so the longer side is BOX px, keeping the aspect ratio, with anti-aliasing."""
    from PIL import Image

    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32).clip(0.0, 1.0)


def _centre_by_mass(box: np.ndarray) -> np.ndarray:
    """Place the box in the 28x28 field with its ink's centre of mass at CENTRE (whole-pixel shift)."""
    height, width = box.shape
    rows, cols = np.indices(box.shape)
    mass = box.sum()
    centre_r = (rows * box).sum() / mass if mass > 0 else (height - 1) / 2
    centre_c = (cols * box).sum() / mass if mass > 0 else (width - 1) / 2
    top = int(np.clip(round(CENTRE - centre_r), 0, SIDE - height))
    left = int(np.clip(round(CENTRE - centre_c), 0, SIDE - width))
    field = np.zeros((SIDE, SIDE), dtype=np.float32)
    field[top : top + height, left : left + width] = box
    return field

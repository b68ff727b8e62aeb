"""Draw the five test digits of section 5.2.2 (3, 8, 9, 5, 4) as photographed sharpie pages.

    python custom_digits/make_pages.py custom_digits/source    # what `make custom-digits` runs

The paper's own photos are not published, so these stand in for them, made in the open:
each digit is a few pen strokes through hand-placed points, inked with a round pen onto
"paper" that a phone might have photographed - uneven lighting with a soft shadow, paper
grain, sensor noise, a slight blur, a stray ink dot, and a non-square crop with the digit
a little off-centre. Everything random comes from one fixed seed, so the PNGs come out
byte-identical every time (with the same numpy and Pillow).
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 5_2_2  # section 5.2.2
SUPERSAMPLE = 4  # strokes are drawn this much larger, then averaged down: smooth, anti-aliased edges

Point = tuple[float, float]
# Strokes in a 60 wide x 100 tall frame, x to the right, y down; each list is one pen-down.
STROKES: dict[int, list[list[Point]]] = {
    3: [
        [(9, 17), (20, 6), (37, 3), (51, 10), (53, 24), (43, 37), (27, 45)],
        [(27, 45), (45, 50), (57, 64), (55, 82), (42, 95), (22, 97), (6, 87)],
    ],
    8: [
        [
            (48, 15),
            (40, 5),
            (25, 3),
            (12, 11),
            (13, 27),
            (30, 44),
            (47, 58),
            (54, 76),
            (45, 93),
            (27, 98),
            (10, 89),
            (8, 72),
            (19, 56),
            (31, 45),
            (44, 31),
            (51, 20),
            (47, 12),
        ],
    ],
    9: [
        [
            (51, 28),
            (46, 10),
            (31, 3),
            (15, 9),
            (8, 25),
            (15, 40),
            (31, 45),
            (46, 37),
            (53, 22),
            (54, 46),
            (51, 72),
            (45, 98),
        ],
    ],
    5: [
        [(55, 5), (36, 5), (17, 7)],
        [(17, 7), (14, 43), (31, 36), (48, 41), (58, 59), (55, 80), (41, 95), (21, 97), (7, 87)],
    ],
    4: [
        [(35, 3), (20, 34), (5, 63), (33, 62), (60, 60)],
        [(46, 28), (46, 62), (45, 98)],
    ],
}


@dataclass(frozen=True)
class Page:
    """How one digit was photographed: the crop, where the digit sits, and the light."""

    digit: int
    size: tuple[int, int]  # width, height of the crop in pixels: never square
    box: tuple[int, int, int]  # the digit frame's left, top and height in pixels
    slant: float  # shear of the handwriting, x shift per unit of height (right-leaning > 0)
    pen: float  # pen width as a fraction of the digit's height (a sharpie: ~10%)
    light: tuple[float, float]  # direction the light falls off towards (x, y), unit-ish
    shadow: float  # how dark the soft shadow across one corner is (0 = none)


PAGES = (  # the paper's order: Pixel_Data1..5 hold 3, 8, 9, 5, 4
    Page(3, (420, 540), (150, 150, 250), 0.10, 0.10, (0.8, 0.6), 0.30),
    Page(8, (500, 410), (185, 70, 260), 0.05, 0.09, (-0.7, 0.7), 0.20),
    Page(9, (400, 520), (135, 120, 265), 0.12, 0.10, (0.6, -0.8), 0.35),
    Page(5, (520, 440), (210, 95, 250), 0.08, 0.11, (1.0, 0.1), 0.25),
    Page(4, (440, 560), (155, 165, 255), 0.04, 0.10, (-0.3, 1.0), 0.30),
)


def catmull_rom(points: list[Point], samples: int = 24) -> np.ndarray:
    """A smooth curve through the points, as a pen would travel it: (M, 2) array."""
    p = np.array(points, dtype=np.float64)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])  # mirrored end points keep the ends straight
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    parts = []
    for i in range(1, len(p) - 2):
        a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
        parts.append(
            0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3)
        )
    parts.append(p[-2][None, :])
    return np.vstack(parts)


def ink_coverage(
    strokes: list[list[Point]], size: tuple[int, int], box: tuple[int, int, int], pen: float, slant: float
) -> np.ndarray:
    """Fraction of each pixel covered by ink, float32 (height, width) in [0, 1]."""
    width, height = size
    left, top, digit_height = box
    scale = digit_height / 100.0
    canvas = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        path = catmull_rom(stroke)
        for k, (x, y) in enumerate(path):
            pressure = 0.85 + 0.15 * np.sin(np.pi * k / max(len(path) - 1, 1))  # lighter at the ends
            radius = pen * digit_height * pressure / 2 * SUPERSAMPLE
            px = (left + (x + slant * (100 - y)) * scale) * SUPERSAMPLE
            py = (top + y * scale) * SUPERSAMPLE
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    small = canvas.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> np.ndarray:
    """Noise that varies over about `cell` pixels: the paper's fibres and unevenness."""
    width, height = size
    coarse = rng.standard_normal((max(2, height // cell), max(2, width // cell))).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def photograph(
    coverage: np.ndarray,
    rng: np.random.Generator,
    light: tuple[float, float] = (0.8, 0.6),
    shadow: float = 0.3,
    stray: tuple[float, float, float] | None = None,
    dark_ink: bool = True,
) -> np.ndarray:
    """Ink coverage -> uint8 RGB photo of it on paper (or chalk on a dark board if not dark_ink).

    `stray` is an extra ink dot (x, y, radius in pixels) that is not part of the digit.
    """
    height, width = coverage.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xs / width - 0.5, ys / height - 0.5
    if stray is not None:
        x0, y0, r = stray
        coverage = np.maximum(coverage, ((xs - x0) ** 2 + (ys - y0) ** 2 <= r * r).astype(np.float32) * 0.95)
    falloff = 0.22 * (light[0] * u + light[1] * v)  # brighter on the side the light comes from
    vignette = 0.18 * (u**2 + v**2)
    edge = 1.0 / (1.0 + np.exp(-(u * 0.9 + v * 0.6 - 0.25) / 0.05))  # a soft shadow across one corner
    illumination = (0.86 - falloff - vignette) * (1.0 - shadow * edge)
    grain = 0.025 * _smooth_noise(rng, (width, height), 6) + 0.012 * _smooth_noise(rng, (width, height), 2)
    if dark_ink:
        paper, ink = np.array([1.0, 0.97, 0.91]), np.array([0.09, 0.09, 0.12])  # warm paper, black sharpie
    else:
        paper, ink = np.array([0.16, 0.22, 0.19]), np.array([0.92, 0.92, 0.88])  # chalkboard, white chalk
    surface = paper * (1.0 - coverage[..., None]) + ink * coverage[..., None]
    photo = illumination[..., None] * (surface + grain[..., None])
    photo += 0.01 * rng.standard_normal(photo.shape)  # sensor noise
    image = Image.fromarray(np.rint(photo.clip(0, 1) * 255).astype(np.uint8), mode="RGB")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)))  # a phone's slight blur


def render(page: Page) -> bytes:
    """One page as PNG bytes."""
    rng = np.random.default_rng([SEED, page.digit])
    coverage = ink_coverage(STROKES[page.digit], page.size, page.box, page.pen, page.slant)
    left, top, digit_height = page.box
    stray = (left + 0.95 * digit_height, top + 0.15 * digit_height, 0.35 * page.pen * digit_height)
    photo = photograph(coverage, rng, page.light, page.shadow, stray)
    buffer = io.BytesIO()
    Image.fromarray(photo, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def make_pages(out_dir: Path) -> list[Path]:
    """Write <digit>.png for every page into out_dir (created if needed); return the paths in paper order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for page in PAGES:
        path = out_dir / f"{page.digit}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(render(page))
        tmp.replace(path)  # whole file or none
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where the page PNGs go (e.g. custom_digits/source)")
    for written_path in make_pages(parser.parse_args().out_dir):
        print(written_path)

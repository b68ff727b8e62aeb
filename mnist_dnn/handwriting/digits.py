"""Your own digits: reading them as the paper's test set, and digitizing photos two ways into files.

    from mnist_dnn.handwriting.digits import load_digits, digitize_file
    digits = load_digits([Path("custom_digits")])            # CSVs + labels.csv, as in section 5.2.2
    grid = digitize_file(Path("photo.jpg"), method="mnist")    # uint8 (28, 28): 0 = paper, 255 = ink

Two ways to turn a photo into a 28x28 grid:

* ``mnist`` does what was done to MNIST itself (LeCun et al.): the ink is separated from
  the paper (uneven lighting divided out, paper grain and stray specks dropped), cropped
  to its bounding box, scaled so its longer side is 20 px with anti-aliasing, and placed
  in the 28x28 field so that its centre of mass is at the centre.
* ``naive`` does what section 5.2.2 did: a square crop, shrunk to 28x28 (each grid cell
  the average of the photo under it, as the paper's ChatGPT prompt asks), grayscale,
  inverted so ink is high. The paper's grey, unevenly lit background stays in.

Nothing here prints or exits; every bad input raises UserInputError naming the file.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mnist_dnn.core.atomic import atomic_write_bytes, atomic_write_text
from mnist_dnn.core.errors import UserInputError, open_regular, read_user_text
from mnist_dnn.data.mnist import load_mnist
from mnist_dnn.handwriting.png_header import png_size

log = logging.getLogger(__name__)
MAX_SHOWN = 400  # digits `show` draws in one grid, as its --grid allows: a 20 x 20 grid
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
MIN_INK_MASS = 10  # CSV digits with less ink (in full pixels) are nearly blank: MNIST's sparsest digit has 20
PREVIEW_SUFFIX = ".preview.png"  # what digitize writes beside each CSV: a picture of it, not a digit to read

Method = Literal["mnist", "naive"]
METHODS: tuple[str, ...] = ("mnist", "naive")
CSV_SUFFIXES = (".csv",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS_FILE = "labels.csv"
_IMAGE_FORMATS = ("PNG", "JPEG", "MPO")  # MPO: what some phones call their JPEGs
_EXPECTED_CSV = "28 lines of 28 comma-separated values 0-255, or one line of 784"


@dataclass(frozen=True)
class Digits:
    """A small test set: images as the paper's CSVs hold them, plus labels when known."""

    files: tuple[Path, ...]
    images: np.ndarray  # float32 (N, 28, 28), 0 = paper, 255 = ink
    labels: np.ndarray | None  # int64 (N,) digits 0-9, or None when not asked for

    @property
    def names(self) -> list[str]:
        """Short names for tables: the file names, or whole paths when two files share a name."""
        names = [f.name for f in self.files]
        return names if len(set(names)) == len(names) else [str(f) for f in self.files]


# --- reading ----------------------------------------------------------------------------------


def load_digits(
    paths: Sequence[Path],
    labels: str | None = None,
    *,
    invert: bool = False,
    method: Method = "mnist",
    require_labels: bool = True,
) -> Digits:
    """Read custom digits from CSV files, PNG/JPEG images (digitized by `method`) or directories.

    A directory stands for the files listed in its labels.csv, in that order; without one,
    for its CSV files (or, if it has none, its images) in name order. Labels come from
    `labels` ("3,8,9,5,4", in file order), else a labels.csv beside the file, else a
    leading digit in the file name ("3.csv", "8-sharpie.png").
    """
    files, listed = _resolve_files(paths, labels_beside_files=require_labels and labels is None)
    grids = [_read_one(f, invert=invert, method=method) for f in files]
    found = None
    if require_labels or labels is not None:
        found = _labels_for(files, listed, labels, paths)
    images = np.stack(grids).astype(np.float32) if grids else np.zeros((0, SIDE, SIDE), np.float32)
    for path in paths:  # warnings only once everything has been read: a refusal stays one line
        if path.is_dir():
            _warn_ignored_images(path, files)
    for path, grid in zip(files, grids, strict=True):
        if path.suffix.lower() in CSV_SUFFIXES:
            _warn_if_faint(path, grid)
    return Digits(tuple(files), images, found)


def method_images(digits: Digits, methods: Sequence[str] = METHODS) -> dict[str, np.ndarray]:
    """The same digits digitized from their page images each way: method -> (N, 28, 28) images."""
    sources = source_images(digits.files)
    return {m: load_digits(sources, method=m, require_labels=False).images for m in methods}


def digits_to_show(
    index: int | None, grid: int | None, custom_paths: Sequence[Path], data_dir: Path | None
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, str, Path]:
    """`show`'s digits: (images, labels or None, names or None, title, default output file)."""
    if custom_paths:
        digits = load_digits(list(custom_paths), require_labels=False)
        images, names, title = digits.images, digits.names, "Custom digits"
        if len(images) > MAX_SHOWN:  # thousands of digits would take minutes to draw, and be unreadable
            log.warning("Showing the first %d of %d digits", MAX_SHOWN, len(images))
            images, names, title = images[:MAX_SHOWN], names[:MAX_SHOWN], f"Custom digits (first {MAX_SHOWN})"
        return images, None, names, title, Path("custom-digits.png")
    dataset = load_mnist(data_dir)
    name = "MNIST" if dataset.name == "mnist" else dataset.name
    if grid is not None:
        images, labels = dataset.x_test[:grid], dataset.y_test[:grid]
        return images, labels, None, f"First {len(images)} {name} test digits", Path(f"mnist-test-grid-{grid}.png")
    if index >= len(dataset.x_train):
        raise UserInputError(f"--index: expected 0..{len(dataset.x_train) - 1}, got {index}")
    images, labels = dataset.x_train[index : index + 1], dataset.y_train[index : index + 1]
    return images, labels, None, f"{name} training image {index}: label {labels[0]}", Path(f"mnist-train-{index}.png")


def source_images(files: Sequence[Path]) -> list[Path]:
    """The photo each digit came from: the file itself if it is an image, else source/<stem>.png|.jpg beside it."""
    found = []
    for f in files:
        if f.suffix.lower() in IMAGE_SUFFIXES:
            found.append(f)
            continue
        candidates = [f.parent / "source" / f"{f.stem}{suffix}" for suffix in IMAGE_SUFFIXES]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            raise UserInputError(f"{f}: no page image to digitize (expected {candidates[0]} or a .jpg of that name)")
        found.append(existing[0])
    return found


def _read_one(path: Path, *, invert: bool, method: Method) -> np.ndarray:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return digitize_file(path, method).astype(np.float32)
    grid = read_digit_csv(path)
    if grid.min() == PIXEL_MAX:
        raise UserInputError(f"{path}: every value is 255: no ink, whichever way round (expected 0 = paper, 255 = ink)")
    if np.median(grid) > PIXEL_MAX / 2:
        if not invert:
            raise UserInputError(
                f"{path}: the background is mostly 255, so black and white look swapped "
                "(expected 0 = paper, 255 = ink); pass --invert to flip it"
            )
        grid = PIXEL_MAX - grid
    return grid


def _warn_if_faint(path: Path, grid: np.ndarray) -> None:
    """A digit scaled 0-1 or nearly blank still gets a guess, but a near-uniform one: say why, once."""
    ink = float(grid.sum()) / PIXEL_MAX
    if 0 < grid.max() <= 1:
        log.warning("Warning: %s: every value is between 0 and 1; expected 0-255 (scaled 0-1? multiply by 255)", path)
    elif ink < MIN_INK_MASS:
        log.warning(
            "Warning: %s: nearly blank (ink of %.1f full pixels; MNIST's digits have %d or more); "
            "its prediction means little",
            path,
            ink,
            2 * MIN_INK_MASS,
        )


def _resolve_files(paths: Sequence[Path], labels_beside_files: bool) -> tuple[list[Path], dict[Path, int]]:
    """The data files the paths stand for, and every label a labels.csv among them gives (by resolved path)."""
    if not paths:
        raise UserInputError("no digit files given (expected CSV files, images, or a directory of them)")
    files: list[Path] = []
    listed: dict[Path, int] = {}
    for path in paths:
        if path.is_dir():
            labels_csv = path / LABELS_FILE
            if labels_csv.is_file():
                from_csv = read_labels_csv(labels_csv)
                listed.update({p.resolve(): label for p, label in from_csv.items()})
                _check_all_listed(path, from_csv)
                files.extend(from_csv)
            else:
                files.extend(_data_files_in(path))
        elif path.exists():
            _check_suffix(path)
            files.append(path)
            labels_csv = path.parent / LABELS_FILE
            if labels_beside_files and labels_csv.is_file():
                listed.update({p.resolve(): label for p, label in read_labels_csv(labels_csv).items()})
        else:
            raise UserInputError(f"{path}: no such file or directory")
    seen: set[Path] = set()
    for f in files:
        if f.resolve() in seen:
            raise UserInputError(f"{f}: given twice")
        seen.add(f.resolve())
    return files, listed


def _data_files_in(directory: Path) -> list[Path]:
    entries = sorted(p for p in directory.iterdir() if p.is_file() and p.name != LABELS_FILE)
    csvs = [p for p in entries if p.suffix.lower() in CSV_SUFFIXES]
    chosen = csvs or [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    if not chosen:
        raise UserInputError(f"{directory}: no .csv, .png or .jpg files here")
    return chosen


def _warn_ignored_images(directory: Path, read: Sequence[Path]) -> None:
    """Images beside CSV digits are not read (the CSVs are the digits); say so, except for digitize's previews."""
    taken = {p.resolve() for p in read}
    if not any(p.suffix.lower() in CSV_SUFFIXES and p.parent.resolve() == directory.resolve() for p in read):
        return
    ignored = [
        p.name
        for p in sorted(directory.iterdir())
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.lower().endswith(PREVIEW_SUFFIX)
        and p.resolve() not in taken
    ]
    if ignored:
        shown = ", ".join(ignored[:3]) + (f" and {len(ignored) - 3} more" if len(ignored) > 3 else "")
        log.warning(
            "Warning: %s: reading its CSV digits only; %d image(s) beside them ignored (%s); name them to read them",
            directory,
            len(ignored),
            shown,
        )


def _check_all_listed(directory: Path, from_csv: dict[Path, int]) -> None:
    """A data file beside labels.csv but not in it would silently drop out of the test set."""
    listed = {p.resolve() for p in from_csv}
    kinds = CSV_SUFFIXES if any(p.suffix.lower() in CSV_SUFFIXES for p in from_csv) else IMAGE_SUFFIXES
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.suffix.lower() in kinds and p.name != LABELS_FILE and p.resolve() not in listed:
            raise UserInputError(f"{p}: not listed in {directory / LABELS_FILE} (add a row 'file,label' for it)")


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in CSV_SUFFIXES + IMAGE_SUFFIXES:
        raise UserInputError(f"{path}: expected a .csv, .png, .jpg or .jpeg file")


def read_labels_csv(path: Path, require_files: bool = True) -> dict[Path, int]:
    """labels.csv (header `file,label`) -> data file path -> digit, in the file's row order.

    `require_files=False` keeps the rows of files that are gone (serve's Keep page shows them, to repair).
    """
    text = read_user_text(path, "a CSV with header 'file,label'", encoding="utf-8-sig")
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows or [cell.strip() for cell in rows[0]] != ["file", "label"]:
        raise UserInputError(f"{path}: expected a header line 'file,label'")
    found: dict[Path, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise UserInputError(f"{path}:{line}: expected 2 values 'file,label', got {len(row)}")
        name, label = row[0].strip(), row[1].strip()
        data_file = path.parent / name
        if not _stays_inside(name, path.parent):
            raise UserInputError(
                f"{path}:{line}: {name!r} is outside {path.parent} (expected a file in the directory of {LABELS_FILE})"
            )
        if require_files and not data_file.is_file():
            raise UserInputError(f"{path}:{line}: {name!r} not found in {path.parent}")
        if require_files or data_file.exists():
            _check_suffix(data_file)
        if data_file in found:
            raise UserInputError(f"{path}:{line}: {name!r} is listed twice")
        found[data_file] = _parse_label(label, f"{path}:{line}")
    if not found:
        raise UserInputError(f"{path}: no rows after the header 'file,label'")
    return found


def _stays_inside(name: str, directory: Path) -> bool:
    """Whether a labels.csv entry names a file in its directory (or below it), links resolved: no '..', no root."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        return False
    return (directory / relative).resolve().is_relative_to(directory.resolve())


def _parse_label(text: str, where: str) -> int:
    """'0'-'9' only: str.isdigit and int() also take '²', '٣' and other scripts' digits."""
    if len(text) != 1 or text not in "0123456789":
        raise UserInputError(f"{where}: label must be one digit 0-9, got {text!r}")
    return int(text)


def parse_labels(text: str) -> list[int]:
    """The --labels flag: "3,8,9,5,4" -> [3, 8, 9, 5, 4]."""
    return [_parse_label(item.strip(), "--labels") for item in text.split(",")]


def label_from_name(path: Path) -> int | None:
    """The digit a file's name starts with ("3.csv", "8-sharpie.png"), if it starts with exactly one."""
    match = re.match(r"([0-9])(?!\d)", path.name)
    return int(match.group(1)) if match else None


def _labels_for(files: list[Path], listed: dict[Path, int], labels: str | None, paths: Sequence[Path]) -> np.ndarray:
    if labels is not None:
        given = parse_labels(labels)
        if len(given) != len(files):
            where = ", ".join(str(p) for p in paths)
            raise UserInputError(f"--labels: {len(given)} labels for {len(files)} files ({where})")
        return np.array(given, dtype=np.int64)
    found = []
    for f in files:
        label = listed.get(f.resolve())
        if label is None:
            label = label_from_name(f)
        if label is None:
            raise UserInputError(
                f"{f}: no label (pass --labels, list it in {LABELS_FILE} beside it, or start its name with the digit)"
            )
        found.append(label)
    return np.array(found, dtype=np.int64)


def read_digit_csv(path: Path) -> np.ndarray:
    """One digit in the paper's CSV format -> float32 (28, 28); integers or floats 0-255, no header."""
    text = read_user_text(path, _EXPECTED_CSV, encoding="utf-8-sig")
    rows = [_without_trailing_comma(line.split(",")) for line in text.splitlines() if line.strip()]
    if not rows:
        raise UserInputError(f"{path}: empty file (expected {_EXPECTED_CSV})")
    widths = {len(row) for row in rows}
    if not ((len(rows) == SIDE and widths == {SIDE}) or (len(rows) == 1 and widths == {SIDE * SIDE})):
        shape = f"{len(rows)} lines of {'/'.join(str(w) for w in sorted(widths))} values"
        raise UserInputError(f"{path}: expected {_EXPECTED_CSV}, got {shape}")
    values = np.empty((len(rows), len(rows[0])), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            where = f"{path}: line {r + 1}, value {c + 1}"
            try:
                value = float(cell)
            except ValueError:
                raise UserInputError(f"{where}: not a number: {cell.strip()!r}") from None
            if not math.isfinite(value):
                raise UserInputError(f"{where}: {cell.strip()!r} is not a finite number")
            if not 0 <= value <= PIXEL_MAX:
                raise UserInputError(f"{where}: {cell.strip()} is outside 0-255")
            values[r, c] = value
    return values.reshape(SIDE, SIDE).astype(np.float32)  # one line of 784 -> 28x28, row by row


def _without_trailing_comma(row: list[str]) -> list[str]:
    """'0,0,...,0,' (a spreadsheet export's trailing comma) has 28 values, not 29 with an empty last one."""
    return row[:-1] if len(row) > 1 and not row[-1].strip() else row


# --- writing ----------------------------------------------------------------------------------


def digitize_targets(images: Sequence[Path], out: Path, labelled: bool) -> list[Path]:
    """Every file `digitize` writes into `out`: NAME.csv and NAME.preview.png per image, and labels.csv if labelled.

    Refused, before anything is read, when two names coincide (ignoring case, as some file
    systems do), when an image's CSV would take the manifest's name (labels.png), or when a
    target is not safe to write (outputs.check_output_file: an image being read, a special
    file, a run's own file).
    """
    from mnist_dnn.runs.outputs import check_output_dir, check_output_file

    check_output_dir(out)
    made_by: dict[str, Path] = {}
    targets: list[Path] = []
    for image in images:
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserInputError(f"{image}: expected a .png, .jpg or .jpeg image")
        for target in (out / f"{image.stem}.csv", out / f"{image.stem}{PREVIEW_SUFFIX}"):
            if target.name.casefold() == LABELS_FILE:
                raise UserInputError(f"{image}: its CSV would be {target}, the name of the labels manifest; rename it")
            other = made_by.setdefault(target.name.casefold(), image)
            if other != image:
                raise UserInputError(f"{image}: its {target.name} would overwrite the one made from {other}")
            targets.append(check_output_file(target, (target.suffix,), reads=images, option="", overwrite=True))
    if labelled:  # overwrite=True: whether an existing file may be replaced is write_digitized's own --overwrite
        targets.append(check_output_file(out / LABELS_FILE, (".csv",), reads=images, option="", overwrite=True))
    return targets


def grid_to_csv(grid: np.ndarray) -> str:
    """uint8 (28, 28) -> the paper's CSV: 28 lines of 28 integers, no header."""
    return "".join(",".join(str(int(v)) for v in row) + "\n" for row in grid)


def grid_to_png(grid: np.ndarray, scale: int = 8) -> bytes:
    """A preview as the paper's figure 8 shows it (matshow, cmap='binary'): dark ink on white, enlarged."""
    from PIL import Image

    shown = (PIXEL_MAX - grid.astype(np.uint8)).repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(shown, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# --- digitizing -------------------------------------------------------------------------------


def write_digitized(
    images: Sequence[Path], out: Path, method: Method = "mnist", labels: Sequence[int] = (), overwrite: bool = False
) -> list[Path]:
    """Digitize photos into out/NAME.csv and NAME.preview.png (and labels.csv when every image has a label).

    `labels` are the digits in image order, else each file name's leading digit. Every
    image is read, and every file that would be replaced without `overwrite` refused,
    before anything is written. Returns the CSVs written, then labels.csv if written.
    """
    if labels and len(labels) != len(images):
        raise UserInputError(f"--label: {len(labels)} labels for {len(images)} images; give one per image")
    stems = [image.stem for image in images]
    found = list(labels) or [label_from_name(image) for image in images]
    labelled = all(label is not None for label in found)
    targets = digitize_targets(images, out, labelled)
    if not overwrite:
        for target in targets:
            if target.exists():
                raise UserInputError(f"{target}: already exists (pass --overwrite to replace it)")
    grids = [digitize_file(image, method) for image in images]  # every image read before any file is written
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, grid in zip(stems, grids, strict=True):
        atomic_write_text(out / f"{stem}.csv", grid_to_csv(grid))
        atomic_write_bytes(out / f"{stem}{PREVIEW_SUFFIX}", grid_to_png(grid))
        written.append(out / f"{stem}.csv")
    if labelled:
        rows = "".join(f"{stem}.csv,{label}\n" for stem, label in zip(stems, found, strict=True))
        atomic_write_text(out / LABELS_FILE, "file,label\n" + rows)
        written.append(out / LABELS_FILE)
    return written


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

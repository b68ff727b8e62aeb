"""Custom digits: the shipped CSVs, digitizing photos the tests draw themselves, and every bad input.

No model is trained here; tests/test_eval.py checks that a trained model reads these digits.
"""

import importlib.util
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from mnist_dnn.cli.app import main
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.handwriting import digits
from tests.conftest import REPO

CUSTOM = REPO / "custom_digits"
PAPER_LABELS = [3, 8, 9, 5, 4]  # section 5.2.2: Y_my_numbers = np.array([3, 8, 9, 5, 4])


def _load_make_pages():
    """custom_digits/make_pages.py is a script, not part of the package: load it by path."""
    spec = importlib.util.spec_from_file_location("custom_digits_make_pages", CUSTOM / "make_pages.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


make_pages = _load_make_pages()

SEVEN = [[(4, 10), (30, 8), (56, 6)], [(56, 6), (40, 45), (28, 97)]]  # the test's own strokes, a 60x100 frame
ZERO = [[(30, 3), (10, 20), (5, 50), (12, 82), (30, 97), (48, 82), (55, 50), (50, 20), (30, 3)]]


def draw(strokes, size=(300, 420), box=(40, 60, 200), dark_ink=True, seed=0, stray=None):
    """A photo of a digit: ink strokes on unevenly lit, grainy paper (or chalk on a dark board)."""
    coverage = make_pages.ink_coverage(strokes, size, box, pen=0.1, slant=0.05)
    return make_pages.photograph(coverage, np.random.default_rng(seed), stray=stray, dark_ink=dark_ink)


def save(array, path):
    Image.fromarray(array).save(path)
    return path


def ink_geometry(grid):
    """Centre of mass (row, column) and the bounding box's longer side of a 28x28 digit."""
    weights = grid.astype(np.float64)
    rows, cols = np.indices(grid.shape)
    centre = ((rows * weights).sum() / weights.sum(), (cols * weights).sum() / weights.sum())
    ink_rows, ink_cols = np.nonzero(grid)
    side = max(ink_rows.max() - ink_rows.min() + 1, ink_cols.max() - ink_cols.min() + 1)
    return centre, side


# --- the shipped digits ------------------------------------------------------------------------------


def test_shipped_digits_are_the_papers_five_in_its_csv_format():
    loaded = digits.load_digits([CUSTOM])
    assert [f.name for f in loaded.files] == ["3.csv", "8.csv", "9.csv", "5.csv", "4.csv"]
    assert loaded.labels.tolist() == PAPER_LABELS
    assert loaded.images.shape == (5, 28, 28)
    for path in loaded.files:
        lines = path.read_text().splitlines()
        assert len(lines) == 28 and all(len(line.split(",")) == 28 for line in lines)
        grid = pd.read_csv(path, header=None).to_numpy().reshape(28, 28)  # the paper's reader, section 5.2.2
        assert grid.dtype.kind == "i" and grid.min() == 0 and grid.max() == 255
        assert np.median(grid) == 0  # white paper is 0, ink is high


@pytest.mark.slow
def test_shipped_digits_regenerate_byte_identically(tmp_path):
    make_pages.make_pages(tmp_path / "source")
    pages = [str(tmp_path / "source" / f"{d}.png") for d in PAPER_LABELS]
    result = CliRunner().invoke(main, ["digitize", *pages, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    shipped = sorted(p.relative_to(CUSTOM) for p in CUSTOM.rglob("*") if p.suffix in (".csv", ".png"))
    assert len(shipped) == 5 * 3 + 1  # pages, CSVs, previews, labels.csv
    for relative in shipped:
        assert (tmp_path / relative).read_bytes() == (CUSTOM / relative).read_bytes(), relative


# --- digitize -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("dark ink, centred", {}),
        ("chalk on a dark board", {"dark_ink": False}),
        ("off-centre, small, wide crop", {"size": (520, 300), "box": (330, 30, 120)}),
        ("tall crop, stray dot", {"size": (240, 480), "box": (20, 250, 180), "stray": (200, 60, 6)}),
        ("another seed's grain", {"seed": 7}),
    ],
)
def test_mnist_method_centres_a_20px_digit_by_mass(name, kwargs):
    grid = digits.digitize(np.asarray(Image.fromarray(draw(SEVEN, **kwargs)).convert("L")) / 255.0)
    assert grid.shape == (28, 28) and grid.dtype == np.uint8
    (row, col), side = ink_geometry(grid)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1, name
    assert 19 <= side <= 21, name
    assert grid.max() == 255 and np.median(grid) == 0


def test_both_polarities_give_the_same_digit():
    dark = digits.digitize(np.asarray(Image.fromarray(draw(ZERO)).convert("L")) / 255.0)
    light = digits.digitize(np.asarray(Image.fromarray(draw(ZERO, dark_ink=False)).convert("L")) / 255.0)
    assert np.abs(dark.astype(int) - light.astype(int)).mean() < 12  # gray levels 0-255


def test_naive_method_keeps_the_papers_grey_paper_and_position():
    grid = digits.digitize(np.asarray(Image.fromarray(draw(SEVEN)).convert("L")) / 255.0, "naive")
    assert grid.shape == (28, 28)
    assert np.median(grid) > 10  # the paper's background is not 0


def test_digitize_reads_colour_gray_and_16_bit_files_alike(tmp_path):
    photo = draw(ZERO)
    rgb = save(photo, tmp_path / "0-rgb.png")
    gray = save(np.asarray(Image.fromarray(photo).convert("L")), tmp_path / "0-gray.jpg")
    wide = Image.fromarray((np.asarray(Image.open(gray), dtype=np.uint16) * 257).astype(np.uint16))
    wide.save(tmp_path / "0-16bit.png")
    grids = [digits.digitize_file(p) for p in (rgb, gray, tmp_path / "0-16bit.png")]
    for grid in grids[1:]:
        assert np.abs(grid.astype(int) - grids[0].astype(int)).mean() < 4


def test_digitize_command_writes_csv_preview_and_labels(cli_env):
    save(draw(SEVEN), cli_env / "7-photo.png")
    result = CliRunner().invoke(main, ["digitize", "7-photo.png", "--out", "mine"])
    assert result.exit_code == 0, result.output
    assert (cli_env / "mine" / "labels.csv").read_text() == "file,label\n7-photo.csv,7\n"
    assert Image.open(cli_env / "mine" / "7-photo.preview.png").size == (224, 224)
    loaded = digits.load_digits([cli_env / "mine"])
    assert loaded.labels.tolist() == [7] and loaded.images.shape == (1, 28, 28)
    again = CliRunner().invoke(main, ["digitize", "7-photo.png", "--out", "mine"])
    assert again.exit_code == 2 and "7-photo.csv: already exists (pass --overwrite" in again.stderr


def test_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    path = save(draw(SEVEN), tmp_path / "7.png")
    monkeypatch.setattr(digits, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserInputError, match=r"7\.png: 300x420 pixels is more than"):
        digits.digitize_file(path)


# --- reading ------------------------------------------------------------------------------------------


def test_csv_may_be_one_row_of_784_floats(tmp_path):
    grid = np.zeros((28, 28))
    grid[5:20, 10:14] = 200.5
    (tmp_path / "1.csv").write_text(",".join(str(v) for v in grid.ravel()) + "\n")
    loaded = digits.load_digits([tmp_path / "1.csv"])
    assert loaded.labels.tolist() == [1]
    np.testing.assert_array_equal(loaded.images[0], grid.astype(np.float32))


def test_labels_flag_wins_and_follows_file_order(tmp_path):
    for name in ("a.csv", "b.csv"):
        shutil.copy(CUSTOM / "3.csv", tmp_path / name)
    loaded = digits.load_digits([tmp_path / "b.csv", tmp_path / "a.csv"], "5,6")
    assert [f.name for f in loaded.files] == ["b.csv", "a.csv"] and loaded.labels.tolist() == [5, 6]


def test_a_directory_of_images_is_digitized(tmp_path):
    save(draw(SEVEN), tmp_path / "7.png")
    save(draw(ZERO, dark_ink=False), tmp_path / "0.jpg")
    loaded = digits.load_digits([tmp_path])
    assert loaded.labels.tolist() == [0, 7] and loaded.images.shape == (2, 28, 28)


def test_invert_flips_a_white_on_black_csv(tmp_path):
    grid = pd.read_csv(CUSTOM / "8.csv", header=None).to_numpy()
    (tmp_path / "8.csv").write_text(digits.grid_to_csv(255 - grid))
    loaded = digits.load_digits([tmp_path / "8.csv"], invert=True)
    np.testing.assert_array_equal(loaded.images[0], grid)


def _grid_text(value="0", rows=28, cols=28):
    """A CSV grid of `value`; on 0 (or 255) paper it holds a stroke (a '1'), so it reads as a digit."""
    cells = [[value] * cols for _ in range(rows)]
    for row in cells[4:24] if value in ("0", "255") and cols > 14 else []:
        row[14] = "255" if value == "0" else "0"
    return "\n".join(",".join(row) for row in cells) + "\n"


def _with_cell(text, row, col, value):
    lines = [line.split(",") for line in text.splitlines()]
    lines[row][col] = value
    return "\n".join(",".join(line) for line in lines) + "\n"


BAD_INPUTS = {  # name -> (files to create, CLI arguments after 'eval', message on stderr)
    "missing file": ({}, ["--custom-csv", "3.csv"], "3.csv: no such file or directory"),
    "empty file": ({"3.csv": ""}, ["--custom-csv", "3.csv"], "3.csv: empty file"),
    "wrong shape": ({"3.csv": _grid_text(rows=27)}, ["--custom-csv", "3.csv"], "got 27 lines of 28 values"),
    "ragged rows": ({"3.csv": _grid_text()[:-3] + "\n"}, ["--custom-csv", "3.csv"], "lines of 27/28 values"),
    "non-numeric": ({"3.csv": _with_cell(_grid_text(), 4, 2, "x")}, ["--custom-csv", "3.csv"], "line 5, value 3"),
    "NaN": ({"3.csv": _with_cell(_grid_text(), 0, 0, "nan")}, ["--custom-csv", "3.csv"], "'nan' is not a finite"),
    "above 255": ({"3.csv": _with_cell(_grid_text(), 1, 1, "256")}, ["--custom-csv", "3.csv"], "outside 0-255"),
    "negative": ({"3.csv": _with_cell(_grid_text(), 1, 1, "-1")}, ["--custom-csv", "3.csv"], "outside 0-255"),
    "inverted": ({"3.csv": _grid_text("255")}, ["--custom-csv", "3.csv"], "pass --invert to flip it"),
    "no label": ({"digit.csv": _grid_text()}, ["--custom-csv", "digit.csv"], "digit.csv: no label"),
    "bad --labels": ({"3.csv": _grid_text()}, ["--custom-csv", "3.csv", "--labels", "12"], "--labels: label must"),
    "label count": ({"3.csv": _grid_text()}, ["--custom-csv", "3.csv", "--labels", "3,8"], "2 labels for 1 files"),
    "labels.csv label": (
        {"d/a.csv": _grid_text(), "d/labels.csv": "file,label\na.csv,x\n"},
        ["--custom-csv", "d"],
        "labels.csv:2: label must be one digit 0-9, got 'x'",
    ),
    "labels.csv file": (
        {"d/a.csv": _grid_text(), "d/labels.csv": "file,label\nb.csv,3\n"},
        ["--custom-csv", "d"],
        "labels.csv:2: 'b.csv' not found",
    ),
    "not in labels.csv": (
        {"d/a.csv": _grid_text(), "d/b.csv": _grid_text(), "d/labels.csv": "file,label\na.csv,3\n"},
        ["--custom-csv", "d"],
        "b.csv: not listed in",
    ),
    "empty directory": ({"d/notes.txt": "hi"}, ["--custom-csv", "d"], "d: no .csv, .png or .jpg files here"),
    "not an image": ({"3.png": "not a png"}, ["--custom-csv", "3.png"], "3.png: not a readable PNG or JPEG"),
    "blank page": (
        {"3.png": np.full((50, 40, 3), 230, np.uint8)},
        ["--custom-csv", "3.png"],
        "3.png: no ink found",
    ),
    "no page image": ({"3.csv": _grid_text()}, ["--custom-csv", "3.csv", "--compare-methods"], "no page image"),
}


LABEL_CASES = ("no label", "bad --labels", "label count", "no page image")  # predict needs no labels


def _make_files(root, files):
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            save(content, root / name)
        else:
            (root / name).write_text(content)


@pytest.mark.parametrize(
    ("command", "case"),
    [("eval", case) for case in BAD_INPUTS] + [("predict", c) for c in BAD_INPUTS if c not in LABEL_CASES],
)
def test_bad_digits_are_one_line_exit_2_and_nothing_written(cli_env, command, case):
    files, args, message = BAD_INPUTS[case]
    _make_files(cli_env, files)
    # predict reads the digits before it looks at the model, so any existing path will do as --model
    args = [args[1], "--model", str(cli_env)] if command == "predict" else [*args, "--out", "out"]
    before = sorted(p.relative_to(cli_env) for p in cli_env.rglob("*"))
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(cli_env) for p in cli_env.rglob("*")) == before  # no out/, no runs/


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.png", "--out", "o"], "File 'nope.png' does not exist"),
        (["7.png", "--out", "o", "--label", "7", "--label", "1"], "--label: 2 labels for 1 images"),
        (["7.txt", "--out", "o"], "7.txt: expected a .png, .jpg or .jpeg image"),
    ],
)
def test_digitize_refuses_bad_input_and_writes_nothing(cli_env, args, message):
    save(draw(SEVEN), cli_env / "7.png")
    (cli_env / "7.txt").write_text("seven")
    result = CliRunner().invoke(main, ["digitize", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not (cli_env / "o").exists()


@pytest.mark.parametrize("command", ["digitize", "eval", "predict"])
def test_help_shows_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert f"mnist-dnn {command} " in result.output


def _flood_fill_mask(mask: np.ndarray) -> np.ndarray:
    """The 8-connected blob filter as a plain breadth-first search: the reference _digit_mask must match."""
    from collections import deque

    labels = np.zeros(mask.shape, dtype=np.int32)
    sizes = [0]
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        labels[start] = len(sizes)
        queue, size = deque([start]), 0
        while queue:
            r, c = queue.popleft()
            size += 1
            for rr in range(max(r - 1, 0), min(r + 2, mask.shape[0])):
                for cc in range(max(c - 1, 0), min(c + 2, mask.shape[1])):
                    if mask[rr, cc] and not labels[rr, cc]:
                        labels[rr, cc] = len(sizes)
                        queue.append((rr, cc))
        sizes.append(size)
    big = np.array(sizes) >= digits.MIN_PART * max(sizes)
    big[0] = False
    return big[labels]


def test_digit_mask_keeps_the_same_blobs_as_a_flood_fill():
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((rng.integers(1, 60), rng.integers(1, 60))) < rng.uniform(0.0, 0.5)
        np.testing.assert_array_equal(digits._digit_mask(mask), _flood_fill_mask(mask))


def test_grow_is_a_square_dilation():
    rng = np.random.default_rng(1)
    for _ in range(100):
        mask = rng.random((rng.integers(5, 50), rng.integers(5, 50))) < 0.05
        padded = np.pad(mask, 2)
        square = np.zeros_like(padded)
        for dr in range(-2, 3):
            for dc in range(-2, 3):
                square |= np.roll(np.roll(padded, dr, axis=0), dc, axis=1)
        np.testing.assert_array_equal(digits._grow(mask, 2), square[2:-2, 2:-2])


# --- hostile labels: entries outside their directory, digits of other scripts -----------------------------------


@pytest.mark.parametrize("entry", ["../x.csv", "sub/../../x.csv", "{outside}", "link/x.csv"])
def test_labels_csv_entries_never_leave_their_directory(tmp_path, entry):
    (tmp_path / "x.csv").write_text(_grid_text())
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "link").symlink_to(tmp_path)  # a link inside that leads out
    entry = entry.format(outside=tmp_path / "x.csv")
    (tmp_path / "d" / "labels.csv").write_text(f"file,label\n{entry},3\n")
    with pytest.raises(UserInputError, match=rf"labels.csv:2: '{entry}' is outside {tmp_path / 'd'} \(expected a"):
        digits.load_digits([tmp_path / "d"])
    (tmp_path / "d" / "sub" / "y.csv").write_text(_grid_text())
    (tmp_path / "d" / "labels.csv").write_text("file,label\nsub/y.csv,3\n")
    assert digits.load_digits([tmp_path / "d"]).labels.tolist() == [3]  # below it is inside


@pytest.mark.parametrize("label", ["²", "٣", "३", "３", "𝟑"])
def test_labels_are_the_ascii_digits_0_to_9_only(tmp_path, label):
    (tmp_path / "a.csv").write_text(_grid_text())
    (tmp_path / "labels.csv").write_text(f"file,label\na.csv,{label}\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=f"labels.csv:2: label must be one digit 0-9, got '{label}'"):
        digits.load_digits([tmp_path])
    with pytest.raises(UserInputError, match=f"--labels: label must be one digit 0-9, got '{label}'"):
        digits.load_digits([tmp_path / "a.csv"], labels=label)
    (tmp_path / "labels.csv").unlink()
    (tmp_path / f"{label}.csv").write_text(_grid_text())
    assert digits.label_from_name(tmp_path / f"{label}.csv") is None


# --- pages and texts as people make them: blank pages, spreadsheet exports, faint digits ---------------------------


@pytest.mark.parametrize("shade", [0, 255, 128])
@pytest.mark.parametrize("method", ["mnist", "naive"])
def test_a_page_with_no_distinguishable_ink_is_refused_whatever_its_shade(cli_env, shade, method):
    page = np.full((60, 40, 3), shade, np.uint8)
    page[30, 20] = min(255, shade + 3)  # a speck of sensor noise is not ink
    save(page, cli_env / "3.png")
    message = f"3.png: no ink found: the whole page is one shade ({shade} of 255)"
    with pytest.raises(UserInputError, match=re.escape(message)):
        digits.load_digits([cli_env / "3.png"], method=method)
    result = CliRunner().invoke(main, ["digitize", "3.png", "--out", "o", "--method", method])
    assert result.exit_code == 2 and message in result.stderr and not (cli_env / "o").exists()
    (cli_env / "solid.csv").write_text(_grid_text("255")[:0] + "\n".join([",".join(["255"] * 28)] * 28))
    with pytest.raises(UserInputError, match="solid.csv: every value is 255: no ink"):
        digits.load_digits([cli_env / "solid.csv"], require_labels=False, invert=True)


def test_spreadsheet_exports_read_as_digits_trailing_commas_and_utf16(tmp_path):
    expected = digits.read_digit_csv(_write(tmp_path / "plain.csv", _grid_text()))
    commas = "".join(line + ",\n" for line in _grid_text().splitlines())
    assert np.array_equal(digits.read_digit_csv(_write(tmp_path / "commas.csv", commas)), expected)
    for encoding in ("utf-16", "utf-16-be", "utf-16-le"):
        bom = "\ufeff" if encoding != "utf-16" else ""
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes((bom + _grid_text()).encode(encoding))
        (tmp_path / "labels.csv").write_bytes(f"{bom}file,label\n{path.name},1\n".encode(encoding))
        assert np.array_equal(digits.read_digit_csv(path), expected)
        assert digits.read_labels_csv(tmp_path / "labels.csv") == {path: 1}
    (tmp_path / "nobom.csv").write_bytes(_grid_text().encode("utf-16-le"))  # no byte-order mark
    assert np.array_equal(digits.read_digit_csv(tmp_path / "nobom.csv"), expected)
    (tmp_path / "nobom.csv").write_bytes(_grid_text().encode("utf-16-le")[:-1])  # and cut short
    with pytest.raises(UserInputError, match="nobom.csv: not readable as UTF-16 .save it as UTF-8"):
        digits.read_digit_csv(tmp_path / "nobom.csv")


def _write(path, text):
    path.write_text(text)
    return path


def test_images_beside_csv_digits_are_named_in_a_warning(tmp_path, caplog):
    _write(tmp_path / "3.csv", _grid_text())
    save(draw(SEVEN), tmp_path / "7.png")
    save(draw(SEVEN), tmp_path / "3.preview.png")  # digitize's own picture of 3.csv: rightly skipped, silently
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        assert [f.name for f in digits.load_digits([tmp_path]).files] == ["3.csv"]
    ignored = "reading its CSV digits only; 1 image(s) beside them ignored (7.png); name them to read them"
    assert caplog.messages == [f"Warning: {tmp_path}: {ignored}"]
    caplog.clear()
    _write(tmp_path / "labels.csv", "file,label\n3.csv,3\n")
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        digits.load_digits([tmp_path])
    assert "1 image(s) beside them ignored (7.png)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        digits.load_digits([tmp_path / "3.csv", tmp_path / "7.png"])  # named: read, no warning
    assert caplog.messages == []


def test_a_faint_or_0_1_scaled_digit_is_read_with_a_warning(tmp_path, caplog):
    scaled = "\n".join(",".join("1" if c == 14 and 4 <= r < 24 else "0" for c in range(28)) for r in range(28))
    faint = _grid_text().replace("255", "40")
    for name, text, message in (
        ("scaled.csv", scaled, "every value is between 0 and 1; expected 0-255 (scaled 0-1? multiply by 255)"),
        ("faint.csv", faint, "nearly blank (ink of 3.1 full pixels; MNIST's digits have 20 or more)"),
        ("blank.csv", _grid_text()[:0] + "\n".join([",".join(["0"] * 28)] * 28), "nearly blank (ink of 0.0 full"),
    ):
        caplog.clear()
        with caplog.at_level("WARNING", logger="mnist_dnn"):
            digits.load_digits([_write(tmp_path / name, text)], require_labels=False)
        assert len(caplog.messages) == 1 and f"{name}: {message}" in caplog.messages[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        digits.load_digits([_write(tmp_path / "bold.csv", _grid_text())], require_labels=False)
    assert caplog.messages == []


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["labels.png"], "labels.png: its CSV would be o/labels.csv, the name of the labels manifest; rename it"),
        (["3.png", "Labels.jpg"], "its CSV would be o/Labels.csv, the name of the labels manifest"),
        (["a/7.png", "b/7.jpg"], "b/7.jpg: its 7.csv would overwrite the one made from a/7.png"),
        (["x.png", "X.png"], "X.png: its X.csv would overwrite the one made from x.png"),
        (["o/7.png", "o/7.preview.png"], "o/7.preview.png: is o/7.preview.png, which this command reads"),
        (["history.png"], "o/history.csv: history.csv is one of a run directory's own files"),
    ],
)
def test_digitize_output_names_never_collide_with_the_manifest_its_inputs_or_each_other(cli_env, names, message):
    for name in names:
        (cli_env / name).parent.mkdir(exist_ok=True)
        save(draw(SEVEN), cli_env / name)
    before = {p: p.read_bytes() for p in cli_env.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["digitize", *names, "--out", "o", "--overwrite"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in cli_env.rglob("*") if p.is_file()} == before

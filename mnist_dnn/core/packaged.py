"""What ships inside the package: the worked configs and the paper's five digits, reachable by name.

    config_arg("handwriting")       # -> .../mnist_dnn/builtin/configs/handwriting.toml
    digits_arg("paper")             # -> .../mnist_dnn/builtin/digits
    config_list()                   # [("adagrad", "4.8", "per-weight step sizes ..."), ...]

The repository keeps one copy of each: `configs/` and `custom_digits/` at its top. The package
directory `mnist_dnn/builtin/` holds two symbolic links to them, so an editable install reads the
clone's files as they are, and a wheel build copies the files the links lead to (package-data in
pyproject.toml); tests/test_packaged.py checks both. A path that exists always wins over a name,
so `--config paper` in a directory holding a file `paper` reads that file.
"""

from __future__ import annotations

import errno
import importlib.resources
import os
import re
import shutil
from pathlib import Path

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.errors import UserInputError

PAPER_DIGITS = "paper"  # `--custom-csv paper`: section 5.2.2's five digits, 3 8 9 5 4
# What `digits copy` writes: the CSVs, labels.csv and the previews; the package also holds the page images
# in digits/source/ (1.3 MB), which only `eval --compare-methods` reads.
DIGIT_PATTERNS = ("*.csv", "*.preview.png")
# The first line of every worked config: "# section 4.6 | plain stochastic gradient descent".
_HEADER = re.compile(r"^# section (?P<section>[^|]+?) \| (?P<shows>.+)$")


def builtin_dir() -> Path:
    """mnist_dnn/builtin, wherever the package is (a clone, an editable install, a wheel)."""
    return Path(str(importlib.resources.files("mnist_dnn") / "builtin"))


def configs_dir() -> Path:
    return builtin_dir() / "configs"


def digits_dir() -> Path:
    return builtin_dir() / "digits"


def config_names() -> list[str]:
    """The built-in configs' names (their file names without .toml), sorted."""
    return sorted(path.stem for path in configs_dir().glob("*.toml"))


def config_arg(text: str) -> Path:
    """A --config value as a file: an existing path wins, else a built-in config's name."""
    path = Path(text)
    if path.exists():
        return path
    if text in config_names():
        return configs_dir() / f"{text}.toml"
    raise UserInputError(
        f"{text}: no such config file, and no built-in config of that name "
        f"(built-in: {', '.join(config_names())}; see 'mnist-dnn config list')"
    )


def config_list() -> list[tuple[str, str, str]]:
    """(name, section of the paper, what it shows) of each built-in config, read from its first line."""
    rows = []
    for name in config_names():
        first = (configs_dir() / f"{name}.toml").read_text(encoding="utf-8").partition("\n")[0]
        match = _HEADER.match(first)
        if match is None:  # a packaging fault, not the user's: tests/test_packaged.py guards every file
            raise ValueError(f"built-in config {name}: first line is not '# section S | what it shows'")
        rows.append((name, match["section"], match["shows"]))
    return rows


def digits_arg(text: str) -> Path:
    """A digit directory or file as given: an existing path wins, else 'paper' names the packaged digits."""
    path = Path(text)
    if text == PAPER_DIGITS and not path.exists():
        return digits_dir()
    return path


def digit_files() -> list[Path]:
    """The packaged digit set's files, sorted by name."""
    return sorted({path for pattern in DIGIT_PATTERNS for path in digits_dir().glob(pattern)})


def copy_digits(name: str, dest: Path, overwrite: bool = False) -> list[Path]:
    """Write the digit set `name` into `dest` for a user to edit; returns the files written.

    An existing non-empty `dest` is refused unless `overwrite`, which replaces only files of the
    same names. Each file is written atomically, and into a fresh `dest` through a temporary
    sibling directory renamed into place, so an interrupted copy leaves no half-filled directory.
    """
    if name != PAPER_DIGITS:
        raise UserInputError(f"{name}: unknown digit set (built-in: {PAPER_DIGITS})")
    if dest.exists() and not dest.is_dir():
        raise UserInputError(f"{dest}: is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise UserInputError(f"{dest}: exists and is not empty (--overwrite replaces files of the same names)")
    files = digit_files()
    if dest.is_dir():
        for source in files:
            atomic_write_bytes(dest / source.name, source.read_bytes())
        return [dest / source.name for source in files]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.{os.getpid()}.partial"  # its own: two copies at once never share one
    staging.mkdir()
    try:
        for source in files:
            atomic_write_bytes(staging / source.name, source.read_bytes())
        try:
            staging.rename(dest)  # onto a directory only while it is empty: another copy's is never merged into
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
            raise UserInputError(f"{dest}: appeared while the digits were copied; nothing was written") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return [dest / source.name for source in files]

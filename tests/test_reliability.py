"""The reliability promises: interrupts lose nothing, resume gives the same result, no input crashes the tool.

The fuzz tests run a fixed number of derandomized examples each, so CI time is bounded
and a failure reproduces.
"""

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_dnn.cli.app import main
from mnist_dnn.core.config import Config, config_from_dict, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import _parse_idx
from mnist_dnn.data.preprocess import load_statistics
from mnist_dnn.handwriting.digitize import digitize_file
from mnist_dnn.handwriting.digits import read_digit_csv
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from mnist_dnn.training.checkpoint import read_checkpoint
from mnist_dnn.training.load import load_trained
from tests.conftest import REPO, mnist_dnn_command
from tests.test_cli import _without_timing

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _either_valid_or_user_error(read, *args):
    """The contract of every reader of user files: a result, or UserInputError - never another exception."""
    try:
        return read(*args)
    except UserInputError as exc:
        assert "\n" not in str(exc), "a user error is one line"
        return None


# --- fuzz: CSV digits, configs, images, history files, IDX, checkpoints ---------------------------------------------

CSV_CELLS = st.one_of(
    st.integers(-300, 600).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "x", "1e3", "0x10", "255.0", "nan", "-0", "\x00"]),
)


@FUZZ
@given(rows=st.lists(st.lists(CSV_CELLS, min_size=1, max_size=30), max_size=30))
def test_fuzz_digit_csv_from_cells(tmp_path, rows):
    path = tmp_path / "digit.csv"
    path.write_text("\n".join(",".join(row) for row in rows))
    grid = _either_valid_or_user_error(read_digit_csv, path)
    if grid is not None:
        assert grid.shape == (28, 28) and grid.dtype == np.float32
        assert grid.min() >= 0 and grid.max() <= 255


@FUZZ
@given(content=st.binary(max_size=3000))
def test_fuzz_digit_csv_from_bytes(tmp_path, content):
    path = tmp_path / "digit.csv"
    path.write_bytes(content)
    _either_valid_or_user_error(read_digit_csv, path)


def test_fuzz_examples_include_a_valid_digit(tmp_path):
    """The fuzzed reader is not refusing everything: a well-formed grid comes back as written."""
    path = tmp_path / "digit.csv"
    path.write_text("\n".join(",".join(["7"] * 28) for _ in range(28)))
    assert read_digit_csv(path)[0, 0] == 7


TOML_VALUES = st.recursive(
    st.one_of(
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True),
        st.booleans(),
        st.sampled_from(["relu", "adam", "sgd", "scale", "test", "fused", "jax", "mse", "", "x"]),
    ),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=6,
)
SECTIONS = {f.name: [k.name for k in dataclasses.fields(f.default_factory)] for f in dataclasses.fields(Config)}


@FUZZ
@given(
    raw=st.dictionaries(
        st.sampled_from([*SECTIONS, "extra"]),
        st.one_of(
            st.dictionaries(st.sampled_from([k for keys in SECTIONS.values() for k in keys] + ["typo"]), TOML_VALUES),
            TOML_VALUES,
        ),
        max_size=4,
    )
)
def test_fuzz_config_values(raw):
    cfg = _either_valid_or_user_error(config_from_dict, raw)
    assert cfg is None or isinstance(cfg, Config)


@FUZZ
@given(text=st.text(max_size=400))
def test_fuzz_config_text(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    _either_valid_or_user_error(load_config, path)


def _png(array: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


@settings(FUZZ, max_examples=60)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["L", "RGB", "RGBA"]),
    method=st.sampled_from(["mnist", "naive"]),
)
def test_fuzz_images_of_any_size_and_content(tmp_path, height, width, seed, mode, method):
    rng = np.random.default_rng(seed)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    pixels = rng.integers(0, 256, (height, width, *channels), dtype=np.uint8)
    if seed % 3 == 0:  # also blank and nearly blank pages
        pixels[...] = 255
        pixels[height // 2, width // 2] = seed % 256
    path = tmp_path / "photo.png"
    path.write_bytes(_png(pixels, mode))
    grid = _either_valid_or_user_error(digitize_file, path, method)
    if grid is not None:
        assert grid.shape == (28, 28) and grid.dtype == np.uint8


@settings(FUZZ, max_examples=100)
@given(content=st.binary(max_size=2000), suffix=st.sampled_from([".png", ".jpg"]))
def test_fuzz_image_bytes(tmp_path, content, suffix):
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + content if suffix == ".png" else b"\xff\xd8\xff" + content)
    _either_valid_or_user_error(digitize_file, path, "mnist")


def test_an_image_too_large_is_refused_from_its_header(tmp_path):
    """A 20000 x 20000 PNG is a few kB on disk and 400 MB decoded: it is refused before decoding."""
    import zlib

    width = height = 20_000
    raw = zlib.compress(b"\x00" * (width + 1) * 10)  # only the start of the data: never decoded anyway
    header = b"\x89PNG\r\n\x1a\n"

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path = tmp_path / "huge.png"
    path.write_bytes(header + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    with pytest.raises(UserInputError, match=r"huge.png: more than the 80 megapixels accepted; shrink it first"):
        digitize_file(path)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list('epoch,los1.2\n-e+x"\r\x00 ')), max_size=300))
def test_fuzz_history_csv(tmp_path, text):
    path = tmp_path / "history.csv"
    path.write_text(text)
    _either_valid_or_user_error(records.read_history, path)


@FUZZ
@given(
    cells=st.lists(
        st.lists(
            st.sampled_from(["1", "2", "0", "-1", "inf", "nan", "", "1e300", "2.5", "1e9", "x"]), min_size=3, max_size=3
        ),
        max_size=5,
    )
)
def test_fuzz_history_numbers(tmp_path, cells):
    """Whatever numbers a history holds, plot's reader gives counting epochs or one line."""
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,accuracy\n" + "".join(",".join(row) + "\n" for row in cells))
    history = _either_valid_or_user_error(records.read_history, path)
    if history is not None:
        assert all(e == int(e) and 1 <= e <= records.MAX_COUNT for e in history["epoch"])


@FUZZ
@given(content=st.binary(max_size=64), header=st.sampled_from([b"", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03"]))
def test_fuzz_idx(content, header):
    array = _either_valid_or_user_error(_parse_idx, header + content, "fuzz.idx")
    assert array is None or array.dtype == np.uint8


@settings(FUZZ, max_examples=60)
@given(content=st.binary(max_size=600))
def test_fuzz_checkpoint_and_statistics_files(tmp_path, content):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04" + content)
    _either_valid_or_user_error(read_checkpoint, tmp_path / "checkpoint.npz")
    _either_valid_or_user_error(load_statistics, tmp_path / "checkpoint.npz")


def test_a_checkpoint_with_a_tampered_meta_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps({"format_version": 1, "epoch": 2, "history": []})))
    (tmp_path / "checkpoint.npz").write_bytes(buffer.getvalue())
    with pytest.raises(UserInputError, match="damaged checkpoint metadata"):
        read_checkpoint(tmp_path / "checkpoint.npz")
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([object()], dtype=object))
    (tmp_path / "checkpoint.npz").write_bytes(buffer.getvalue())
    with pytest.raises(UserInputError, match="not a readable checkpoint"):  # pickles are refused
        read_checkpoint(tmp_path / "checkpoint.npz")


# --- safe loading: models, run directories ---------------------------------------------------------------------------


def _save_model(path, layers):
    import keras

    model = keras.Sequential([keras.Input((784,)), *layers])
    model.save(path)
    return path


@pytest.mark.slow
def test_a_model_with_python_code_is_refused_not_run(tmp_path):
    import keras

    marker = tmp_path / "ran"
    layer = keras.layers.Lambda(lambda x: x * 2)  # what a hostile file could carry: any Python
    path = _save_model(tmp_path / "lambda.keras", [layer, keras.layers.Dense(10, activation="softmax")])
    digit = tmp_path / "3.csv"
    digit.write_text("\n".join(",".join(["0"] * 28) for _ in range(28)))
    result = CliRunner().invoke(main, ["predict", str(digit), "--model", str(path)])
    assert result.exit_code == 2
    assert "lambda.keras: refused: it holds Python code (a Lambda layer)" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_a_model_for_another_task_is_refused(tmp_path):
    import keras

    path = _save_model(tmp_path / "three.keras", [keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(UserInputError, match=r"maps \(784,\) inputs to 3 classes; mnist-dnn needs 784 pixels in"):
        load_trained(path)
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserInputError, match="junk.keras: not a readable Keras model"):
        load_trained(tmp_path / "junk.keras")


@pytest.mark.slow
def test_a_run_directory_from_a_newer_version_is_refused(tmp_path):
    import keras

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _save_model(run_dir / "model.keras", [keras.layers.Dense(10, activation="softmax")])
    records.write_json(run_dir / "metrics.json", {"format_version": 99, "test_accuracy": 0.9})
    with pytest.raises(UserInputError, match="written by a newer mnist-dnn .format 99"):
        load_trained(run_dir)
    lifecycle.write_status(run_dir, "interrupted")
    with pytest.raises(UserInputError, match="newer mnist-dnn"):
        runs.resumable_config(run_dir)


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    def resume(directory):
        return CliRunner().invoke(main, ["train", "--resume", str(directory)])

    (tmp_path / "empty").mkdir()
    result = resume(tmp_path / "empty")
    assert result.exit_code == 2 and "no status.json here" in result.stderr
    (tmp_path / "done").mkdir()
    lifecycle.write_status(tmp_path / "done", "complete", kind="train")
    assert "this run is complete; there is nothing to resume" in resume(tmp_path / "done").stderr
    (tmp_path / "cut").mkdir()
    lifecycle.write_status(tmp_path / "cut", "interrupted", kind="train")
    assert "config.toml: missing" in resume(tmp_path / "cut").stderr
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "cut"), "--epochs", "3"])
    assert result.exit_code == 2 and "--epochs: only applies to a new run, not with --resume" in result.stderr


_HOLD_LOCK = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from mnist_dnn.runs.directory import run_lock\n"
    "with run_lock(Path(sys.argv[1])):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(120)\n"
)


def _locked_by_another_process(directory):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert holder.stdout.readline() == "locked\n"
    return holder


@pytest.mark.slow
def test_a_run_is_trained_by_one_process_at_a_time_and_a_stale_pid_blocks_nothing(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")
    holder = _locked_by_another_process(run_dir)
    try:
        lifecycle.write_status(run_dir, "running", kind="train", pid=holder.pid, host=lifecycle.this_process()["host"])
        with pytest.raises(UserInputError, match=f"run: process {holder.pid} is still working in it; stop it first"):
            runs.resumable_config(run_dir)
        with pytest.raises(UserInputError, match="still working in it"):  # the library's own entry point too
            from tests.test_experiment import _config

            train_and_evaluate_directly(_config(), run_dir)
        assert lifecycle.read_status(run_dir)["pid"] == holder.pid  # nothing written by the refused one
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.toml", "status.json"]  # the lock left no file
    # A pid that now belongs to an unrelated live process (here: this test) does not block: the lock is free.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lifecycle.write_status(run_dir, "running", kind="train", pid=sleeper.pid, host=lifecycle.this_process()["host"])
        assert runs.resumable_config(run_dir) == Config()
    finally:
        sleeper.kill()
        sleeper.wait()


def train_and_evaluate_directly(cfg, run_dir):
    from mnist_dnn.data.mnist import Dataset
    from mnist_dnn.experiments.experiment import train_and_evaluate
    from tests.test_train import _separable_digits

    x, y = _separable_digits(128, 0)
    return train_and_evaluate(cfg, Dataset(x, y, x, y, "bands", "test", Path("."), {}), run_dir, 0)


@pytest.mark.slow
@pytest.mark.mnist
def test_two_resumes_of_one_run_started_together_train_it_once(tmp_path, mnist):
    """Started within a fraction of a second of each other: one finishes the run, the other is refused in one line."""
    from mnist_dnn.experiments.experiment import train_and_evaluate

    cfg = load_config(None, {"train.epochs": 2, "data.train_limit": 1000, "train.backend": "jax"})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, engine="fused"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def stop_after_1(epoch, metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(cfg, mnist, run_dir, 0, (stop_after_1,))
    command = [*mnist_dnn_command(), "train", "--resume", str(run_dir), "-q", "--no-plots"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=600), p.stderr.read()) for p in both)
    assert [code for code, _ in results] == [0, 2], results
    assert results[1][1].startswith("Error: ") and "is still working in it; stop it first" in results[1][1]
    assert len(results[1][1].strip().splitlines()) == 1
    assert lifecycle.read_status(run_dir)["status"] == "complete"
    assert records.read_history(run_dir / runs.HISTORY_FILE)["epoch"] == [1.0, 2.0]


@pytest.mark.slow
@pytest.mark.mnist
def test_an_unwritable_out_is_one_line_and_exit_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _immutable(locked):
        pytest.skip("cannot make a directory unwritable here (root without chattr)")
    try:
        result = CliRunner().invoke(main, ["train", "--out", str(locked / "run"), "--epochs", "1"])
    finally:
        _writable(locked)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {locked / 'run'}: cannot write (")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# --- signals ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_signal_inside_a_deferred_block_waits_for_it_and_a_second_one_exits_at_once():
    code = (
        "import os, signal, sys, time\n"
        "from mnist_dnn.core.interrupts import deferred, graceful_interrupts\n"
        "with graceful_interrupts():\n"
        "    try:\n"
        "        with deferred():\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        "            print('block finished', flush=True)\n"
        "    except KeyboardInterrupt:\n"
        "        print('then interrupted', flush=True)\n"
        "    with deferred():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(30)\n"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.splitlines() == ["block finished", "then interrupted"]
    assert out.returncode == 130 and "Interrupted again: exiting at once." in out.stderr
    assert time.perf_counter() - started < 20


def _immutable(directory: Path) -> bool:
    """Make a directory refuse new files, even to root (chattr +i), or by its mode for other users."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0


def _writable(directory: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
    directory.chmod(0o755)


@pytest.mark.slow
def test_an_output_directory_made_unwritable_mid_run_ends_in_one_line_and_status_failed(tmp_path):
    from mnist_dnn.data.mnist import Dataset
    from mnist_dnn.experiments.experiment import train_and_evaluate
    from tests.test_experiment import _config
    from tests.test_train import _separable_digits

    x_train, y_train = _separable_digits(512, 0)
    x_test, y_test = _separable_digits(128, 1)
    dataset = Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    locked = []

    def lock_after_first_epoch(epoch, metrics):
        if epoch == 1:
            locked.append(_immutable(run_dir))

    try:
        with pytest.raises(
            UserInputError, match=r"run/steps.csv: cannot write \((Operation not permitted|Permission denied)"
        ):
            train_and_evaluate(_config(), dataset, run_dir, 0, (lock_after_first_epoch,))
    except BaseException:
        if locked == [False]:
            pytest.skip("cannot make a directory unwritable here (root without chattr)")
        raise
    finally:
        _writable(run_dir)
    status = lifecycle.read_status(run_dir)
    assert status["status"] == "failed"
    assert len(records.read_history(run_dir / runs.HISTORY_FILE)["epoch"]) == 1


# --- interrupt and resume, as a user does it ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
def test_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Real MNIST, the paper's config, 3 epochs: SIGINT during epoch 2, `train --resume`, compare."""
    import keras

    command = [*mnist_dnn_command(), "train", "--epochs", "3", "--backend", "jax", "--no-plots"]
    straight = subprocess.run([*command, "--out", str(tmp_path / "straight"), "-q"], capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr

    cut = tmp_path / "cut"
    process = subprocess.Popen(
        [*command, "--out", str(cut), "--log-every-epoch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in process.stdout:
        if line.startswith("Epoch 1/3"):  # printed after epoch 1's checkpoint: the signal lands in epoch 2
            break
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    saved = records.read_history(cut / runs.HISTORY_FILE)["epoch"]
    assert 1 <= len(saved) < 3  # a fast machine may finish epoch 2 before Python sees the signal
    assert f"saved in {cut}" in output and f"Resume: mnist-dnn train --resume {cut}" in output
    assert lifecycle.read_status(cut)["status"] == "interrupted"

    resumed = subprocess.run(
        [*mnist_dnn_command(), "train", "--resume", str(cut), "-q"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Test accuracy:" in resumed.stdout
    assert lifecycle.read_status(cut)["status"] == "complete"
    assert _without_timing(tmp_path / "straight") == _without_timing(cut)
    weights = [keras.saving.load_model(d / "model.keras").get_weights() for d in (tmp_path / "straight", cut)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


_TENSORFLOW_RUN = """
import sys
from pathlib import Path
from mnist_dnn.core.backend import activate_backend
activate_backend("tensorflow")
from mnist_dnn.core.config import load_config
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.experiments.experiment import train_and_evaluate
from tests.test_train import _separable_digits

x_train, y_train = _separable_digits(1024, 0)
x_test, y_test = _separable_digits(256, 1)
dataset = Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {})
cfg = load_config(None, {"train.epochs": 3, "train.backend": "tensorflow", "train.engine": "fit"})
run_dir, how = Path(sys.argv[1]), sys.argv[2]
run_dir.mkdir(exist_ok=True)

def stop_after_2(epoch, metrics):
    if epoch == 2:
        raise KeyboardInterrupt

try:
    train_and_evaluate(cfg, dataset, run_dir, 0, (stop_after_2,) if how == "cut" else (), resume=how == "resume")
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
def test_resume_is_exact_on_tensorflow_too(tmp_path):
    """Keras' own shuffle on tensorflow lives in op state no checkpoint holds; ours comes from (seed, epoch)."""
    import keras

    def run(directory, how):
        return subprocess.run(
            [sys.executable, "-c", _TENSORFLOW_RUN, str(directory), how], capture_output=True, text=True, cwd=REPO
        )

    assert run(tmp_path / "straight", "straight").returncode == 0
    assert run(tmp_path / "cut", "cut").returncode == 130
    assert lifecycle.read_status(tmp_path / "cut")["status"] == "interrupted"
    resumed = run(tmp_path / "cut", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["versions"].get("tensorflow")
    assert _without_timing(tmp_path / "straight") == _without_timing(tmp_path / "cut")
    weights = [
        keras.saving.load_model(d / "model.keras").get_weights() for d in (tmp_path / "straight", tmp_path / "cut")
    ]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


# --- fuzz: label texts and labels.csv entries -----------------------------------------------------------------------

LABEL_TEXTS = st.one_of(st.text(max_size=3), st.sampled_from(["3", " 7 ", "²", "٣", "10", "-1", "3.0", "", "９"]))
ENTRY_NAMES = st.one_of(
    st.sampled_from(["a.csv", "../a.csv", "sub/b.csv", "sub/../a.csv", "/etc/passwd", "./a.csv", "a.CSV", "c.csv"]),
    st.text(alphabet=st.sampled_from(list("ab./\\~ é")), max_size=12),
)


@FUZZ
@given(rows=st.lists(st.tuples(ENTRY_NAMES, LABEL_TEXTS), max_size=4), flag=st.one_of(st.none(), LABEL_TEXTS))
def test_fuzz_labels_csv_and_label_texts(tmp_path_factory, rows, flag):
    """Any labels.csv or --labels text: labels 0-9 for files inside the directory, or one line."""
    from mnist_dnn.handwriting.digits import load_digits, parse_labels

    root = tmp_path_factory.mktemp("labels")
    (root / "d" / "sub").mkdir(parents=True)
    grid = "\n".join(",".join(["0"] * 28) for _ in range(28))
    for name in ("d/a.csv", "d/sub/b.csv", "a.csv"):
        (root / name).write_text(grid)
    lines = ["file,label", *(f'"{name}",{label.replace(",", "")}' for name, label in rows)]
    (root / "d" / "labels.csv").write_text("\n".join(lines), encoding="utf-8")
    digits = _either_valid_or_user_error(load_digits, [root / "d"], flag)
    if digits is not None:
        assert all(f.resolve().is_relative_to((root / "d").resolve()) for f in digits.files)
        assert set(digits.labels.tolist()) <= set(range(10))
    parsed = _either_valid_or_user_error(parse_labels, flag or "")
    assert parsed is None or all(label in range(10) for label in parsed)


# --- bounded decompression ------------------------------------------------------------------------------------------


def test_compressed_inputs_expand_no_further_than_they_declare(tmp_path):
    """A small .gz/.npz/.keras that expands to gigabytes is refused by its header, having read little of it."""
    import gzip
    import tracemalloc
    import zipfile

    from mnist_dnn.data.mnist import MAX_IDX_BYTES, read_idx

    zeros = b"\x00" * 2**24

    def gz_bomb(path, header, chunks):
        with gzip.open(path, "wb", compresslevel=1) as out:
            out.write(header)
            for _ in range(chunks):
                out.write(zeros)

    images = b"\x00\x00\x08\x03" + np.array([10, 28, 28], ">u4").tobytes()
    gz_bomb(tmp_path / "small-header.gz", images, 16)  # 256 MiB behind a header that declares 7,840 bytes
    tracemalloc.start()
    try:
        with pytest.raises(UserInputError, match=r"small-header.gz: \d+ bytes of trailing data after"):
            read_idx(tmp_path / "small-header.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**22, peak  # a few hundred kB, not the 256 MiB the file expands to
    assert (tmp_path / "small-header.gz").stat().st_size < 2**21

    huge = b"\x00\x00\x08\x03" + np.array([100_000, 1000, 1000], ">u4").tobytes()
    gz_bomb(tmp_path / "huge-header.gz", huge, 1)
    with pytest.raises(UserInputError, match=f"declares 100,000,000,016 bytes, more than the {MAX_IDX_BYTES:,}"):
        read_idx(tmp_path / "huge-header.gz")

    from mnist_dnn.data.mnist import _read_npz

    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**5)})
    with zipfile.ZipFile(tmp_path / "mnist.npz", "w") as archive:
        archive.writestr("x_train.npy", npy.getvalue() + b"\x00" * 100)
    with pytest.raises(UserInputError, match=r"mnist.npz\[x_train.npy\]: its header declares 100,000,000,000 bytes"):
        _read_npz(tmp_path / "mnist.npz")

    with zipfile.ZipFile(tmp_path / "bomb.keras", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("config.json", "{}")
        with archive.open("model.weights.h5", "w", force_zip64=True) as member:
            for _ in range(20):
                member.write(zeros)  # 320 MiB of zeros: a few hundred kB compressed
    assert (tmp_path / "bomb.keras").stat().st_size < 2**21
    with pytest.raises(UserInputError, match=r"bomb.keras: model.weights.h5 expands [\d,]+-fold \(.* to 335,544,320 "):
        load_trained(tmp_path / "bomb.keras")  # from the zip's directory: Keras never sees it


@pytest.mark.slow
def test_a_model_saved_without_compile_is_scored_like_any_other(tmp_path):
    """Plain Keras may save a model never compiled, or compiled with other metrics: eval scores it all the same."""
    import keras

    for name, metrics in (("bare", None), ("mae", ["mae"])):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
        if metrics:
            model.compile(loss="mse", metrics=metrics)
        model.save(tmp_path / f"{name}.keras")
        result = CliRunner().invoke(
            main, ["eval", "--model", str(tmp_path / f"{name}.keras"), "--custom-csv", str(REPO / "custom_digits")]
        )
        assert result.exit_code == 0, result.output
        assert "Accuracy: " in result.stdout and "Loss: " in result.stdout
        scores = load_trained(tmp_path / f"{name}.keras").model.evaluate(
            np.zeros((2, 784)), np.eye(10)[:2], verbose=0, return_dict=True
        )
        assert set(scores) >= {"loss", "accuracy"}


# --- Ctrl-C at any moment ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_signal_outside_our_code_waits_for_the_next_safe_point():
    """A Ctrl-C that lands in library code (a gc callback, JAX called back from C++) is raised by poll(), not there."""
    code = (
        "import gc, os, signal\n"
        "from mnist_dnn.core.interrupts import graceful_interrupts, poll\n"
        "def library_callback(phase, info):\n"  # as JAX's own gc callback: an exception here would be dropped
        "    if phase == 'start' and not hasattr(library_callback, 'done'):\n"
        "        library_callback.done = True\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        sum(range(1000))\n"
        "gc.callbacks.append(library_callback)\n"
        "with graceful_interrupts():\n"
        "    gc.collect()\n"
        "    print('survived the callback', flush=True)\n"
        "    try:\n"
        "        poll()\n"
        "    except KeyboardInterrupt:\n"
        "        print('raised at the safe point', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.stdout.splitlines() == ["survived the callback", "raised at the safe point"], out.stderr
    assert "Exception ignored" not in out.stderr and out.returncode == 0


def _interrupt(command, cwd, marker, delay):
    """Start `command`, wait for a stderr line starting with `marker` (None: no wait), then SIGINT after `delay` s."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    seen = []
    if marker is not None:
        for line in process.stderr:
            seen.append(line)
            if line.startswith(marker):
                break
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    return process.returncode, "".join(seen) + err


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    ("marker", "delay"),
    [(None, 1.0), ("Data:", 0.0), ("Run directory:", 0.0), ("Run directory:", 1.5), ("Run directory:", 4.0)],
    ids=["importing", "loading-data", "compiling", "compiling-later", "training"],
)
def test_ctrl_c_at_any_moment_of_a_run_ends_with_exit_130_and_a_truthful_status(tmp_path, marker, delay):
    """While Keras and JAX import, data loads, the epoch compiles or trains: exit 130, status interrupted, no trace."""
    run_dir = tmp_path / "run"
    command = [*mnist_dnn_command(), "train", "--epochs", "50", "--set", "data.train_limit=2000", "--out", str(run_dir)]
    code, err = _interrupt([*command, "--no-plots"], tmp_path, marker, delay)
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    if run_dir.exists():  # interrupted before the directory was made: nothing to mark ("Aborted.")
        assert lifecycle.read_status(run_dir)["status"] == "interrupted", err
        assert f"--resume {run_dir}" in err
    else:  # stopped before a run directory existed, or before anything was written into it
        assert err.strip().endswith("Aborted.") or f"nothing was saved ({run_dir} removed)" in err, err


@pytest.mark.slow
@pytest.mark.mnist
def test_ctrl_c_during_a_sweeps_second_run_ends_with_exit_130_and_keeps_the_first(tmp_path):
    # --cores 1: the two runs one after another, so the signal lands while the second trains alone (30 epochs:
    # it is set up while the first trains, so 3 epochs of 2,000 images could end within the 0.5 s wait)
    command = [*mnist_dnn_command(), "sweep", "--seeds", "0-1", "--set", "data.train_limit=2000", "--epochs", "30"]
    command += ["--cores", "1"]
    code, err = _interrupt([*command, "--no-plots", "--out", str(tmp_path / "s")], tmp_path, "[1/2]", 0.5)
    assert code == 130, err
    assert "Traceback" not in err and "Interrupted; finished runs are kept" in err
    statuses = [json.loads(p.read_text())["status"] for p in sorted((tmp_path / "s").glob("*/status.json"))]
    assert statuses == ["complete", "interrupted"]


@pytest.mark.slow
@pytest.mark.mnist
def test_ctrl_c_to_a_sweep_training_side_by_side_is_exit_130_and_the_same_command_ends_as_if_never_stopped(tmp_path):
    """Four runs on two cores, members not waiting for each other: a SIGINT mid-training, then the command again."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to train side by side")
    command = [*mnist_dnn_command(), "sweep", "--seeds", "0-1", "--set", "optimizer.learning_rate=0.001,0.003"]
    command += ["--set", "data.train_limit=2000", "--epochs", "40", "--cores", "2", "--no-plots", "--no-tensorboard"]
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    code, err = _interrupt([*command, "--out", str(stopped)], tmp_path, "Sweep:", 2.5)
    assert code == 130, err
    assert "Traceback" not in err and "Interrupted; finished runs are kept" in err, err
    statuses = [lifecycle.read_status(p.parent)["status"] for p in sorted(stopped.glob("*/status.json"))]
    assert "interrupted" in statuses, statuses
    for run_dir in stopped.iterdir():  # every checkpoint holds the epochs of its history: nothing torn
        if run_dir.is_dir() and (run_dir / runs.CHECKPOINT_FILE).exists():
            history = records.read_history(run_dir / runs.HISTORY_FILE)
            assert read_checkpoint(run_dir / runs.CHECKPOINT_FILE)[0]["epoch"] == len(history["loss"])
    for out in (stopped, whole):
        done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    names = sorted(p.parent.name for p in whole.glob("*/metrics.json"))
    assert names == sorted(p.parent.name for p in stopped.glob("*/metrics.json")) and len(names) == 4
    for name in names:  # history and metrics.json, timings aside: as if never stopped
        assert _without_timing(stopped / name) == _without_timing(whole / name)


@pytest.mark.slow
def test_json_output_is_valid_json_even_from_a_diverged_model(tmp_path, caplog):
    """A model whose weights overflowed predicts NaN; --json writes null, which every JSON reader accepts."""
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    model.set_weights([np.full((784, 10), np.nan, np.float32), np.zeros(10, np.float32)])
    model.save(tmp_path / "diverged.keras")
    digit = tmp_path / "3.csv"
    digit.write_text("\n".join(",".join("255" if c == 14 else "0" for c in range(28)) for _ in range(28)))
    result = CliRunner().invoke(main, ["predict", str(digit), "--model", str(tmp_path / "diverged.keras"), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    rows = json.loads(result.stdout, parse_constant=refuse)
    assert rows[0]["probabilities"] == [None] * 10 and rows[0]["probability"] is None
    assert rows[0]["predicted"] is None  # not the "0" argmax gives NaN
    assert "the model's output is not a number for 1 of 1 digit(s)" in caplog.text


@pytest.mark.slow
def test_ctrl_c_while_the_cli_is_still_importing_is_one_line_and_exit_130():
    """The signal lands inside `import mnist_dnn.cli.app` (made to wait there), before the command's own handlers."""
    script = (
        "import builtins, os, signal, time\n"
        "import mnist_dnn.cli.launch\n"
        "real_import = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'mnist_dnn.cli.app':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(30)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "mnist_dnn.cli.launch.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (130, "Interrupted.\n", "")

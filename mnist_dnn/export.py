"""`mnist-dnn export`: a trained run as a file other runtimes load (ONNX, TensorFlow SavedModel).

    result = export_run(Path("runs/RUN"), "onnx")            # -> runs/RUN/model.onnx
    session = onnxruntime.InferenceSession(str(result.path))
    probabilities = session.run(None, {"pixels": images})[0]  # images: float32 (N, 28, 28), 0-255

The input contract is the same for both formats and every run (INPUT_NAME, INPUT_SHAPE):
raw pixels 0-255 as MNIST's files hold them (0 = paper, 255 = ink), float32, any batch
size; the run's preprocessing (x/255, log, or the training set's per-pixel statistics of
preprocess.npz) is inside the exported graph, so no caller can feed it differently from
training. The output is the ten softmax probabilities per image.

How: Keras' own `model.export`, on the TensorFlow backend, in a child process. The run's
model.keras is reloaded there (safe mode) behind a preprocessing layer; SavedModel comes
from TensorFlow itself, ONNX from tf2onnx (the `export` extra). The child is needed
because a jax process hides TensorFlow (backend.py), and Keras' jax route to ONNX
(jax2onnx) would pull in flax, orbax and huggingface-hub. Before the file is published
the child feeds it fixed random images through the runtime that will load it
(onnxruntime or TensorFlow) and compares with Keras; a mismatch is an internal error.
The file appears under its final name only when complete, and never replaces anything;
an interrupted export publishes nothing.
"""

from __future__ import annotations

import errno
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted, deferred, poll
from mnist_dnn.core.lifeline import die_with_parent, process_alive
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.load import load_trained

FORMATS = ("onnx", "savedmodel")
DEFAULT_NAMES = {"onnx": "model.onnx", "savedmodel": "saved_model"}
EXTRA = "export"  # pyproject's optional extra with what the formats need beyond the core stack
NEEDS = {"onnx": ("tensorflow", "tf2onnx", "onnx", "onnxruntime"), "savedmodel": ("tensorflow",)}
INPUT_NAME = "pixels"
INPUT_SHAPE = (None, 28, 28)  # batch, rows, columns; float32 0-255
OUTPUT_NAME = "probabilities"  # (batch, 10) softmax
CHECK_IMAGES = 256  # random images the exported file must score as Keras does before it is published
QUIET_RUNTIMES = {"ORT_DISABLE_TELEMETRY": "1"}  # onnxruntime would write a device id under ~/.cache and upload events
WAIT_S = 1.0  # how often the parent, waiting for the child, returns to Python to see a Ctrl-C
CHECK_TOLERANCE = 1e-4  # of any probability; a broken conversion misses by 0.1 or more (MNIST itself: < 1e-5, tested)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    preprocessing: str  # the run's preprocess.method, now inside the graph
    max_difference: float  # the self-check: largest |probability - Keras'| over `checks` random images
    checks: int = CHECK_IMAGES


def default_out(run_dir: Path, fmt: str) -> Path:
    return run_dir / DEFAULT_NAMES[fmt]


def check_request(run_dir: Path, fmt: str, out: Path) -> None:
    """Everything that can be refused without TensorFlow: the format's packages, the run, the output path."""
    if fmt not in FORMATS:
        raise UserInputError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    missing = [name for name in NEEDS[fmt] if not _installed(name)]
    if missing:
        raise UserInputError(
            f"--format {fmt}: needs {', '.join(missing)}, not installed; "
            f"install the '{EXTRA}' extra: pip install -c constraints.txt -e '.[{EXTRA}]' (make install does)"
        )
    _check_complete_run(run_dir)
    if out.exists() or out.is_symlink():
        raise UserInputError(f"--out {out}: already exists; export never replaces a file, choose a new path")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise UserInputError(f"--out {out}: {out.parent} {what}")


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported, or hidden from a jax process (a None entry, backend.py): installed
        return True
    return importlib.util.find_spec(module) is not None


def _check_complete_run(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: not a directory (expected a run directory of mnist-dnn train)")
    if not (run_dir / runs.MODEL_FILE).is_file() and (run_dir / "run-1" / runs.MODEL_FILE).is_file():
        raise UserInputError(f"{run_dir}: a directory of several runs; export one of them, e.g. {run_dir / 'run-1'}")
    runs.check_run_format(run_dir)
    status = runs.read_status(run_dir)
    if status is not None and status["status"] != "complete":
        raise UserInputError(
            f"{run_dir}: the run is {status['status']}, not complete; only a finished run can be exported"
        )
    if not (run_dir / runs.MODEL_FILE).is_file():
        raise UserInputError(f"{run_dir}: no {runs.MODEL_FILE} here (not a finished run of mnist-dnn train)")


def export_run(run_dir: Path, fmt: str, out: Path | None = None) -> ExportResult:
    """Export run_dir's model as `fmt` to `out` (default: inside the run directory) and return what was written.

    The child writes and checks a temporary beside `out`; this process publishes it. So a
    Ctrl-C - the terminal's, which reaches only this process (the child has a session of
    its own), or a SIGINT sent here alone - stops the child and publishes nothing
    (Interrupted). A killed export leaves its temporary, named after its pid; the next
    export removes those whose process is gone.
    """
    out = out if out is not None else default_out(run_dir, fmt)
    check_request(run_dir, fmt, out)
    remove_stale_temporaries(out)
    tmp = temporary_name(out, os.getpid())
    request = {"run_dir": str(run_dir), "format": fmt, "tmp": str(tmp), "parent": os.getpid()}
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", **QUIET_RUNTIMES}
    child = subprocess.Popen(
        [sys.executable, "-m", "mnist_dnn.export", json.dumps(request)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = _wait(child)
        if child.returncode == _CHILD_USER_ERROR:
            raise UserInputError(stderr.strip().splitlines()[-1])
        if child.returncode != 0:
            raise RuntimeError(f"the export process failed (exit {child.returncode}):\n{stderr[-4000:]}")
        answer = json.loads(stdout.strip().splitlines()[-1])
        poll()  # a Ctrl-C that came while the child finished: it wins, nothing is published
        with deferred():
            _publish(tmp, out)
    except KeyboardInterrupt:
        raise Interrupted("Interrupted; nothing was exported.") from None
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()
        _remove(tmp)
    return ExportResult(out, fmt, answer["preprocessing"], answer["max_diff"])


def _wait(child: subprocess.Popen) -> tuple[str, str]:
    """The child's output once it ends, returning to Python every WAIT_S so a Ctrl-C here is seen at once."""
    while True:
        try:
            return child.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            poll()


def temporary_name(out: Path, pid: int) -> Path:
    return out.with_name(f".{out.name}.{pid}.tmp")


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporaries of `out` left by exports that were killed (their process is gone); -> those removed.

    A temporary whose process lives - another export at work - is left alone; one named
    after this process is a dead one's whose pid came round again.
    """
    removed = []
    for path in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        pid = path.name.removeprefix(f".{out.name}.").removesuffix(".tmp")
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            _remove(path)
            removed.append(path)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- the child process: TensorFlow backend --------------------------------------------------

_CHILD_USER_ERROR = 2


def _export_in_this_process(run_dir: Path, fmt: str, tmp: Path) -> dict[str, Any]:
    """Load, wrap, export to `tmp`, check against Keras; return the result fields (the parent publishes `tmp`).

    `tmp` is made first, by Python, so an unwritable directory is the user's one line
    before TensorFlow would fail on it with a traceback.
    """
    from mnist_dnn.core.backend import activate_backend

    try:
        if fmt == "savedmodel":
            tmp.mkdir()
        else:
            tmp.touch(exist_ok=False)
    except OSError as exc:
        if runs.storage_error(exc) is None:
            raise
        raise UserInputError(f"--out: cannot write into {tmp.parent} ({exc.strerror})") from None
    try:
        activate_backend("tensorflow")
        _quiet_converters()
        trained = load_trained(run_dir)  # NaN statistics are refused there, in one line
        method = trained.config.preprocess.method
        wrapped = _with_preprocessing(trained.model, method, trained.stats)
        if fmt == "onnx":
            wrapped.export(str(tmp), format="onnx", verbose=False)
            _name_onnx_output(tmp)
        else:
            _export_saved_model(wrapped, tmp)
        max_diff = _check_against_keras(tmp, fmt, trained)
    except BaseException:
        _remove(tmp)
        raise
    return {"preprocessing": method, "max_diff": max_diff}


def _quiet_converters() -> None:
    """tf2onnx logs every graph rewrite at INFO; the user sees our one line instead."""
    import logging

    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _with_preprocessing(model, method: str, stats):
    """A model from raw (N, 28, 28) pixels 0-255 to probabilities: flatten, the run's preprocessing, the network."""
    import keras
    import numpy as np

    from mnist_dnn.data.preprocess import PIXEL_MAX

    mean = np.zeros(784, np.float32) if stats is None else stats.mean
    std = np.ones(784, np.float32) if stats is None else stats.std

    class Preprocess(keras.layers.Layer):
        """preprocess.transform as graph operations, the training set's statistics as constants."""

        def call(self, x):
            ops = keras.ops
            if method == "scale":
                return x / np.float32(PIXEL_MAX)
            if method == "log":
                return ops.log1p(x)
            centred = x - ops.convert_to_tensor(mean)
            return centred if method == "zero_center" else centred / ops.convert_to_tensor(std)

    pixels = keras.Input(INPUT_SHAPE[1:], dtype="float32", name=INPUT_NAME)
    flat = keras.layers.Reshape((784,), name="flatten")(pixels)
    wrapped = keras.Model(pixels, model(Preprocess(name=f"preprocess_{method}")(flat)), name="mnist_dnn_export")
    wrapped(np.zeros((1, *INPUT_SHAPE[1:]), np.float32))  # Keras exports only a model that has been called
    return wrapped


def _name_onnx_output(path: Path) -> None:
    """tf2onnx names the output after TensorFlow's last op ('Identity:0'); give it the contract's names."""
    import onnx

    model = onnx.load(str(path))
    (output,) = model.graph.output
    for node in model.graph.node:
        node.output[:] = [OUTPUT_NAME if name == output.name else name for name in node.output]
    output.name = OUTPUT_NAME
    for value in (*model.graph.input, output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _export_saved_model(wrapped, path: Path) -> None:
    """Keras' ExportArchive with one `serve` endpoint: {"pixels": ...} in, {"probabilities": ...} out.

    (`model.export` would name the output 'output_0'.)
    """
    import keras

    archive = keras.export.ExportArchive()
    archive.track(wrapped)
    archive.add_endpoint(
        name="serve",
        fn=lambda pixels: {OUTPUT_NAME: wrapped(pixels, training=False)},
        input_signature=[keras.InputSpec(shape=INPUT_SHAPE, dtype="float32", name=INPUT_NAME)],
    )
    archive.write_out(str(path), verbose=False)


def _check_against_keras(path: Path, fmt: str, trained) -> float:
    """Score CHECK_IMAGES fixed random images with the exported file's own runtime and with Keras."""
    import numpy as np

    from mnist_dnn.data.preprocess import transform

    images = np.random.default_rng(0).integers(0, 256, size=(CHECK_IMAGES, 28, 28)).astype(np.float32)
    images[: CHECK_IMAGES // 2] *= (
        np.random.default_rng(1).random((CHECK_IMAGES // 2, 28, 28)) < 0.2
    )  # sparse, digit-like
    expected = np.asarray(
        trained.model.predict(transform(images, trained.config.preprocess.method, trained.stats), verbose=0)
    )
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    else:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        got = loaded.signatures["serving_default"](**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
    max_diff = float(np.max(np.abs(got - expected)))
    if not max_diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"the exported {fmt} model disagrees with Keras by {max_diff:.3g} on random images")
    return max_diff


def _publish(tmp: Path, out: Path) -> None:
    """Give the finished file or directory its name, never replacing one that appeared meanwhile."""
    try:
        if tmp.is_dir():
            os.rename(tmp, out)  # fails on an existing non-empty directory or file
        else:
            os.link(tmp, out)  # fails if anything has that name
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise UserInputError(f"--out {out}: appeared while exporting; export never replaces a file") from None
        raise OSError(exc.errno, exc.strerror, str(out)) from exc


def _child_main(argv: list[str]) -> int:
    """Entry point of the child process: one JSON request in argv, one JSON answer on stdout.

    It dies with its parent (lifeline.py), so a killed export leaves no process behind.
    """
    request = json.loads(argv[0])
    die_with_parent(request["parent"])
    try:
        answer = _export_in_this_process(Path(request["run_dir"]), request["format"], Path(request["tmp"]))
    except UserInputError as exc:
        sys.stderr.write(f"{exc}\n")
        return _CHILD_USER_ERROR
    except OSError as exc:
        problem = runs.storage_error(exc)
        if problem is None:
            raise
        sys.stderr.write(f"{problem}\n")
        return _CHILD_USER_ERROR
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

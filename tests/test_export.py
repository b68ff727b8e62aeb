"""`mnist-dnn export`: refusals without TensorFlow, and exported files checked in onnxruntime and TensorFlow."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_dnn import export
from mnist_dnn.cli.app import main
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.load import load_trained


def _fake_run(directory, status="complete"):
    """A run directory as far as the checks before the export look: status.json and a model.keras."""
    directory.mkdir()
    runs.write_status(directory, status, kind="train")
    (directory / runs.MODEL_FILE).write_bytes(b"not looked at before the export starts")
    return directory


def _export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def test_export_refuses_an_existing_path_in_one_line(tmp_path):
    run_dir = _fake_run(tmp_path / "run")
    (run_dir / "model.onnx").write_text("mine")
    result = _export(run_dir, "--format", "onnx")
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"Error: --out {run_dir / 'model.onnx'}: already exists; export never replaces a file, choose a new path\n"
    )
    assert (run_dir / "model.onnx").read_text() == "mine"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert _export(run_dir, "--format", "savedmodel", "--out", tmp_path / "dangling").exit_code == 2
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_export_refuses_a_run_that_is_not_complete(tmp_path, status):
    run_dir = _fake_run(tmp_path / "run", status)
    result = _export(run_dir, "--format", "onnx")
    assert result.exit_code == 2
    assert (
        result.stderr == f"Error: {run_dir}: the run is {status}, not complete; only a finished run can be exported\n"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == [runs.MODEL_FILE, runs.STATUS_FILE]


def test_export_refuses_what_is_not_one_finished_run(tmp_path):
    experiment = tmp_path / "custom"
    experiment.mkdir()
    _fake_run(experiment / "run-1")
    assert "a directory of several runs; export one of them" in _export(experiment, "--format", "onnx").stderr
    assert "no model.keras here" in _export(tmp_path, "--format", "onnx").stderr
    result = _export(_fake_run(tmp_path / "run"), "--format", "onnx", "--out", tmp_path / "no" / "such" / "m.onnx")
    assert result.exit_code == 2 and result.stderr.endswith(f"{tmp_path / 'no' / 'such'} does not exist\n")
    assert _export(tmp_path / "run", "--format", "tflite").exit_code == 2


def test_export_names_the_extra_when_its_packages_are_missing(tmp_path, monkeypatch):
    run_dir = _fake_run(tmp_path / "run")
    monkeypatch.setattr(export, "_installed", lambda module: module not in ("tf2onnx", "onnxruntime"))
    result = _export(run_dir, "--format", "onnx")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --format onnx: needs tf2onnx, onnxruntime, not installed; install the 'export' extra: "
        "pip install -c constraints.txt -e '.[export]' (make install does)\n"
    )
    assert not (run_dir / "model.onnx").exists()


_LOAD_SAVED_MODEL = """
import sys, numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
np.save(sys.argv[3], serve(pixels=tf.constant(np.load(sys.argv[2])))["probabilities"].numpy())
"""


CONVOLUTIONAL_WITH_BATCH_NORM = (  # the Reshape inside the model keeps the (N, 28, 28) 0-255 contract
    "model.conv_filters=[6, 16]",
    'model.conv_padding=["same", "valid"]',
    "model.hidden_units=[120, 84]",
    "model.batch_norm=true",
)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    ("method", "formats", "tolerance", "model"),
    [
        ("scale", ("onnx", "savedmodel"), 1e-5, ()),
        ("standardize", ("onnx",), 1e-4, ()),
        ("scale", ("onnx", "savedmodel"), 1e-5, CONVOLUTIONAL_WITH_BATCH_NORM),
    ],
    ids=["paper", "standardize", "convolutional-batch-norm"],
)
def test_exported_models_read_raw_pixels_and_agree_with_keras_on_the_mnist_test_set(
    tmp_path, monkeypatch, mnist, method, formats, tolerance, model
):
    """onnxruntime and TensorFlow, fed MNIST's 10,000 raw test images, read every digit as Keras does.

    With the paper's preprocessing (x/255) every probability is within 1e-5 of Keras'. A
    standardized run sees inputs up to 1000 (pixels no training image inked, sigma at its
    floor), where two float32 matrix products summed in different orders differ by ~1e-5
    (each is ~5e-6 from a float64 reference, measured); there 1e-4 still catches wrong
    statistics, which miss by far more.
    """
    import onnxruntime

    from mnist_dnn.training.evaluate import digit_probabilities

    monkeypatch.chdir(tmp_path)
    trained = CliRunner().invoke(
        main,
        ["train", "--epochs", "1", "--set", "data.train_limit=3000", "--set", f"preprocess.method={method}"]
        + [option for setting in model for option in ("--set", setting)]
        + ["--out", "run", "-q", "--no-plots"],
    )
    assert trained.exit_code == 0, trained.output
    images = mnist.x_test.astype(np.float32)  # the contract: raw pixels 0-255, (N, 28, 28)
    keras_probabilities = digit_probabilities(load_trained(tmp_path / "run"), images)
    for fmt in formats:
        out = tmp_path / f"exported-{fmt}"
        result = _export("run", "--format", fmt, "--out", out)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Exported: {out} ({fmt}; input 'pixels' float32 (N, 28, 28) 0-255, {method}")
        if fmt == "onnx":
            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            assert [i.name for i in session.get_inputs()] == ["pixels"]
            probabilities = session.run(["probabilities"], {"pixels": images})[0]
        else:
            np.save(tmp_path / "images.npy", images)
            loaded = subprocess.run(
                [sys.executable, "-c", _LOAD_SAVED_MODEL, out, tmp_path / "images.npy", tmp_path / "p.npy"],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
            assert loaded.returncode == 0, loaded.stderr
            probabilities = np.load(tmp_path / "p.npy")
        assert probabilities.shape == (10_000, 10)
        assert (probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1)).all()
        assert np.abs(probabilities - keras_probabilities).max() <= tolerance
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "complete"

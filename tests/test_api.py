"""The Python API (`from mnist_dnn import ...`): what the commands do, with the same messages and files.

The fast tests stop at the inputs (nothing is trained or loaded); the slow one runs
docs/examples/notebook.py on real MNIST and checks it against the run's own files and
the CLI.
"""

import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mnist_dnn
from mnist_dnn import api
from mnist_dnn.cli.app import main
from tests.conftest import REPO
from tests.test_cli import (
    _without_timing,
    tiny_data,  # noqa: F401  (a fixture)
)

NOTEBOOK = REPO / "docs" / "examples" / "notebook.py"


def cli_error(*args: str) -> str:
    """The one line a command prints for a user mistake (exit status 2)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 2, result.output
    return result.stderr.strip()


def test_the_package_gives_the_api_by_name():
    assert list(mnist_dnn._API) == api.__all__
    assert mnist_dnn.train is api.train and mnist_dnn.predict is api.predict
    assert set(api.__all__) <= set(dir(mnist_dnn))
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        mnist_dnn.trian  # noqa: B018


def test_a_missing_config_is_the_clis_one_line(cli_env):
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.train("nope.toml")
    assert cli_error("train", "--config", "nope.toml") == f"Error: {raised.value}"
    assert str(raised.value).startswith("nope.toml: no such config file, and no built-in config of that name")


def test_a_bad_override_is_the_clis_one_line(cli_env):
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.train(overrides={"optimizer.learning_rate": "fast"})
    assert cli_error("train", "--set", "optimizer.learning_rate=fast") == f"Error: {raised.value}"
    assert isinstance(raised.value, ValueError)


def test_keywords_win_over_overrides_as_flags_win_over_set(cli_env):
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.train(overrides={"train.epochs": 3}, epochs=0)
    assert "train.epochs" in str(raised.value)
    assert cli_error("train", "--set", "train.epochs=3", "--epochs", "0") == f"Error: {raised.value}"


def test_overrides_stand_where_no_keyword_is_given(cli_env):
    with pytest.raises(mnist_dnn.UserInputError, match="train.seed"):
        api.train(overrides={"train.seed": -1})


def test_a_config_is_found_by_its_built_in_name_as_the_cli_finds_it(cli_env):
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.train("sgd", epochs=0)
    assert "sgd.toml: " in str(raised.value)
    assert cli_error("train", "--config", "sgd", "--epochs", "0") == f"Error: {raised.value}"


def test_a_resumed_run_takes_no_new_settings(tmp_path):
    with pytest.raises(mnist_dnn.UserInputError, match="^seed: only applies to a new run"):
        api.train(resume=tmp_path, seed=0)


def test_an_existing_out_is_refused_before_training(cli_env):
    (cli_env / "taken").mkdir()
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.train(out="taken")
    assert cli_error("train", "--out", "taken") == f"Error: {raised.value}"


def test_sweep_seeds_and_settings_are_checked_as_the_cli_checks_them(cli_env):
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.sweep({"optimizer.learning_rate": [1e-3, 1e-2]}, seeds="0-x")
    cli = cli_error("sweep", "--set", "optimizer.learning_rate=1e-3,1e-2", "--seeds", "0-x")
    assert cli == f"Error: {raised.value}"
    with pytest.raises(mnist_dnn.UserInputError, match="a value is listed twice"):
        api.sweep({"model.dropout": [0.5, 0.5]})
    with pytest.raises(mnist_dnn.UserInputError, match=r"^--set model\.dropout: a value is listed twice in '0\.5,0"):
        api.sweep("model.dropout=0.5,0.5")  # one CLI text, not its characters
    with pytest.raises(mnist_dnn.UserInputError) as raised:
        api.sweep({"train.seed": [1, 2]})
    assert cli_error("sweep", "--set", "train.seed=1,2") == f"Error: {raised.value}"


def test_sweep_seeds_may_be_one_a_text_or_a_list():
    assert [api._seeds_text(seeds) for seeds in (3, range(3), [4, 1], "0,3")] == ["3", "0,1,2", "4,1", "0,3"]


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 27, 27)), r"images: expected shape \(N, 28, 28\) or \(N, 784\), got float64 \(2, 27, 27\)"),
        (np.full((1, 784), 300.0), "images: expected raw pixels 0-255"),
        (np.full((1, 28, 28), np.nan), "images: expected raw pixels 0-255"),
        (np.full((3, 28, 28), 0.5), "images: values in 0..1"),
        (np.array([["a"] * 784]), "images: expected shape"),
    ],
)
def test_predict_refuses_arrays_it_would_misread_before_opening_a_model(tmp_path, images, message):
    with pytest.raises(mnist_dnn.UserInputError, match=message):
        api.predict(tmp_path / "no-such-run", images)


def test_predict_takes_one_image_or_many_in_either_shape():
    image = np.arange(784, dtype=np.uint8).reshape(28, 28)
    for given in (image, image.reshape(784), image[None], image.reshape(1, 784)):
        pixels = api._pixels(given)
        assert pixels.shape == (1, 28, 28) and pixels.dtype == np.float32
        assert np.array_equal(pixels[0], image)


def test_load_run_of_an_unfinished_run_names_its_file(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,accuracy\n1,0.5,0.8\n")
    with pytest.raises(mnist_dnn.UserInputError, match=r"metrics\.json: missing \(the run has not finished\)"):
        api.load_run(tmp_path)


# --- the notebook example, end to end on real MNIST -------------------------------------------------------------------


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """docs/examples/notebook.py run as a user would, from a folder holding the repository's configs and digits."""
    here = tmp_path_factory.mktemp("notebook")
    for name in ("configs", "custom_digits"):
        (here / name).symlink_to(REPO / name)
    before = os.getcwd()
    os.chdir(here)
    try:
        namespace = runpy.run_path(str(NOTEBOOK), run_name="__main__")
    finally:
        os.chdir(before)
    return here, namespace


@pytest.mark.slow
@pytest.mark.mnist
def test_the_notebook_returns_the_runs_own_metrics_and_the_clis_numbers(notebook, monkeypatch):
    here, ns = notebook
    monkeypatch.chdir(here)  # the notebook's paths are relative to where it ran
    result, run = ns["result"], ns["run"]
    assert result.run_dir.parent == Path("runs") and result.run_dir.name.endswith("-notebook")
    assert result.metrics == json.loads((result.run_dir / "metrics.json").read_text())
    assert run.metrics == result.metrics and run.config == result.config
    assert run.history["epoch"].tolist() == [1] and run.history["epoch"].dtype.kind == "i"
    assert run.history["val_accuracy"].iloc[-1] == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)
    assert result.figures == (result.run_dir / "fig6_accuracy_loss.png", result.run_dir / "gradient_norms.png")
    out = here / "cli-run"
    args = ["train", "--set", "data.train_limit=2000", "--epochs", "1", "--seed", "0", "--out", str(out), "-q"]
    cli = CliRunner().invoke(main, args, catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    assert _without_timing(out) == _without_timing(result.run_dir)


@pytest.mark.slow
@pytest.mark.mnist
def test_the_notebook_reads_digits_as_the_cli_and_mnist_as_the_runs_test_score(notebook, monkeypatch):
    here, ns = notebook
    monkeypatch.chdir(here)
    run, custom, read, mnist = ns["run"], ns["custom"], ns["read"], ns["mnist"]
    assert custom.names == ["3.csv", "8.csv", "9.csv", "5.csv", "4.csv"]  # labels.csv's order
    args = ["predict", "custom_digits", "--model", str(run.path), "--json"]
    cli = CliRunner().invoke(main, args, catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == custom.rows
    assert np.array_equal(custom.digits, [row["predicted"] for row in custom.rows])
    assert read.probabilities.shape == (10_000, 10)
    assert np.allclose(read.probabilities.sum(axis=1), 1, atol=1e-5)
    # argmax accuracy and Keras' evaluate agree up to ties between two digits' probabilities
    assert ns["accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1.5e-4)
    flat = api.predict(run, mnist.x_test[:64].reshape(64, 784))
    assert np.array_equal(flat.probabilities, read.probabilities[:64])


@pytest.mark.slow
@pytest.mark.mnist
def test_the_notebook_draws_figure_6_from_the_runs_history(notebook):
    _, ns = notebook
    figure, run = ns["figure"], ns["run"]
    accuracy_axes, loss_axes = figure.axes
    lines = {line.get_label(): line.get_ydata().tolist() for line in accuracy_axes.lines}
    assert lines == {"train": run.history["accuracy"].tolist(), "test": run.history["val_accuracy"].tolist()}
    assert [line.get_ydata().tolist() for line in loss_axes.lines] == [
        run.history["loss"].tolist(),
        run.history["val_loss"].tolist(),
    ]


@pytest.mark.slow
def test_a_sweep_from_typed_values_gives_its_summary_csv_as_a_table(tmp_path, tiny_data):  # noqa: F811
    import pandas as pd

    result = api.sweep(
        {"model.dropout": [0.0, 0.5]}, [0, 1], epochs=1, data_dir=tiny_data, out=tmp_path / "sweep", figures=False
    )
    assert [path.name for path in result.runs] == [
        "dropout-0.0__seed0",
        "dropout-0.0__seed1",
        "dropout-0.5__seed0",
        "dropout-0.5__seed1",
    ]
    table = pd.read_csv(result.sweep_dir / "summary.csv")
    assert result.summary["setting"].tolist() == table["setting"].tolist()
    assert np.allclose(result.summary["test_accuracy_mean"], table["test_accuracy_mean"], rtol=1e-6)
    by_setting = {}
    for path in result.runs:
        by_setting.setdefault(path.name.split("__")[0], []).append(api.load_run(path).metrics["test_accuracy"])
    best = max(by_setting.values(), key=np.mean)
    assert result.summary["test_accuracy_mean"].iloc[0] == pytest.approx(np.mean(best))


def test_predictions_read_no_digit_where_the_output_is_not_a_number():
    from mnist_dnn.training.evaluate import prediction_rows

    probabilities = np.array([[0.1] * 9 + [0.1], [np.nan] * 10], dtype=np.float32)
    probabilities[0, 7] = 0.2
    found = api.Predictions(["a", "b"], probabilities, prediction_rows(Path("m"), ["a", "b"], probabilities))
    assert found.digits.tolist() == [7, -1]

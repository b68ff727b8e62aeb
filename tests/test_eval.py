"""Section 5.2.2 end to end: train on real MNIST, test on the custom digits; then eval and predict on a saved model.

One module-scoped experiment (2 runs x 1 epoch on real MNIST, ~20 s) feeds every test here.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.experiments.section522 import verdict
from mnist_dnn.runs import directory as runs
from tests.test_digits import CUSTOM, PAPER_LABELS, SEVEN, ZERO, draw, save

pytestmark = [pytest.mark.mnist, pytest.mark.slow]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """`eval --custom-csv custom_digits --runs 2 --epochs 1 --compare-methods`: its result and directory."""
    out = tmp_path_factory.mktemp("custom") / "run"
    result = run("eval", "--custom-csv", CUSTOM, "--runs", 2, "--epochs", 1, "--compare-methods", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return result, out


def test_experiment_writes_the_multi_run_layout(experiment):
    _, out = experiment
    assert (out / "predictions.csv").read_text().splitlines()[0] == "file,label,run-1,run-2"
    rows = [line.split(",") for line in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == [f"{d}.csv" for d in PAPER_LABELS]
    assert [int(row[1]) for row in rows] == PAPER_LABELS
    assert all(len(row) == 4 and all(cell in "0123456789" for cell in row[2:]) for row in rows)
    for number, seed in ((1, 0), (2, 1)):
        run_dir = out / f"run-{number}"
        history = runs.read_history(run_dir / runs.HISTORY_FILE)
        metrics = json.loads((run_dir / runs.METRICS_FILE).read_text())
        assert history["epoch"] == [1.0] and metrics["seed"] == seed
        assert metrics["test_accuracy"] > 0.9  # the MNIST test set, not the five digits
        assert history["val_accuracy"][0] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # five custom digits
    assert len((out / "probabilities.csv").read_text().splitlines()) == 1 + 2 * 5
    for figure in ("fig9_custom_accuracy", "fig10_custom_loss", "predictions", "fig8_custom_digits"):
        assert (out / f"{figure}.png").stat().st_size > 0


def test_summary_answers_the_papers_question(experiment):
    result, out = experiment
    summary = json.loads((out / "summary.json").read_text())
    predictions = np.array([row.split(",")[2:] for row in (out / "predictions.csv").read_text().splitlines()[1:]])
    assert summary["runs"] == 2 and summary["seeds"] == [0, 1] and summary["epochs"] == 1
    for image, row in zip(summary["per_image"], predictions.astype(int), strict=True):
        assert image["predictions"] == row.tolist()
        assert image["missed_runs"] == sum(p != image["label"] for p in row)
        assert sum(image["mistaken_for"].values()) == image["missed_runs"]
    for entry in summary["per_run"]:
        history = runs.read_history(out / entry["run"] / runs.HISTORY_FILE)
        assert entry["custom_accuracy"] == pytest.approx(history["val_accuracy"][-1])
        assert entry["custom_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    assert set(summary["methods"]) == {"as given", "mnist", "naive"}
    # the shipped CSVs are the page images digitized the MNIST way, so the two must agree exactly
    assert summary["methods"]["mnist"]["accuracy"] == summary["methods"]["as given"]["accuracy"]
    assert summary["verdict"] in result.output
    assert "MNIST test accuracy" in result.output and "naive" in result.output


def test_a_one_epoch_model_reads_digits_drawn_either_way(experiment, cli_env):
    _, out = experiment
    for name, strokes, kwargs in (("7-dark.png", SEVEN, {}), ("7-chalk.png", SEVEN, {"dark_ink": False})):
        save(draw(strokes, **kwargs), cli_env / name)
    save(draw(ZERO, size=(500, 320), box=(300, 40, 160), seed=3), cli_env / "0-corner.png")
    result = run("predict", "7-dark.png", "7-chalk.png", "0-corner.png", "--model", out / "run-1", "--json")
    assert result.exit_code == 0, result.output
    assert [row["predicted"] for row in json.loads(result.output)] == [7, 7, 0]


def test_eval_of_one_model_on_the_custom_digits_matches_its_run(experiment):
    _, out = experiment
    result = run("eval", "--model", out / "run-2" / "model.keras", "--custom-csv", CUSTOM, "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output)
    summary = json.loads((out / "summary.json").read_text())
    assert scored["accuracy"] == pytest.approx(summary["per_run"][1]["custom_accuracy"])
    assert [row["predicted"] for row in scored["images"]] == [i["predictions"][1] for i in summary["per_image"]]
    first = scored["images"][0]
    assert set(first) >= {"file", "label", "predicted", "probability", "runner_up", "runner_up_probability"}
    assert first["probability"] >= first["runner_up_probability"]

    table = run("eval", "--model", out / "run-2", "--custom-csv", CUSTOM / "3.csv", "--compare-methods")
    assert table.exit_code == 0, table.output
    assert "runner-up" in table.output and "Accuracy:" in table.output and "'naive'" in table.output


def test_eval_of_one_model_on_mnist_saves_its_confusion_matrix(experiment, tmp_path):
    _, out = experiment
    target = tmp_path / "cm.csv"
    result = run("eval", "--model", out / "run-1", "--out", target)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "run-1" / runs.METRICS_FILE).read_text())
    assert f"Test accuracy: {metrics['test_accuracy']}" in result.output
    lines = target.read_text().splitlines()
    assert lines[0].startswith("true\\predicted,0,1") and len(lines) == 11
    matrix = np.array([line.split(",")[1:] for line in lines[1:]], dtype=int)
    assert matrix.sum() == 10_000
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test_accuracy"])


def test_a_multi_run_directory_is_not_a_model(experiment):
    _, out = experiment
    result = CliRunner().invoke(main, ["predict", str(CUSTOM / "3.csv"), "--model", str(out)])
    assert result.exit_code == 2
    assert f"{out}: a directory of several runs; pass one of them, e.g. {out / 'run-1'}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --custom-csv (train and test), --model (score it), or both"),
        (["--model", ".", "--epochs", "3"], "--epochs: only applies when training, without --model"),
        (["--model", ".", "--labels", "3"], "--labels: only applies with --custom-csv"),
        (["--custom-csv", "x", "--runs", "0"], "Invalid value for '--runs'"),
    ],
)
def test_eval_refuses_flags_that_mean_nothing(cli_env, args, message):
    result = CliRunner().invoke(main, ["eval", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert list(cli_env.iterdir()) == []


def _image(missed_runs):
    return {"file": f"{missed_runs}.csv", "missed_runs": missed_runs}


@pytest.mark.parametrize(
    ("missed", "expected"),
    [
        ([0, 0, 0, 0, 0], "read every image correctly"),
        ([6, 6, 0, 0, 0], "The same image(s) fool most models (6.csv, 6.csv)"),
        ([1, 2, 1, 0, 0], "No image is missed by more than half"),
        ([6, 1, 1, 1, 0], "Both: 1 image(s) are missed by most models"),
    ],
)
def test_verdict_tells_chance_from_consistent_errors(missed, expected):
    assert expected in verdict([_image(m) for m in missed], runs_count=6)

"""Figures: what is drawn (lines, bands, labels, legends), byte-identical files, and the plot/show commands."""

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection

from mnist_dnn.cli.app import main
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import write_idx
from mnist_dnn.figures import plots
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.evaluate import confusion_matrix
from tests.test_train import _separable_digits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HISTORY = {  # three epochs, as runs.HistoryWriter writes them
    "epoch": [1.0, 2.0, 3.0],
    "loss": [0.40, 0.20, 0.15],
    "accuracy": [0.88, 0.94, 0.96],
    "val_loss": [0.18, 0.12, 0.10],
    "val_accuracy": [0.945, 0.962, 0.970],
    "epoch_time_s": [2.1, 1.9, 1.9],
}


def _write_run(directory, history=HISTORY, config=None):
    """A run directory as `train` leaves it, minus the model: history.csv and config.toml."""
    directory.mkdir(parents=True)
    rows = [
        {name: values[i] for name, values in history.items() if name != "epoch"} for i in range(len(history["loss"]))
    ]
    writer = runs.HistoryWriter(directory / runs.HISTORY_FILE)
    for epoch, row in enumerate(rows, start=1):
        writer(epoch, row)
    if config is not None:
        (directory / runs.CONFIG_FILE).write_text(config)
    return directory


def _write_multi_run(directory, val_accuracies, val_losses):
    """RUN_DIR/run-k/history.csv, as `eval --custom-csv` leaves it (val_* on the custom digits)."""
    for k, (accuracy, loss) in enumerate(zip(val_accuracies, val_losses, strict=True), start=1):
        lines = ["epoch,loss,accuracy,val_loss,val_accuracy"]
        lines += [f"{e},0.1,0.9,{lv},{av}" for e, (av, lv) in enumerate(zip(accuracy, loss, strict=True), start=1)]
        (directory / f"run-{k}").mkdir(parents=True)
        (directory / f"run-{k}" / runs.HISTORY_FILE).write_text("\n".join(lines) + "\n")
    return directory


def _config(learning_rate):
    return f'[optimizer]\nname = "adam"\nlearning_rate = {learning_rate}\n\n[train]\nepochs = 3\nseed = 0\n'


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- figure 6 --------------------------------------------------------------------------------------------------------


def test_figure_6_draws_the_history_columns_as_the_paper_labels_them(tmp_path):
    history = runs.read_history(_write_run(tmp_path / "run") / runs.HISTORY_FILE)
    fig = plots.plot_history(history)
    accuracy, loss = fig.axes
    for ax, metric, title in ((accuracy, "accuracy", "Model Accuracy"), (loss, "loss", "Model Loss")):
        assert ax.get_title() == title and ax.get_ylabel() == title and ax.get_xlabel() == "Epoch"
        train, test = ax.get_lines()
        assert list(train.get_xdata()) == [1, 2, 3]
        assert list(train.get_ydata()) == HISTORY[metric]
        assert list(test.get_ydata()) == HISTORY[f"val_{metric}"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
        assert list(ax.get_xticks()) == [1, 2, 3]


def test_epoch_ticks_are_integers_from_1_even_for_long_runs():
    n = 50
    history = {"epoch": list(range(1, n + 1)), "loss": [1.0] * n, "accuracy": [0.5] * n}
    ticks = plots.plot_history(history).axes[0].get_xticks()
    assert ticks[0] == 1
    assert all(float(t).is_integer() for t in ticks) and ticks[-1] <= n
    assert 5 <= len(ticks) <= 13


def test_a_one_epoch_run_is_still_visible_and_a_history_without_val_columns_has_only_train():
    fig = plots.plot_history({"epoch": [1.0], "loss": [0.3], "accuracy": [0.9]})
    (line,) = fig.axes[0].get_lines()
    assert line.get_marker() == "o"
    assert list(fig.axes[0].get_xticks()) == [1]


# --- figures 9 and 10 ------------------------------------------------------------------------------------------------


def test_multi_run_draws_each_model_the_mean_and_a_one_std_band():
    accuracies = [[0.2, 0.6, 0.8], [0.4, 0.6, 1.0], [0.6, 0.9, 1.0]]
    histories = [{"epoch": [1, 2, 3], "val_accuracy": a, "val_loss": [1.0, 0.5, 0.2]} for a in accuracies]
    fig = plots.plot_multi_run(histories, "accuracy")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["Model 1", "Model 2", "Model 3", "mean"]
    for line, values in zip(lines, accuracies, strict=False):
        assert list(line.get_ydata()) == values
    mean, std = np.mean(accuracies, axis=0), np.std(accuracies, axis=0)
    np.testing.assert_allclose(lines[-1].get_ydata(), mean)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert band.get_label() == "mean ± 1 std"
    vertices = band.get_paths()[0].vertices
    for epoch, low, high in zip([1, 2, 3], mean - std, mean + std, strict=True):
        at_epoch = vertices[np.isclose(vertices[:, 0], epoch), 1]
        assert np.isclose(at_epoch, low).any() and np.isclose(at_epoch, high).any()
    assert ax.get_title() == "Model Accuracy (custom digits)" and ax.get_xlabel() == "Epoch"
    assert list(ax.get_xticks()) == [1, 2, 3]


def test_multi_run_statistics_use_only_the_runs_that_reached_each_epoch():
    histories = [{"epoch": [1, 2], "val_loss": [1.0, 0.5]}, {"epoch": [1], "val_loss": [3.0]}]
    mean_line = plots.plot_multi_run(histories, "loss").axes[0].get_lines()[-1]
    np.testing.assert_allclose(mean_line.get_ydata(), [2.0, 0.5])


def test_a_multi_run_directory_gives_figures_9_and_10_and_the_prediction_matrix(tmp_path):
    directory = _write_multi_run(tmp_path / "eval", [[0.4, 0.8], [0.6, 1.0]], [[1.2, 0.6], [1.0, 0.4]])
    (directory / "predictions.csv").write_text("file,label,run-1,run-2\n3.csv,3,3,8\n8.csv,8,8,8\n")
    figures = plots.run_figures(runs.read_for_figures([directory]))
    assert list(figures) == [plots.FIG9, plots.FIG10, plots.PREDICTIONS]
    assert list(figures[plots.FIG10].axes[0].get_lines()[1].get_ydata()) == [1.0, 0.4]
    matrix_ax = figures[plots.PREDICTIONS].axes[0]
    assert [t.get_text() for t in matrix_ax.texts] == ["3", "8", "8", "8"]  # row = model, column = image
    assert [t.get_text() for t in matrix_ax.get_yticklabels()] == ["Model 1 (100%)", "Model 2 (50%)"]


# --- several runs ----------------------------------------------------------------------------------------------------


def test_overlay_legend_names_the_config_key_that_differs(tmp_path):
    a = _write_run(tmp_path / "a", config=_config(0.01))
    b = _write_run(tmp_path / "b", config=_config(0.001))
    fig = plots.run_figures(runs.read_for_figures([a, b]))[plots.COMPARE]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [
        "optimizer.learning_rate=0.01 (train)",
        "optimizer.learning_rate=0.01 (test)",
        "optimizer.learning_rate=0.001 (train)",
        "optimizer.learning_rate=0.001 (test)",
    ]


def test_config_labels_fall_back_to_directory_names():
    same = {"train": {"seed": 0}}
    assert plots.config_labels([same, same], ["a", "b"]) == ["a", "b"]
    assert plots.config_labels([same, None], ["a", "b"]) == ["a", "b"]
    seeds = [{"train": {"seed": s}} for s in (0, 0, 1)]
    assert plots.config_labels(seeds, ["x", "y", "z"]) == ["train.seed=0 (x)", "train.seed=0 (y)", "train.seed=1 (z)"]
    many = [{"regularization": {"l2": v, "early_stopping": v > 0, "augment_shift": int(v * 10)}} for v in (0, 0.3)]
    assert plots.config_labels(many, ["plain", "cured"]) == ["plain", "cured"]  # too long to read: the names


# --- diagnostics and digits ------------------------------------------------------------------------------------------


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    fig = plots.plot_confusion_matrix(matrix)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["1", "1", "0", "0", "1", "0", "1", "0", "1"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted digit", "True digit")
    assert "accuracy 60.00%" in ax.get_title()


def test_confident_mistakes_are_wrong_and_sorted_by_probability():
    labels = np.array([0, 1, 2, 3])
    probabilities = np.array([[0.9, 0.1, 0, 0], [0.7, 0.3, 0, 0], [0.0, 0.95, 0.05, 0], [0, 0, 0.6, 0.4]])
    assert plots.confident_mistakes(labels, probabilities, 5).tolist() == [2, 1, 3]
    fig = plots.plot_confident_mistakes(np.zeros((4, 28, 28)), labels, probabilities, count=2)
    captions = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert captions == ["label 2\npred 1 (95%)", "label 1\npred 0 (70%)"]


def test_digit_grid_captions_wrong_predictions_in_red():
    fig = plots.plot_digit_grid(np.zeros((2, 784)), [3, 8], [3, 9], [0.99, 0.51])
    first, second = fig.axes[:2]
    assert first.get_title() == "label 3\npred 3 (99%)" and second.get_title() == "label 8\npred 9 (51%)"
    assert second.title.get_color() == plots._WRONG_COLOR and first.title.get_color() == "black"
    assert first.get_images()[0].get_array().shape == (28, 28)


# --- files -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", plots.FORMATS)
def test_same_figure_twice_gives_identical_bytes(tmp_path, fmt):
    for name in ("first", "second"):
        plots.save_figure(plots.plot_history(HISTORY), tmp_path / f"{name}.{fmt}")
    first = (tmp_path / f"first.{fmt}").read_bytes()
    assert first == (tmp_path / f"second.{fmt}").read_bytes()
    assert first.startswith({"png": PNG_SIGNATURE, "svg": b"<?xml", "pdf": b"%PDF"}[fmt])


def test_unknown_figure_format_is_a_user_error(tmp_path):
    with pytest.raises(ValueError, match="fig.jpg: unknown figure format 'jpg'"):
        plots.save_figure(plots.plot_history(HISTORY), tmp_path / "fig.jpg")


# --- the plot command ------------------------------------------------------------------------------------------------


def test_plot_writes_figure_6_into_the_run_directory(cli_env):
    _write_run(cli_env / "run", config=_config(0.001))
    result = invoke("plot", "run")
    assert result.exit_code == 0, result.output
    png = (cli_env / "run" / "fig6_accuracy_loss.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    assert "Wrote run/fig6_accuracy_loss.png" in result.stdout


def test_plot_without_arguments_takes_the_latest_run_and_svg_goes_to_out(cli_env):
    _write_run(cli_env / "runs" / "20250101T000000Z-old")
    _write_run(cli_env / "runs" / "20250102T000000Z-new")
    result = invoke("plot", "--format", "svg", "--out", "figures/here")
    assert result.exit_code == 0, result.output
    assert "20250102T000000Z-new" in result.stderr
    svg = (cli_env / "figures" / "here" / "fig6_accuracy_loss.svg").read_bytes()
    assert svg.startswith(b"<?xml") and b"Model Accuracy" in svg and svg.rstrip().endswith(b"</svg>")


def test_plot_several_runs_and_a_multi_run_directory(cli_env):
    _write_run(cli_env / "a", config=_config(0.01))
    _write_run(cli_env / "b", config=_config(0.001))
    assert invoke("plot", "a", "b", "--out", "cmp").exit_code == 0
    assert (cli_env / "cmp" / "compare_accuracy_loss.png").read_bytes().startswith(PNG_SIGNATURE)
    _write_multi_run(cli_env / "eval", [[0.4, 0.8]], [[1.2, 0.6]])
    assert invoke("plot", "eval").exit_code == 0
    assert sorted(p.name for p in (cli_env / "eval").glob("*.png")) == [
        "fig10_custom_loss.png",
        "fig9_custom_accuracy.png",
    ]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        (None, "run/history.csv: no history.csv here"),
        ("epoch,loss,accuracy\n1,0.5,oops\n", "run/history.csv:2: column 'accuracy' is not a number: 'oops'"),
        ("epoch,loss,accuracy\n1,0.5\n", "run/history.csv:2: expected 3 values, got 2"),
        ("epoch,loss\n1,0.5\n", "run/history.csv: missing column 'accuracy'"),
        ("epoch,loss,accuracy\n", "run/history.csv: no epochs recorded yet"),
    ],
)
def test_missing_or_malformed_history_is_one_line_exit_2_and_writes_nothing(cli_env, history, message):
    (cli_env / "run").mkdir()
    if history is not None:
        (cli_env / "run" / "history.csv").write_text(history)
    result = invoke("plot", "run")
    _assert_one_line_error(result, message)
    assert not list((cli_env / "run").glob("fig*"))


def test_one_bad_run_among_several_writes_nothing(cli_env):
    _write_run(cli_env / "good")
    (cli_env / "bad").mkdir()
    _assert_one_line_error(invoke("plot", "good", "bad", "--out", "cmp"), "bad/history.csv")
    assert not (cli_env / "cmp").exists()


def test_several_runs_need_out_and_show_without_a_display_only_says_so(cli_env, monkeypatch):
    _write_run(cli_env / "a")
    _write_run(cli_env / "b")
    _assert_one_line_error(invoke("plot", "a", "b"), "--out: needed when plotting several run directories")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = invoke("plot", "a", "--show")
    assert result.exit_code == 0
    assert "--show: no display available" in result.stderr
    assert (cli_env / "a" / "fig6_accuracy_loss.png").exists()


# --- with a trained model --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch run on tiny separable digits (seconds), trained through the CLI as a user would."""
    root = tmp_path_factory.mktemp("plots-run")
    data = root / "idx"
    data.mkdir()
    for prefix, (n, seed) in {"train": (640, 0), "t10k": (160, 1)}.items():
        images, labels = _separable_digits(n, seed)
        write_idx(data / f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / f"{prefix}-labels-idx1-ubyte", labels)
    result = invoke("train", "--data-dir", data, "--epochs", "1", "--out", root / "run", "-q")
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.mark.slow
def test_train_draws_figure_6_unless_told_not_to(trained_run, cli_env):
    assert (trained_run / "fig6_accuracy_loss.png").read_bytes().startswith(PNG_SIGNATURE)
    config = trained_run / runs.CONFIG_FILE
    data_dir = config.read_text().split('data_dir = "')[1].split('"')[0]
    result = invoke("train", "--data-dir", data_dir, "--epochs", "1", "--out", "quiet-run", "-q", "--no-plots")
    assert result.exit_code == 0, result.output
    assert not list((cli_env / "quiet-run").glob("*.png"))


@pytest.mark.slow
def test_diagnostics_draw_the_confusion_matrix_and_confident_mistakes(trained_run, cli_env):
    result = invoke("plot", trained_run, "--diagnostics", "--out", "diag")
    assert result.exit_code == 0, result.output
    for name in ("fig6_accuracy_loss", "confusion_matrix", "confident_mistakes"):
        assert (cli_env / "diag" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_diagnostics_without_a_model_is_a_user_error(cli_env):
    _write_run(cli_env / "run")
    _assert_one_line_error(invoke("plot", "run", "--diagnostics"), "run/model.keras: no model here")
    assert not list((cli_env / "run").glob("*.png"))


# --- the show command ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mnist
def test_show_draws_the_papers_training_image_20(cli_env, mnist):
    result = invoke("show")
    assert result.exit_code == 0, result.output
    png = (cli_env / "mnist-train-20.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    fig = plots.plot_digit(mnist.x_train[20], "x")
    (image,) = fig.axes[0].get_images()
    assert image.get_cmap().name == "binary"
    np.testing.assert_array_equal(image.get_array(), mnist.x_train[20])


@pytest.mark.mnist
@pytest.mark.slow
def test_show_grid_with_a_model_captions_predictions(trained_run, cli_env, mnist):
    result = invoke("show", "--grid", "8", "--model", trained_run, "--out", "grid.svg")
    assert result.exit_code == 0, result.output
    svg = (cli_env / "grid.svg").read_bytes()
    assert svg.startswith(b"<?xml") and svg.rstrip().endswith(b"</svg>")
    assert svg.count(b"<!-- pred ") == 8  # SVG text is drawn as glyph paths, each string kept as a comment
    model_file = trained_run / runs.MODEL_FILE
    assert invoke("show", "--index", "3", "--model", model_file, "--out", "three.png").exit_code == 0
    assert (cli_env / "three.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "60000"], "--index: expected 0..59999, got 60000"),
        (["--index", "0", "--grid", "4"], "--index, --grid and --custom-csv: choose one"),
        (["--out", "digit.jpg"], "--out digit.jpg: expected a .png, .svg or .pdf file name"),
    ],
)
@pytest.mark.slow
@pytest.mark.mnist
def test_show_user_errors(cli_env, args, message):
    _assert_one_line_error(invoke("show", *args), message)
    assert not list(cli_env.iterdir())


def test_show_custom_digits_from_csv(cli_env):
    grid = np.zeros((28, 28), dtype=int)
    grid[4:24, 12:16] = 255
    (cli_env / "1.csv").write_text("\n".join(",".join(str(v) for v in row) for row in grid) + "\n")
    result = invoke("show", "--custom-csv", "1.csv", "--out", "mine.png")
    assert result.exit_code == 0, result.output
    assert (cli_env / "mine.png").read_bytes().startswith(PNG_SIGNATURE)


# --- figures 3 and 4, gradient norms (section 6) ---------------------------------------------------------------------


def test_gradient_norms_draw_one_log_scale_line_per_layer_input_side_first():
    history = {
        **HISTORY,
        "grad_norm_digits": [0.3, 0.2, 0.1],
        "grad_norm_hidden_10": [0.01, 0.01, 0.01],
        "grad_norm_hidden_2": [0.02, 0.02, 0.02],
        "grad_norm_hidden_1": [0.001, 0.002, 0.003],
    }
    fig = plots.plot_gradient_norms(history)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["hidden_1", "hidden_2", "hidden_10", "digits"]
    assert list(ax.get_lines()[0].get_ydata()) == [0.001, 0.002, 0.003]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "Epoch"
    with pytest.raises(ValueError, match="no grad_norm_"):
        plots.plot_gradient_norms(HISTORY)


def test_a_run_with_gradient_norms_also_gets_their_figure(tmp_path):
    run_dir = _write_run(tmp_path / "run", {**HISTORY, "grad_norm_hidden_1": [0.1, 0.2, 0.3]})
    assert set(plots.run_figures(runs.read_for_figures([run_dir]))) == {plots.FIG6, plots.GRADIENTS}


def test_figure_4_averages_blocks_of_steps_on_a_log_axis():
    steps = list(range(1, 121))
    losses = [2.0] * 50 + [1.0] * 50 + [0.5] * 20
    fig = plots.plot_loss_vs_step({"optimizer.learning_rate=0.1": (steps, losses)}, smoothing=50)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [50, 100, 120]
    assert list(line.get_ydata()) == [2.0, 1.0, 0.5]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "Training step (batch)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["optimizer.learning_rate=0.1"]


def test_figure_3_derivatives_are_those_of_relu_sigmoid_and_tanh():
    x = np.array([-2.0, 0.0, 0.5, 3.0])
    curves = plots.activation_curves(x)
    np.testing.assert_allclose(curves["relu"][0], [0, 0, 0.5, 3])
    np.testing.assert_allclose(curves["relu"][1], [0, 0, 1, 1])
    sigmoid = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(curves["sigmoid"][1], np.gradient(sigmoid, x), atol=0.1)  # shape, roughly
    assert curves["sigmoid"][1].max() == pytest.approx(0.25)  # the most a sigmoid layer passes back
    np.testing.assert_allclose(curves["tanh"][1], 1 / np.cosh(x) ** 2)
    fig = plots.plot_activations()
    left, right = fig.axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["relu", "sigmoid", "tanh"]
    assert right.get_title() == "Derivative f'(z)"


def test_plot_activations_needs_no_run(cli_env):
    result = invoke("plot", "--activations", "--out", "figures", "--format", "svg")
    assert result.exit_code == 0, result.output
    assert (cli_env / "figures" / "fig3_activations.svg").read_bytes().startswith(b"<?xml")


def test_a_sweep_directory_gives_figure_4_with_a_line_per_setting(cli_env):
    sweep = cli_env / "sweep"
    planned = []
    for setting, directory, level in (("lr=0.1", "a__seed0", 1.0), ("lr=0.1", "a__seed1", 3.0), ("lr=1", "b", 9.0)):
        (sweep / directory).mkdir(parents=True)
        rows = "".join(f"1,{step},{level}\n" for step in range(1, 101))
        (sweep / directory / runs.STEPS_FILE).write_text("epoch,step,loss\n" + rows)
        planned.append({"directory": directory, "setting": setting, "seed": 0, "fold": None})
    runs.write_json(sweep / "sweep.json", {"format_version": 1, "fingerprint": "x", "runs": planned})
    figures = plots.run_figures(runs.read_for_figures([sweep]))
    (ax,) = figures[plots.FIG4].axes
    assert [line.get_label() for line in ax.get_lines()] == ["lr=0.1", "lr=1"]
    assert list(ax.get_lines()[0].get_ydata()) == [2.0, 2.0]  # the mean of its two seeds
    result = invoke("plot", sweep)
    assert result.exit_code == 0 and (sweep / "fig4_loss_vs_step.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_run_validated_on_held_out_images_calls_that_curve_validation(tmp_path):
    run_dir = _write_run(tmp_path / "run", config='[validation]\nsource = "holdout"\n')
    (accuracy, _) = plots.run_figures(runs.read_for_figures([run_dir]))[plots.FIG6].axes
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["train", "validation"]


@pytest.mark.parametrize("epoch", ["inf", "nan", "", "1e300", "0", "-3", "1.5", "2000000000"])
def test_epochs_and_steps_are_counting_numbers_or_the_file_is_refused_in_one_line(cli_env, epoch):
    (cli_env / "run").mkdir()
    (cli_env / "run" / "history.csv").write_text(f"epoch,loss,accuracy\n1,0.5,0.9\n{epoch},0.4,0.95\n")
    result = invoke("plot", "run")
    _assert_one_line_error(result, "run/history.csv:3: column 'epoch' must be a whole number 1-1,000,000,000, got")
    assert not list((cli_env / "run").glob("fig*"))
    (cli_env / "run" / "steps.csv").write_text(f"epoch,step,loss\n1,{epoch},0.5\n")
    with pytest.raises(UserInputError, match="steps.csv:2: column 'step' must be a whole number"):
        runs.read_steps(cli_env / "run" / "steps.csv")

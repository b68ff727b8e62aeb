"""Beyond the paper: convolution layers (LeNet-5) and batch normalisation as model knobs.

The paper's dense network stays the default, layer for layer and file for file; a
convolutional or batch-normalised run trains, resumes and repeats exactly like it.
"""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.core.config import config_to_toml, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs import directory as runs
from tests.test_cli import tiny_data  # noqa: F401
from tests.test_experiment import _config, _run, _same_results, _stop_after, dataset  # noqa: F401

CONFIGS = Path(__file__).parent.parent / "configs"
LENET_PARAMETERS = (6 * 26) + (16 * (6 * 25 + 1)) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)  # 61,706
SMALL_CONV = {"model.conv_filters": [4, 8], "model.conv_kernel": 3, "model.hidden_units": [32], "model.dropout": 0}


def test_the_papers_saved_config_names_none_of_the_new_keys():
    text = config_to_toml(load_config(CONFIGS / "paper.toml"))
    assert text == config_to_toml(load_config(None))
    assert not any(key in text for key in ("batch_norm", "conv_", "pool"))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("conv_filters = [6, 0]", "model.conv_filters: must be at least 1, got 0"),
        ("conv_filters = [-6]", "model.conv_filters: must be at least 1, got -6"),
        ("conv_filters = [6]\nconv_kernel = 0", "model.conv_kernel: must be at least 1, got 0"),
        (
            "conv_filters = [6, 16, 16]",
            "model.conv_kernel: 5 is larger than the 4x4 image convolution 3 gets after the layers before it",
        ),
        ("conv_filters = [6]\nconv_kernel = 30", "model.conv_kernel: 30 is larger than the 28x28 image"),
        ("conv_filters = [6]\npool = 40", "model.pool: pooling by 40 leaves no pixel after convolution 1"),
        ('conv_filters = [6]\nconv_padding = ["same", "valid"]', "model.conv_padding: 2 paddings for 1 convolution"),
    ],
)
def test_bad_convolution_values_are_refused_in_one_line_naming_the_key_and_nothing_is_written(cli_env, toml, message):
    (cli_env / "bad.toml").write_text(f"[model]\n{toml}\n")
    result = CliRunner().invoke(main, ["train", "--config", "bad.toml", "--out", "run"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (cli_env / "run").exists() and not (cli_env / "runs").exists()


def test_lenet_shrinks_the_image_28_14_10_5():
    from mnist_dnn.core.config import conv_sides

    assert conv_sides(load_config(CONFIGS / "lenet.toml").model) == [(28, 14), (14, 5)]
    with pytest.raises(UserInputError, match="model.conv_kernel: 15 is larger than the 14x14 image convolution 2"):
        load_config(CONFIGS / "lenet.toml", {"model.conv_kernel": 15})


@pytest.mark.slow
def test_lenet_5_layer_by_layer():
    from mnist_dnn.training.model import build_model, model_kind

    cfg = load_config(CONFIGS / "lenet.toml")
    model = build_model(cfg.model)
    shapes = [(layer.name, layer.output.shape[1:]) for layer in model.layers]
    assert shapes == [
        ("image", (28, 28, 1)),
        ("conv_1", (28, 28, 6)),
        ("pool_1", (14, 14, 6)),
        ("conv_2", (10, 10, 16)),
        ("pool_2", (5, 5, 16)),
        ("features", (400,)),
        ("hidden_1", (120,)),
        ("hidden_2", (84,)),
        ("digits", (10,)),
    ]
    assert model.input_shape == (None, 784)  # the data pipeline and the export contract are unchanged
    assert model.count_params() == LENET_PARAMETERS == 61_706
    assert model_kind(cfg.model) == "convolutional"


@pytest.mark.slow
def test_batch_norm_sits_between_each_hidden_dense_layer_and_its_activation():
    from mnist_dnn.training.model import build_model, model_kind

    cfg = load_config(CONFIGS / "deep_sigmoid_bn.toml", {"model.hidden_units": [16, 8]})
    model = build_model(cfg.model)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "BatchNormalization", "Activation"] * 2 + ["Dense"]
    assert [layer.use_bias for layer in model.layers if type(layer).__name__ == "Dense"] == [False, False, True]
    assert model_kind(cfg.model) == "dense + batch norm"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_batch_norm_moving_statistics_are_trained_on_both_engines_and_resume_exactly(dataset, tmp_path, engine):  # noqa: F811
    import keras

    cfg = _config(**{"train.engine": engine, "model.batch_norm": True, "model.hidden_units": [16, 8]})
    _run(cfg, dataset, tmp_path / "straight")
    model = keras.saving.load_model(tmp_path / "straight" / runs.MODEL_FILE)
    moving_mean = model.get_layer("hidden_1_bn").moving_mean.numpy()
    assert np.abs(moving_mean).max() > 0  # starts at 0: the epochs moved it, on this engine too
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", extra_callbacks=(_stop_after(2),))
    _run(cfg, dataset, tmp_path / "cut", resume=True)
    _same_results(tmp_path / "straight", tmp_path / "cut")  # get_weights() includes the moving statistics


@pytest.mark.slow
def test_a_resumed_convolutional_run_ends_with_the_weights_of_an_uninterrupted_one(dataset, tmp_path):  # noqa: F811
    cfg = _config(**SMALL_CONV)
    _run(cfg, dataset, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", extra_callbacks=(_stop_after(2),))
    _run(cfg, dataset, tmp_path / "cut", resume=True)
    _same_results(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.slow
def test_a_convolutional_run_on_the_fused_engine_gives_the_same_files_for_the_same_seed(dataset, tmp_path):  # noqa: F811
    cfg = _config(**SMALL_CONV, **{"train.epochs": 2})
    first = _run(cfg, dataset, tmp_path / "a")
    second = _run(cfg, dataset, tmp_path / "b")
    _same_results(tmp_path / "a", tmp_path / "b")
    first.pop("timings"), second.pop("timings")
    assert first == second
    assert (tmp_path / "a" / "config.toml").read_bytes() == (tmp_path / "b" / "config.toml").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "handwriting_lenet", "deep_sigmoid_bn"])
def test_the_memory_estimate_counts_the_parameters_keras_builds(name):
    from mnist_dnn.core.memory import parameter_count
    from mnist_dnn.training.model import build_model

    cfg = load_config(CONFIGS / f"{name}.toml")
    assert parameter_count(cfg.model, 784, 10) == build_model(cfg.model).count_params()


def test_a_sweep_crosses_convolution_keys_and_refuses_a_bad_combination_naming_the_key():
    from mnist_dnn.experiments.sweep import parse_axis, plan_sweep

    lenet = load_config(CONFIGS / "lenet.toml")
    axes = [parse_axis("model.conv_kernel=3,5"), parse_axis("model.batch_norm=false,true")]
    plan = plan_sweep({"lenet": lenet}, axes, [0])
    assert [(run.config.model.conv_kernel, run.config.model.batch_norm) for run in plan] == [
        (3, False),
        (3, True),
        (5, False),
        (5, True),
    ]
    with pytest.raises(UserInputError, match=r"model.conv_kernel: 15 is larger than the 14x14 image"):
        plan_sweep({"lenet": lenet}, [parse_axis("model.conv_kernel=5,15")], [0])


def test_tune_searches_convolution_keys():
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    from mnist_dnn.experiments.tune import check_space, parse_dimension

    overrides = {"validation.source": "holdout", "train.backend": "jax", "train.engine": "fused"}
    base = load_config(CONFIGS / "lenet.toml", overrides)
    space = check_space(
        [
            parse_dimension("model.conv_filters=choice:[6,16],[16,32]"),
            parse_dimension("model.conv_kernel=int:3..5"),
            parse_dimension("model.batch_norm=choice:false,true"),
        ],
        base,
    )
    assert [dim.integer for dim in space] == [False, True, False]
    assert space[0].values == ([6, 16], [16, 32])
    with pytest.raises(UserInputError, match=r"model.conv_kernel: 29 is larger than the 28x28 image"):
        check_space([parse_dimension("model.conv_kernel=int:3..29")], base)


@pytest.mark.slow
def test_every_command_that_takes_a_model_takes_a_convolutional_one_with_batch_norm(cli_env, tiny_data):  # noqa: F811
    """train (TensorBoard on), eval on the test set and on custom digits, predict, show and plot --diagnostics."""
    digits = Path(__file__).parent.parent / "custom_digits"
    conv = ("--set", "model.conv_filters=[4, 8]", "--set", "model.hidden_units=[16]", "--set", "model.batch_norm=true")
    trained = CliRunner().invoke(main, ["train", "--data-dir", str(tiny_data), "--epochs", "1", *conv, "--out", "run"])
    assert trained.exit_code == 0, trained.output
    assert "grad_norm_conv_1" in (cli_env / "run" / runs.HISTORY_FILE).read_text().splitlines()[0]
    assert any((cli_env / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    for command in (
        ["eval", "--model", "run", "--data-dir", str(tiny_data)],
        ["eval", "--model", "run", "--custom-csv", str(digits), "--json"],
        ["predict", str(digits / "3.csv"), "--model", "run"],
        ["show", "--grid", "4", "--model", "run", "--data-dir", str(tiny_data), "--out", "grid.png"],
        ["plot", "run", "--diagnostics"],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, (command, result.output)
    assert (cli_env / "grid.png").is_file() and (cli_env / "run" / "confusion_matrix.png").is_file()
    assert (cli_env / "run" / "gradient_norms.png").is_file()


def test_the_gradient_norm_figure_draws_convolutions_first_input_side_first():
    from mnist_dnn.figures.plots import plot_gradient_norms

    history = {"epoch": [1.0, 2.0]} | {
        f"grad_norm_{layer}": [1.0, 0.5] for layer in ("digits", "hidden_2", "conv_2", "hidden_1", "conv_1")
    }
    legend = plot_gradient_norms(history).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["conv_1", "conv_2", "hidden_1", "hidden_2", "digits"]

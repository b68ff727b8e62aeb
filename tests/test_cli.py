"""The CLI through Click's CliRunner, on a tiny synthetic dataset in IDX layout (seconds, not minutes)."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.runs import records
from tests.conftest import REPO, mnist_dnn_command
from tests.test_train import write_separable_idx


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A Fashion-MNIST-like stand-in: right layout, not MNIST's checksums, learnable in one epoch."""
    directory = tmp_path_factory.mktemp("tiny-idx")
    return write_separable_idx(directory, 640, 160)


def run(*args, **kwargs):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, **kwargs)
    return result


COMMANDS = (
    "train",
    "fetch",
    "config show",
    "config list",
    "digits copy",
    "sweep",
    "tune",
    "plot",
    "show",
    "digitize",
    "eval",
    "predict",
    "serve",
    "export",
)


def test_help_lists_every_command_with_an_example():
    result = run("--help")
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split()
    for command in COMMANDS:
        assert command.split()[0] in listed
        sub = run(*command.split(), "--help")
        assert sub.exit_code == 0
        assert "mnist-dnn " + command in sub.output  # the example in the docstring
    assert sorted(main.commands) == sorted({command.split()[0] for command in COMMANDS})


def test_version():
    from mnist_dnn import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.slow
def test_importing_the_cli_or_the_package_imports_no_framework():
    code = (
        "import sys, mnist_dnn, mnist_dnn.cli.app; dir(mnist_dnn); "
        "from mnist_dnn import train, sweep, load_run, predict, plot_history; "
        "frameworks = ('keras', 'tensorflow', 'jax', 'torch', 'numpy', 'pandas', 'ray', 'optuna', 'starlette', "
        "'matplotlib'); "
        "print(sorted(m for m in frameworks if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_config_show_prints_the_resolved_config():
    result = run("config", "show", "--epochs", "3", "--backend", "tensorflow")
    assert result.exit_code == 0
    assert "epochs = 3" in result.output
    assert "batch_size = 64" in result.output
    assert 'backend = "tensorflow"' in result.output


def test_config_show_explain_documents_each_key():
    result = run("config", "show", "--explain")
    assert "# Images per gradient step (section 5.1)." in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "Error: train.epochs: must be at least 1, got 0"),
        (["--batch-size", "-1"], "Error: train.batch_size: must be at least 1, got -1"),
        (["--epochs", "ten"], "Error: Invalid value for '--epochs': 'ten' is not a valid integer."),
        (["--learning-rate", "-1"], "Error: optimizer.learning_rate: must be at least 0.0, got -1.0"),
        (["--backend", "theano"], "Error: Invalid value for '--backend'"),
        (["--config", "missing.toml"], "Error: missing.toml: no such config file, and no built-in config of that name"),
        (["--data-dir", "no/such/dir"], "no/such/dir"),
        (["--name", "../escape"], "Error: --name:"),
        (["--bogus"], "Error: No such option '--bogus'. Did you mean '--out'? (see 'mnist-dnn train --help')"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(cli_env, args, message):
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (cli_env / "runs").exists()


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["sweep", "--set", "optimizer.learning_rate=1e-3,1e-2", "--cores", "{more}"], {}),
        (["sweep", "--set", "optimizer.learning_rate=1e-3,1e-2"], {"MNIST_DNN_CORES": "{more}"}),
        (["tune", "--space", "optimizer.learning_rate=log:1e-4..1e-1", "--trials", "2", "--cores", "{more}"], {}),
        (["eval", "--custom-csv", str(REPO / "custom_digits" / "3.csv")], {"MNIST_DNN_CORES": "{more}"}),
    ],
)
def test_more_cores_than_this_process_may_run_on_are_one_line_exit_2_and_write_nothing(cli_env, monkeypatch, args, env):
    """`--cores 100000` made XLA build 100,000 CPU devices for minutes, deaf to SIGTERM, then abort."""
    more = str(len(os.sched_getaffinity(0)) + 1)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(more=more))
    result = CliRunner().invoke(main, [arg.format(more=more) for arg in args])
    assert result.exit_code == 2, result.output
    source = "$MNIST_DNN_CORES" if env else "--cores"
    expected = f"Error: {source} {more}: more than the {int(more) - 1} CPU core"
    assert result.stderr.startswith(expected) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (cli_env / "runs").exists()


def test_bad_config_key_in_a_file_is_named(cli_env):
    (cli_env / "mine.toml").write_text("[train]\nepochz = 3\n")
    result = CliRunner().invoke(main, ["train", "--config", "mine.toml"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: mine.toml: unknown key 'train.epochz' "
        "(known in [train]: epochs, batch_size, seed, loss, backend, engine, shuffle)"
    )


def test_existing_out_directory_is_refused(cli_env, tiny_data):
    (cli_env / "taken").mkdir()
    result = CliRunner().invoke(main, ["train", "--data-dir", str(tiny_data), "--out", "taken", "-q"])
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert list((cli_env / "taken").iterdir()) == []


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(cli_env, tiny_data):
    result = run("train", "--data-dir", str(tiny_data), "--epochs", "2", "--out", "run", "--log-every-epoch")
    assert result.exit_code == 0, result.output
    run_dir = cli_env / "run"
    assert {p.name for p in run_dir.iterdir()} >= {"config.toml", "history.csv", "metrics.json", "model.keras"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"Test loss: {metrics['test_loss']}" in result.stdout
    assert f"Test accuracy: {metrics['test_accuracy']}" in result.stdout
    assert metrics["test_accuracy"] > 0.9
    assert metrics["epochs_completed"] == 2
    assert metrics["backend"] == "jax" and metrics["seed"] == 0 and metrics["parameters"] == 355_110
    assert metrics["dataset"]["name"] != "mnist"
    assert metrics["dataset"]["train_size"] == 640
    assert set(metrics["versions"]) >= {"keras", "jax", "numpy", "python", "mnist_dnn"}
    history = records.read_history(run_dir / "history.csv")
    assert history["epoch"] == [1.0, 2.0]
    assert history["val_accuracy"][-1] == pytest.approx(metrics["test_accuracy"])
    assert "epochs = 2" in (run_dir / "config.toml").read_text()
    assert 'backend = "jax"' in (run_dir / "config.toml").read_text()


@pytest.mark.slow
def test_resolved_config_reloads_to_the_same_run_settings(cli_env, tiny_data):
    from mnist_dnn.core.config import load_config

    run("train", "--data-dir", str(tiny_data), "--epochs", "1", "--seed", "4", "--out", "run", "-q")
    cfg = load_config(cli_env / "run" / "config.toml")
    assert (cfg.train.epochs, cfg.train.seed, cfg.train.backend) == (1, 4, "jax")
    assert cfg.data.data_dir == str(tiny_data)


@pytest.mark.slow
def test_default_run_directory_is_under_runs(cli_env, tiny_data):
    result = run("train", "--data-dir", str(tiny_data), "--epochs", "1", "--name", "quick", "-q")
    assert result.exit_code == 0
    (run_dir,) = (cli_env / "runs").iterdir()
    assert run_dir.name.endswith("Z-quick")
    assert f"Saved: {run_dir.relative_to(cli_env)}" in result.stdout


@pytest.mark.slow
def test_same_seed_runs_are_byte_identical_apart_from_timing(cli_env, tiny_data):
    for out in ("a", "b"):
        assert run("train", "--data-dir", str(tiny_data), "--epochs", "2", "--out", out, "-q").exit_code == 0
    assert _without_timing(cli_env / "a") == _without_timing(cli_env / "b")
    assert (cli_env / "a" / "config.toml").read_bytes() == (cli_env / "b" / "config.toml").read_bytes()


def _without_timing(run_dir):
    """history.csv without its epoch_time_s column, and metrics.json without its timings."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in records.TIMING_COLUMNS]
    history = [",".join(line.split(",")[i] for i in keep) for line in lines]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("timings")
    return history, json.dumps(metrics, sort_keys=True)


@pytest.mark.slow
def test_saved_model_loads_with_plain_keras_and_scores_the_same(cli_env, tiny_data):
    import keras

    from mnist_dnn.data.mnist import load_mnist
    from mnist_dnn.data.preprocess import prepare

    run("train", "--data-dir", str(tiny_data), "--epochs", "1", "--out", "run", "-q")
    metrics = json.loads((cli_env / "run" / "metrics.json").read_text())
    model = keras.models.load_model(cli_env / "run" / "model.keras")
    data = load_mnist(tiny_data)
    x, y = prepare(data.x_test, data.y_test, "scale", 10)
    scores = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert scores["loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)


@pytest.mark.slow
def test_console_script_runs_as_a_subprocess(cli_env):
    out = subprocess.run([*mnist_dnn_command(), "config", "show"], capture_output=True, text=True, cwd=cli_env)
    assert out.returncode == 0, out.stderr
    assert "hidden_units = [400, 100]" in out.stdout


@pytest.mark.slow
def test_user_error_in_a_subprocess_has_no_traceback(cli_env):
    out = subprocess.run([*mnist_dnn_command(), "train", "--epochs", "0"], capture_output=True, text=True, cwd=cli_env)
    assert out.returncode == 2
    assert out.stderr == "Error: train.epochs: must be at least 1, got 0\n"
    assert not (cli_env / "runs").exists()


@pytest.mark.slow
def test_set_changes_any_key_and_config_show_agrees(cli_env, tiny_data):
    result = run("config", "show", "--set", "model.activation=tanh", "--set", "model.hidden_units=[32,16]")
    assert 'activation = "tanh"' in result.output and "hidden_units = [32, 16]" in result.output
    result = run(
        "train",
        "--data-dir",
        str(tiny_data),
        "--epochs",
        "1",
        "--out",
        "run",
        "-q",
        "--set",
        "optimizer.name=sgd",
        "--set",
        "optimizer.learning_rate=0.1",
        "--learning-rate",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    text = (cli_env / "run" / "config.toml").read_text()
    assert 'name = "sgd"' in text and "learning_rate = 0.2" in text  # the named flag wins over --set
    bad = CliRunner().invoke(main, ["train", "--set", "model.activation=sigmod"])
    assert bad.exit_code == 2 and "model.activation: expected one of" in bad.stderr


@pytest.mark.slow
def test_sweep_trains_the_grid_ranks_it_and_continues_where_it_stopped(cli_env, tiny_data):
    args = [
        "sweep",
        "--data-dir",
        str(tiny_data),
        "--epochs",
        "1",
        "--seeds",
        "0-1",
        "--out",
        "lr",
        "--set",
        "optimizer.learning_rate=0.001,0.0001",
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| rank | setting | runs | test accuracy | test loss |"
    assert lines[2].startswith("| 1 | optimizer.learning_rate=0.001 | 2 |")  # 1e-4 learns less in one epoch
    sweep_dir = cli_env / "lr"
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [
        "learning_rate-0.0001__seed0",
        "learning_rate-0.0001__seed1",
        "learning_rate-0.001__seed0",
        "learning_rate-0.001__seed1",
    ]
    assert (sweep_dir / "fig4_loss_vs_step.png").stat().st_size > 0
    alone = run("train", "--data-dir", str(tiny_data), "--epochs", "1", "--seed", "1", "--out", "alone", "-q")
    assert alone.exit_code == 0
    assert _without_timing(cli_env / "alone")[0] == _without_timing(sweep_dir / "learning_rate-0.001__seed1")[0]

    again = run(*args)
    assert again.exit_code == 0
    assert again.stderr.count("(finished before)") == 4
    assert again.stdout == result.stdout
    other = CliRunner().invoke(main, [*args[:-1], "optimizer.learning_rate=0.01"])
    assert other.exit_code == 2 and "holds a different sweep" in other.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.seed=1,2"], "--set train.seed: use --seeds"),
        (["--set", "model.dropout=0.5,1.5"], "--set model.dropout=1.5: model.dropout: must be at most 0.99"),
        (["--seeds", "3-1"], "--seeds: expected a range low-high"),
        (["--folds", "3", "--set", "validation.fraction=0.2"], "--set validation.fraction: --folds sets"),
    ],
)
def test_sweep_user_errors_come_before_any_training(cli_env, args, message):
    result = CliRunner().invoke(main, ["sweep", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (cli_env / "runs").exists()


@pytest.mark.slow
@pytest.mark.mnist
def test_a_train_limit_beyond_the_training_set_is_refused_not_silently_capped(cli_env):
    from mnist_dnn.core.config import Config, DataConfig
    from mnist_dnn.data.splits import split_indices

    result = CliRunner().invoke(main, ["train", "--set", "data.train_limit=60001", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "Error: data.train_limit: 60,001 is more than the 60,000 training images there are\n"
    assert not (cli_env / "runs").exists()
    assert len(split_indices(100, DataConfig(train_limit=100), Config().validation, 0)[0]) == 100

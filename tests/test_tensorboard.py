"""TensorBoard event files, read back with tensorboard's own reader, against history.csv and steps.csv."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs.tensorboard import BOARD_DIR, history_tag
from tests.conftest import REPO
from tests.test_cli import tiny_data  # noqa: F401  (a fixture)
from tests.test_experiment import _config, _run, _stop_after, dataset  # noqa: F401  (dataset is a fixture)

pytestmark = pytest.mark.slow  # every test here trains a model


def read_board(directory: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(run, tag) -> [(step, value)] of every scalar under `directory`, via tensorboard's EventAccumulator."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    found = {}
    for events_dir in sorted({path.parent for path in directory.rglob("*tfevents*")}):
        reader = event_accumulator.EventAccumulator(str(events_dir), size_guidance={event_accumulator.TENSORS: 0})
        reader.Reload()
        for tag in reader.Tags()["tensors"]:
            values = [(event.step, tensor_util.make_ndarray(event.tensor_proto)) for event in reader.Tensors(tag)]
            name = str(events_dir.relative_to(directory))
            found[(name, tag)] = [(step, value.item() if value.size == 1 else value) for step, value in values]
    return found


def assert_board_matches_the_csv_files(run_dir: Path) -> None:
    """Every history.csv column and steps.csv's losses, equal as float32, each step once; the config as text."""
    board = read_board(run_dir / BOARD_DIR)
    history = runs.read_history(run_dir / runs.HISTORY_FILE)
    epochs = [int(e) for e in history["epoch"]]
    checked = set()
    for column, values in history.items():
        if column in ("epoch", *runs.TIMING_COLUMNS):
            continue
        directory, tag = history_tag(column)
        logged = board[(directory, tag)]
        assert [step for step, _ in logged] == epochs, column
        assert [np.float32(v) for _, v in logged] == [np.float32(v) for v in values], column
        checked.add((directory, tag))
    steps = runs.read_steps(run_dir / runs.STEPS_FILE)
    logged = board[("train", "batch_loss")]
    assert [step for step, _ in logged] == [int(s) for s in steps["step"]]  # no step twice, none missing
    assert [np.float32(v) for _, v in logged] == [np.float32(v) for v in steps["loss"]]
    checked.add(("train", "batch_loss"))
    ((step, text),) = board[(".", "config")]
    assert text.decode() == f"```toml\n{(run_dir / runs.CONFIG_FILE).read_text()}```"
    checked.add((".", "config"))
    sweep_only = {(".", "test_accuracy"), (".", "test_loss"), (".", "_hparams_/session_start_info")}
    assert set(board) - checked <= sweep_only  # nothing else, nothing stale


@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_event_files_hold_the_numbers_of_history_and_steps_csv(dataset, tmp_path, engine):  # noqa: F811
    """Both engines; a schedule, so the learning rate is logged too; per-layer gradient norms."""
    cfg = _config(**{"train.engine": engine, "optimizer.schedule": "exponential"})
    _run(cfg, dataset, tmp_path / "run")
    board = read_board(tmp_path / "run" / BOARD_DIR)
    assert {("train", "learning_rate"), ("validation", "epoch_accuracy")} <= set(board)
    assert {tag for run, tag in board if tag.startswith("grad_norm/")} == {
        "grad_norm/hidden_1",
        "grad_norm/hidden_2",
        "grad_norm/digits",
    }
    assert len(board[("train", "batch_loss")]) == 3 * 12  # 768 images = 12 batches of 64, 3 epochs
    assert_board_matches_the_csv_files(tmp_path / "run")


def test_a_resumed_run_continues_its_curves_without_duplicate_steps(dataset, tmp_path):  # noqa: F811
    """Checkpoints every 2 epochs, interrupted after epoch 3: epoch 3's events were written, then dropped."""
    cfg = _config(**{"train.epochs": 4})
    _run(cfg, dataset, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", checkpoint_every=2, extra_callbacks=(_stop_after(3),))
    assert [step for step, _ in read_board(tmp_path / "cut" / BOARD_DIR)[("train", "epoch_loss")]] == [1, 2, 3]
    _run(cfg, dataset, tmp_path / "cut", resume=True)
    assert_board_matches_the_csv_files(tmp_path / "cut")
    straight, cut = read_board(tmp_path / "straight" / BOARD_DIR), read_board(tmp_path / "cut" / BOARD_DIR)
    assert cut[("train", "batch_loss")] == straight[("train", "batch_loss")]
    assert cut[("validation", "epoch_loss")] == straight[("validation", "epoch_loss")]


def test_no_tensorboard_writes_no_event_files_and_the_same_config(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    for out, flags in (("with", []), ("without", ["--no-tensorboard"])):
        args = ["train", "--data-dir", str(tiny_data), "--epochs", "1", "--out", out, "-q", "--no-plots", *flags]
        assert CliRunner().invoke(main, args).exit_code == 0
    assert (tmp_path / "with" / BOARD_DIR).is_dir() and not (tmp_path / "without" / BOARD_DIR).exists()
    assert (tmp_path / "with" / "config.toml").read_bytes() == (tmp_path / "without" / "config.toml").read_bytes()
    assert_board_matches_the_csv_files(tmp_path / "with")


def test_every_run_of_the_custom_digit_experiment_has_its_event_files(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """Runs trained together (one vmapped program) each get their own curves."""
    monkeypatch.chdir(tmp_path)
    args = ["eval", "--custom-csv", str(REPO / "custom_digits"), "--runs", "2", "--epochs", "2"]
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tiny_data), "--out", "custom", "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    for run in ("run-1", "run-2"):
        assert_board_matches_the_csv_files(tmp_path / "custom" / run)


def test_a_sweep_opens_as_an_hparams_table(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """Each run a session grouped by its setting (seeds averaged), with the varying key and its test scores."""
    from tensorboard.plugins.hparams import metadata

    monkeypatch.chdir(tmp_path)
    args = ["sweep", "--data-dir", str(tiny_data), "--epochs", "1", "--seeds", "0-1", "--out", "lr", "-q"]
    result = CliRunner().invoke(main, [*args, "--no-plots", "--set", "optimizer.learning_rate=0.001,0.01"])
    assert result.exit_code == 0, result.output
    board = _plugin_data(tmp_path / "lr")
    experiment = metadata.parse_experiment_plugin_data(board[(".", metadata.EXPERIMENT_TAG)])
    assert [info.name for info in experiment.hparam_infos] == ["optimizer.learning_rate"]
    assert [m.name.tag for m in experiment.metric_infos][:2] == ["test_accuracy", "test_loss"]
    for run_dir in sorted(p for p in (tmp_path / "lr").iterdir() if p.is_dir()):
        metrics = runs.read_metrics(run_dir)
        name = f"{run_dir.name}/{BOARD_DIR}"
        session = metadata.parse_session_start_info_plugin_data(board[(name, metadata.SESSION_START_INFO_TAG)])
        rate = float(session.hparams["optimizer.learning_rate"].number_value)
        assert session.group_name == f"optimizer.learning_rate={rate}"
        assert f"seed{metrics['seed']}" in run_dir.name
        scalars = read_board(run_dir / BOARD_DIR)
        assert scalars[(".", "test_accuracy")] == [(1, np.float32(metrics["test_accuracy"]))]
        assert_board_matches_the_csv_files(run_dir)
    again = CliRunner().invoke(main, [*args, "--no-plots", "--set", "optimizer.learning_rate=0.001,0.01"])
    assert again.exit_code == 0  # continued: every run finished before, the HParams files are rewritten, not doubled
    run_dir = tmp_path / "lr" / "learning_rate-0.01__seed0"
    assert read_board(run_dir / BOARD_DIR)[(".", "test_loss")] == [
        (1, np.float32(runs.read_metrics(run_dir)["test_loss"]))
    ]


def _plugin_data(directory: Path) -> dict[tuple[str, str], bytes]:
    """(run, tag) -> the hparams plugin's content, as TensorBoard's plugin reads it."""
    from tensorboard.backend.event_processing import event_accumulator

    found = {}
    for events_dir in sorted({path.parent for path in directory.rglob("*tfevents*")}):
        reader = event_accumulator.EventAccumulator(str(events_dir), size_guidance={event_accumulator.TENSORS: 0})
        reader.Reload()
        try:
            contents = reader.PluginTagToContent("hparams")
        except KeyError:  # no hparams data in this directory
            continue
        for tag, content in contents.items():
            found[(str(events_dir.relative_to(directory)), tag)] = content
    return found


def test_a_jax_run_writes_its_event_files_without_tensorflow(tiny_data, tmp_path):  # noqa: F811
    """The jax backend hides TensorFlow; the writer must not need it."""
    args = ["train", "--data-dir", str(tiny_data), "--epochs", "1", "--out", "run", "-q", "--no-plots"]
    script = (
        "import sys\nfrom mnist_dnn.cli.app import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "assert sys.modules['tensorflow'] is None, 'tensorflow was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert_board_matches_the_csv_files(tmp_path / "run")


def test_every_run_of_a_tune_study_has_its_event_files_unless_told_not_to(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """Trial runs (trained epoch by epoch in step with their trial's other seeds) and the retrained best runs."""
    monkeypatch.chdir(tmp_path)
    for out, flags in (("with", []), ("without", ["--no-tensorboard"])):
        args = ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1", "--seeds", "0-1", "--epochs", "2"]
        args += ["--data-dir", str(tiny_data), "--out", out, "-q", "--no-plots", *flags]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    run_dirs = sorted(path.parent for path in (tmp_path / "with").rglob(runs.HISTORY_FILE))
    assert [str(d.relative_to(tmp_path / "with")) for d in run_dirs] == [
        "best/seed0",
        "best/seed1",
        "trials/trial-0000/seed0",
        "trials/trial-0000/seed1",
    ]
    for run_dir in run_dirs:
        assert_board_matches_the_csv_files(run_dir)
    assert not list((tmp_path / "without").rglob(BOARD_DIR))

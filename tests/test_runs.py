import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs import directory as runs

NOON = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def test_default_run_directory_is_timestamped_and_never_reused(tmp_path):
    first = runs.create_run_dir(tmp_path / "runs", "paper", now=NOON)
    second = runs.create_run_dir(tmp_path / "runs", "paper", now=NOON)
    assert first.name == "20261125T120000Z-paper"
    assert second.name == "20261125T120000Z-paper-2"
    assert first.is_dir() and second.is_dir()


def test_an_existing_out_directory_is_refused_and_left_alone(tmp_path):
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    with pytest.raises(UserInputError, match=r"--out .*mine: already exists; runs are never overwritten"):
        runs.create_run_dir(tmp_path, "paper", out=existing)
    assert (existing / "keep.txt").read_text() == "precious"
    assert os.listdir(existing) == ["keep.txt"]


def test_out_creates_missing_parents(tmp_path):
    out = runs.create_run_dir(tmp_path, "x", out=tmp_path / "a" / "b" / "run")
    assert out.is_dir()


@pytest.mark.parametrize("bad", ["", "../up", "a/b", "-dash", "sp ace"])
def test_run_names_must_be_safe_directory_names(bad):
    with pytest.raises(UserInputError, match="--name"):
        runs.check_run_name(bad)


def test_atomic_write_replaces_whole_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "f.txt"
    runs.atomic_write_text(target, "old")
    runs.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    runs.write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        runs.write_json(target, {"a": object()})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["f.json"]


def test_history_writer_rewrites_the_csv_after_each_epoch(tmp_path):
    path = tmp_path / "history.csv"
    writer = runs.HistoryWriter(path)
    writer(1, {"loss": 0.5, "accuracy": 0.9, "val_loss": 0.25, "val_accuracy": 0.95, "epoch_time_s": 1.5})
    assert path.read_text().splitlines() == [
        "epoch,loss,accuracy,val_loss,val_accuracy,epoch_time_s",
        "1,0.5,0.9,0.25,0.95,1.5",
    ]
    writer(2, {"loss": 0.1 + 0.2, "accuracy": 1.0, "val_loss": 0.2, "val_accuracy": 0.96, "epoch_time_s": 1.0})
    history = runs.read_history(path)
    assert history["epoch"] == [1.0, 2.0]
    assert history["loss"] == [0.5, 0.1 + 0.2]  # exact float round trip


def test_extra_metrics_become_extra_columns(tmp_path):
    text = runs.history_to_csv([{"epoch": 1, "loss": 1.0, "grad_norm": 3.0}])
    assert text.splitlines()[0] == "epoch,loss,accuracy,val_loss,val_accuracy,epoch_time_s,grad_norm"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected a CSV header with an 'epoch' column"),
        ("epoch,loss\n1,abc\n", "history.csv:2: column 'loss' is not a number: 'abc'"),
        ("epoch,loss\n1\n", "history.csv:2: expected 2 values, got 1"),
    ],
)
def test_malformed_history_is_a_one_line_user_error(tmp_path, content, message):
    path = tmp_path / "history.csv"
    path.write_text(content)
    with pytest.raises(UserInputError, match=message):
        runs.read_history(path)


def test_missing_history_says_so(tmp_path):
    with pytest.raises(UserInputError, match="no history.csv here"):
        runs.read_history(tmp_path / "history.csv")


def test_artifacts_get_ordinary_file_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        runs.atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("my exp", "my-exp"),
        ("été 2", "ete-2"),
        (".hidden", "hidden"),
        ("日本", "run"),
        ("a/b", "b"),
        ("paper", "paper"),
    ],
)
def test_a_config_file_of_any_name_gives_a_safe_default_run_name(stem, expected):
    name = runs.default_run_name(Path(f"{stem}.toml"))
    assert name == expected and runs.check_run_name(name) == name


def test_a_config_with_an_unsafe_file_name_trains_and_only_a_given_name_is_blamed(cli_env):
    """`--config "my exp.toml"` never fails with an error about --name, which the user did not write."""
    from click.testing import CliRunner

    from mnist_dnn.cli.app import main

    (cli_env / "my exp.toml").write_text("[train]\nepochs = 1\n")
    for out in ([], ["--out", "o"]):  # past the naming, the next thing checked is the data: no MNIST in "nowhere"
        result = CliRunner().invoke(main, ["train", "--config", "my exp.toml", "--data-dir", "nowhere", *out])
        assert result.exit_code == 2 and "nowhere does not exist" in result.stderr, result.output
    result = CliRunner().invoke(main, ["train", "--config", "my exp.toml", "--name", "bad name"])
    assert result.exit_code == 2 and "--name: expected letters" in result.stderr


def test_a_resume_whose_checkpoint_was_deleted_is_refused_not_restarted_from_epoch_1(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("")
    runs.write_status(run_dir, "interrupted", kind="train")
    (run_dir / "history.csv").write_text("epoch,loss,accuracy\n")
    assert runs.resumable_config(run_dir) is not None  # stopped before its first epoch: starting over is honest
    (run_dir / "history.csv").write_text("epoch,loss,accuracy\n1,0.5,0.8\n2,0.4,0.9\n")
    with pytest.raises(UserInputError, match=r"checkpoint.npz: missing, though history.csv records 2 finished epoch"):
        runs.resumable_config(run_dir)


def test_the_latest_run_is_the_one_that_started_last_whatever_its_name(tmp_path):
    for name, started in (("20250101T120000Z-paper", "2025-01-01T12:00:00+00:00"), ("quick", None), ("zzz", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.csv").write_text("epoch,loss,accuracy\n1,0.5,0.8\n")
        if started:
            runs.write_status(tmp_path / name, "complete", started_at=started)
    runs.write_status(tmp_path / "zzz", "complete", started_at="2024-06-01T00:00:00+00:00")
    runs.write_status(tmp_path / "quick", "running")  # started now
    assert runs.latest_run_dir(tmp_path) == tmp_path / "quick"
    first = runs.read_status(tmp_path / "quick")["started_at"]
    runs.write_status(tmp_path / "quick", "interrupted")
    runs.write_status(tmp_path / "quick", "complete")  # later statuses (a resume) keep the first start
    assert runs.read_status(tmp_path / "quick")["started_at"] == first
    assert runs.started_at(tmp_path / "zzz") < runs.started_at(tmp_path / "20250101T120000Z-paper")


def test_a_resume_says_where_it_continues_and_a_restart_says_so(tmp_path, caplog):
    from mnist_dnn.core.config import load_config
    from mnist_dnn.experiments.experiment import open_run
    from tests.test_data import _arrays, _write_dir

    data = _write_dir(tmp_path / "data", _arrays(28, 28))
    cfg = load_config(None, {"data.data_dir": str(data), "train.backend": "jax"})
    (tmp_path / "run").mkdir()
    with caplog.at_level("INFO", logger="mnist_dnn"):
        open_run(cfg, tmp_path / "runs", None, None, tmp_path / "run")
    assert f"Restarting from epoch 1 (no checkpoint was saved): {tmp_path / 'run'}" in caplog.text
    assert "Resuming" not in caplog.text


def test_show_draws_at_most_400_digits_and_says_so(tmp_path, caplog):
    from mnist_dnn.handwriting.digits import MAX_SHOWN, digits_to_show

    grid = "\n".join(",".join("255" if c == 14 and 4 <= r < 24 else "0" for c in range(28)) for r in range(28))
    for k in range(MAX_SHOWN + 50):
        (tmp_path / f"{k:04d}.csv").write_text(grid)
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        images, _, names, title, _ = digits_to_show(None, None, [tmp_path], None)
    assert len(images) == len(names) == MAX_SHOWN == 400 and names[-1] == "0399.csv"
    assert "Showing the first 400 of 450 digits" in caplog.text and title == "Custom digits (first 400)"


def test_a_tune_trial_run_is_not_resumed_by_train_and_says_to_run_tune_again(tmp_path):
    run_dir = tmp_path / "trial-0003" / "seed0"
    run_dir.mkdir(parents=True)
    runs.write_status(run_dir, "interrupted", kind=runs.KIND_TRIAL)
    with pytest.raises(UserInputError, match="one run of a tune trial; it is not resumed .run the tune command again"):
        runs.resumable_config(run_dir)

"""The pipeline on a small synthetic dataset: run status, interrupt and resume, full disks, runs trained together."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from mnist_dnn.core.config import load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.data.preprocess import STATISTICS_FILE
from mnist_dnn.experiments.experiment import train_and_evaluate, train_model, train_models_together
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.checkpoint import CHECKPOINT_FILE, read_checkpoint
from mnist_dnn.training.load import load_trained
from tests.test_train import _separable_digits


@pytest.fixture(scope="module")
def dataset():
    x_train, y_train = _separable_digits(768, 0)
    x_test, y_test = _separable_digits(192, 1)
    return Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {"train-images": "0" * 64})


def _config(**overrides):
    return load_config(None, {"train.epochs": 3, "train.backend": "jax", "train.engine": "fused", **overrides})


def _run(cfg, dataset, run_dir, **kwargs):
    run_dir.mkdir(exist_ok=True)
    return train_and_evaluate(cfg, dataset, run_dir, 0, **kwargs)


def _stop_after(epoch_to_stop):
    def callback(epoch, metrics):
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt

    return callback


def _same_results(first: Path, second: Path) -> None:
    """Bit-identical training: history and step losses apart from timings, and every weight."""
    for name in (runs.HISTORY_FILE, runs.STEPS_FILE):
        a, b = runs.read_history(first / name, "epoch"), runs.read_history(second / name, "epoch")
        for column in a:
            if column not in runs.TIMING_COLUMNS:
                assert a[column] == b[column], (name, column)
    import keras

    for ours, theirs in zip(
        keras.saving.load_model(first / runs.MODEL_FILE).get_weights(),
        keras.saving.load_model(second / runs.MODEL_FILE).get_weights(),
        strict=True,
    ):
        assert np.array_equal(ours, theirs)


@pytest.mark.slow
def test_a_finished_run_is_marked_complete_with_every_artifact(dataset, tmp_path):
    metrics = _run(_config(), dataset, tmp_path / "run")
    status = runs.read_status(tmp_path / "run")
    assert runs.started_at(tmp_path / "run") is not None and status.pop("started_at")
    assert status == {"format_version": 1, "status": "complete", "kind": "train"}
    produced = {p.name for p in (tmp_path / "run").iterdir()}
    assert produced == {
        "config.toml",
        "history.csv",
        "steps.csv",
        "metrics.json",
        "model.keras",
        "status.json",
        "tensorboard",
    }
    steps = runs.read_steps(tmp_path / "run" / runs.STEPS_FILE)
    assert steps["step"] == [float(s) for s in range(1, 3 * 12 + 1)]  # 768 images = 12 batches of 64 per epoch
    history = runs.read_history(tmp_path / "run" / runs.HISTORY_FILE)
    # the epoch's training loss is the size-weighted mean of its batches' losses
    assert np.mean(steps["loss"][24:]) == pytest.approx(history["loss"][2], rel=1e-5)
    assert metrics["validation_accuracy"] == metrics["test_accuracy"]  # the paper validates on the test set


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(dataset, tmp_path, engine):
    cfg = _config(**{"train.engine": engine})
    _run(cfg, dataset, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", extra_callbacks=(_stop_after(2),))
    assert runs.read_status(tmp_path / "cut")["status"] == "interrupted"
    assert read_checkpoint(tmp_path / "cut" / CHECKPOINT_FILE)[0]["epoch"] == 2
    assert len(runs.read_history(tmp_path / "cut" / runs.HISTORY_FILE)["epoch"]) == 2
    metrics = _run(cfg, dataset, tmp_path / "cut", resume=True)
    assert metrics["epochs_completed"] == 3 and metrics["timings"]["resumed_at_epoch"] == 2
    assert runs.read_status(tmp_path / "cut")["status"] == "complete"
    _same_results(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.slow
def test_resume_restores_what_steers_training(dataset, tmp_path):
    """Early stopping's best epoch and weights and the plateau schedule's patience survive the interrupt."""
    cfg = _config(
        **{
            "train.epochs": 8,
            "optimizer.schedule": "plateau",
            "optimizer.plateau_patience": 1,
            "optimizer.learning_rate": 0.01,
            "regularization.early_stopping": True,
            "regularization.early_stopping_patience": 2,
            "validation.source": "holdout",
            "validation.fraction": 0.25,
        }
    )
    straight = _run(cfg, dataset, tmp_path / "straight")
    rates = runs.read_history(tmp_path / "straight" / runs.HISTORY_FILE)["learning_rate"]
    # what makes this test mean something: both monitors act after the interrupt, on state from before it
    assert straight["early_stopping"]["stopped_epoch"] > 3 and straight["early_stopping"]["best_epoch"] <= 3
    assert rates[2] == rates[0] and rates[-1] < rates[0]
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", extra_callbacks=(_stop_after(3),))
    resumed = _run(cfg, dataset, tmp_path / "cut", resume=True)
    assert resumed["early_stopping"] == straight["early_stopping"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    _same_results(tmp_path / "straight", tmp_path / "cut")
    assert runs.read_history(tmp_path / "cut" / runs.HISTORY_FILE)["learning_rate"] == rates


@pytest.mark.slow
def test_resume_from_an_older_checkpoint_drops_the_epochs_after_it(dataset, tmp_path):
    """Checkpoints every 2 epochs, interrupted after epoch 3: resume from 2, and history and steps agree."""
    cfg = _config(**{"train.epochs": 4})
    _run(cfg, dataset, tmp_path / "straight", checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, dataset, tmp_path / "cut", extra_callbacks=(_stop_after(3),), checkpoint_every=2)
    assert len(runs.read_history(tmp_path / "cut" / runs.HISTORY_FILE)["epoch"]) == 3
    assert max(runs.read_steps(tmp_path / "cut" / runs.STEPS_FILE)["epoch"]) == 3
    metrics = _run(cfg, dataset, tmp_path / "cut", resume=True, checkpoint_every=2)
    assert metrics["timings"]["resumed_at_epoch"] == 2
    _same_results(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.slow
def test_a_changed_config_cannot_resume(dataset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(_config(), dataset, tmp_path / "cut", extra_callbacks=(_stop_after(1),))
    with pytest.raises(UserInputError, match=r"checkpoint.npz: config.toml changed since"):
        _run(_config(**{"train.seed": 1}), dataset, tmp_path / "cut", resume=True)


@pytest.mark.slow
def test_a_full_disk_mid_run_is_a_user_error_and_marks_the_run_failed(dataset, tmp_path, monkeypatch):
    """No new file can be made once the first epoch is saved: one line naming the file, status failed."""
    import mnist_dnn.core.atomic

    run_dir = tmp_path / "run"
    real_mkstemp = mnist_dnn.core.atomic.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if (run_dir / runs.HISTORY_FILE).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(mnist_dnn.core.atomic.tempfile, "mkstemp", mkstemp)
    with pytest.raises(UserInputError, match=r"run/steps.csv: cannot write \(No space left on device\)"):
        _run(_config(), dataset, run_dir)
    monkeypatch.undo()
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and "No space left" in status["reason"]
    assert len(runs.read_history(run_dir / runs.HISTORY_FILE)["epoch"]) == 1  # what was saved stays intact
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_standardized_runs_save_their_statistics_and_reuse_them(dataset, tmp_path):
    cfg = _config(**{"preprocess.method": "standardize", "train.epochs": 1})
    metrics = _run(cfg, dataset, tmp_path / "run")
    stats_file = tmp_path / "run" / STATISTICS_FILE
    assert stats_file.is_file()
    trained = load_trained(tmp_path / "run")
    assert trained.stats is not None and trained.config.preprocess.method == "standardize"
    from mnist_dnn.data.preprocess import prepare
    from mnist_dnn.training.evaluate import evaluate

    x, y = prepare(dataset.x_test, dataset.y_test, "standardize", 10, trained.stats)
    assert evaluate(trained.model, x, y, 64)["accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.slow
def test_runs_trained_together_match_runs_trained_alone(dataset, tmp_path):
    """The custom-digit experiment's vmapped runs give each run directory what a lone run gives it."""
    digits = _separable_digits(5, 7)
    cfgs = [_config(**{"train.seed": seed, "train.epochs": 2}) for seed in (3, 4)]
    dirs = [tmp_path / "together" / f"run-{k}" for k in (1, 2)]
    for directory in dirs:
        directory.mkdir(parents=True)
    finished = []
    train_models_together(cfgs, dataset, dirs, digits, lambda index, model, metrics: finished.append(index))
    assert finished == [0, 1]
    for cfg, directory in zip(cfgs, dirs, strict=True):
        alone = tmp_path / f"alone-{cfg.train.seed}"
        alone.mkdir()
        _, metrics = train_model(cfg, dataset, alone, 0, validation=digits)
        together = json.loads((directory / runs.METRICS_FILE).read_text())
        assert together["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-3)
        status = runs.read_status(directory)
        assert status.pop("started_at") and status == {"format_version": 1, "status": "complete", "kind": "custom"}
        a = runs.read_history(directory / runs.HISTORY_FILE)
        b = runs.read_history(alone / runs.HISTORY_FILE)
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-3)


@pytest.mark.slow
def test_a_run_of_the_custom_experiment_is_not_resumable_alone(dataset, tmp_path):
    (tmp_path / "run-1").mkdir()
    train_model(_config(**{"train.epochs": 1}), dataset, tmp_path / "run-1", 0, validation=_separable_digits(5, 7))
    runs.write_status(tmp_path / "run-1", "interrupted", kind="custom")
    with pytest.raises(UserInputError, match="custom-digit experiment; it cannot be resumed alone"):
        runs.resumable_config(tmp_path / "run-1")


def _strict_json(path):
    """JSON as the standard has it: NaN and Infinity are refused, as every other JSON reader refuses them."""

    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fused", "fit"])
def test_a_diverged_run_stops_at_its_first_non_finite_epoch_and_says_so_in_valid_json(
    dataset, tmp_path, engine, caplog
):
    cfg = _config(**{"optimizer.learning_rate": 1e30, "train.epochs": 4, "train.engine": engine})
    with caplog.at_level("WARNING", logger="mnist_dnn"):
        metrics = _run(cfg, dataset, tmp_path / "run")
    history = runs.read_history(tmp_path / "run" / runs.HISTORY_FILE)
    epoch = len(history["epoch"])
    assert epoch < 4 and not np.isfinite(history["loss"][-1]) and np.isfinite(history["loss"][:-1]).all()
    status, saved = _strict_json(tmp_path / "run" / "status.json"), _strict_json(tmp_path / "run" / "metrics.json")
    assert status["status"] == "complete" and status["diverged"] is True and status["diverged_epoch"] == epoch
    assert saved["diverged"] is True and saved["epochs_completed"] == epoch and metrics["diverged"] is True
    assert saved["test_loss"] is None or np.isfinite(saved["test_loss"])  # NaN is written as null
    assert f"Warning: training diverged: the loss of epoch {epoch} is nan; stopped there" in caplog.text
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.slow
def test_a_finite_run_says_nothing_of_divergence(dataset, tmp_path):
    _run(_config(**{"train.epochs": 1}), dataset, tmp_path / "run")
    assert "diverged" not in _strict_json(tmp_path / "run" / "metrics.json")
    assert "diverged" not in _strict_json(tmp_path / "run" / "status.json")

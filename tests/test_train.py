"""The training function on small synthetic data: fast, but checks that learning happens."""

import numpy as np
import pytest

from mnist_dnn.backend import seed_everything
from mnist_dnn.compile import compile_model
from mnist_dnn.config import load_config
from mnist_dnn.evaluate import evaluate
from mnist_dnn.model import build_model
from mnist_dnn.preprocess import prepare
from mnist_dnn.train import TrainingData, train


def _separable_digits(n: int, seed: int):
    """Images whose class is which 3-row band is bright: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, label * 2 + 4 : label * 2 + 7, :] = 250
    return images, labels


@pytest.fixture(scope="module")
def data():
    x_train, y_train = prepare(*_separable_digits(1024, 0), "scale", 10)
    x_val, y_val = prepare(*_separable_digits(256, 1), "scale", 10)
    return TrainingData(x_train, y_train, x_val, y_val)


def _fit(data, seed=0, **overrides):
    cfg = load_config(None, {"train.epochs": 3, "train.seed": seed, **overrides})
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    seen = []
    history = train(model, data, cfg.train, callbacks=[lambda epoch, m: seen.append((epoch, m))], verbose=0)
    return model, history, seen


def test_training_learns_and_reports_every_epoch(data):
    model, history, seen = _fit(data)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s"}
    assert all(len(values) == 3 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert seen[-1][1]["val_loss"] == history["val_loss"][-1]
    assert all(t > 0 for t in history["epoch_time_s"])


def test_evaluate_equals_the_last_epochs_validation(data):
    model, history, _ = _fit(data)
    scores = evaluate(model, data.x_val, data.y_val, batch_size=64)
    assert scores["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
    assert scores["accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_same_seed_same_history_other_seed_differs(data):
    _, first, _ = _fit(data, seed=5)
    _, second, _ = _fit(data, seed=5)
    _, other, _ = _fit(data, seed=6)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first[key] == second[key]
    assert first["loss"] != other["loss"]


def test_learning_rate_zero_leaves_the_weights_alone(data):
    cfg = load_config(None, {"train.epochs": 1, "optimizer.name": "sgd", "optimizer.learning_rate": 0})
    seed_everything(0)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    before = [w.copy() for w in model.get_weights()]
    train(model, data, cfg.train, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_batch_size_sets_the_number_of_steps(data):
    steps = []
    cfg = load_config(None, {"train.epochs": 1, "train.batch_size": 100})
    seed_everything(0)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    train(model, data, cfg.train, verbose=0)
    steps.append(int(model.optimizer.iterations))
    assert steps == [11]  # 1024 images = 10 full batches of 100 + one of 24

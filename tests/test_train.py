"""The training function on small synthetic data: fast, but checks that learning happens."""

import numpy as np
import pytest

from mnist_dnn.core.backend import seed_everything
from mnist_dnn.core.config import load_config
from mnist_dnn.data.preprocess import prepare
from mnist_dnn.training.compile import compile_model
from mnist_dnn.training.evaluate import evaluate
from mnist_dnn.training.fused import train_fused, train_fused_together
from mnist_dnn.training.loop import TrainingData
from mnist_dnn.training.model import build_model
from mnist_dnn.training.train import train


def _separable_digits(n: int, seed: int):
    """Images whose class is which 3-row band is bright: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, label * 2 + 4 : label * 2 + 7, :] = 250
    return images, labels


def write_separable_idx(directory, train: int, test: int):
    """`directory` holding _separable_digits in MNIST's IDX layout: `train` images to train on (seed 0), `test`
    to test on (seed 1); returns it."""
    from mnist_dnn.data.mnist import write_idx

    for prefix, (count, seed) in {"train": (train, 0), "t10k": (test, 1)}.items():
        images, labels = _separable_digits(count, seed)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)
    return directory


@pytest.fixture(scope="module")
def data():
    x_train, y_train = prepare(*_separable_digits(1024, 0), "scale", 10)
    x_val, y_val = prepare(*_separable_digits(256, 1), "scale", 10)
    return TrainingData(x_train, y_train, x_val, y_val)


ENGINES = ["fit", "fused"]


def _fit(data, seed=0, engine="fit", **overrides):
    cfg = load_config(None, {"train.epochs": 3, "train.seed": seed, "train.engine": engine, **overrides})
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    seen = []
    history = train(model, data, cfg.train, callbacks=[lambda epoch, m: seen.append((epoch, m))], verbose=0)
    return model, history, seen


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_training_learns_and_reports_every_epoch(data, engine):
    model, history, seen = _fit(data, engine=engine)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s"}
    assert all(len(values) == 3 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert seen[-1][1]["val_loss"] == history["val_loss"][-1]
    assert all(t > 0 for t in history["epoch_time_s"])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_evaluate_equals_the_last_epochs_validation(data, engine):
    model, history, _ = _fit(data, engine=engine)
    scores = evaluate(model, data.x_val, data.y_val, batch_size=64)
    assert scores["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
    assert scores["accuracy"] == pytest.approx(history["val_accuracy"][-1])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_history_other_seed_differs(data, engine):
    _, first, _ = _fit(data, seed=5, engine=engine)
    _, second, _ = _fit(data, seed=5, engine=engine)
    _, other, _ = _fit(data, seed=6, engine=engine)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first[key] == second[key]
    assert first["loss"] != other["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_learning_rate_zero_leaves_the_weights_alone(data, engine):
    cfg = load_config(
        None, {"train.epochs": 1, "optimizer.name": "sgd", "optimizer.learning_rate": 0, "train.engine": engine}
    )
    seed_everything(0)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    before = [w.copy() for w in model.get_weights()]
    train(model, data, cfg.train, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_batch_size_sets_the_number_of_steps(data, engine):
    steps = []
    cfg = load_config(None, {"train.epochs": 1, "train.batch_size": 100, "train.engine": engine})
    seed_everything(0)
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    train(model, data, cfg.train, verbose=0)
    steps.append(int(model.optimizer.iterations))
    assert steps == [11]  # 1024 images = 10 full batches of 100 + one of 24


def _one_epoch_from(initial_weights, data, engine):
    """One epoch, no dropout, no shuffling: the two engines must then do the very same arithmetic."""
    cfg = load_config(
        None,
        {
            "train.epochs": 1,
            "train.batch_size": 100,
            "train.shuffle": False,
            "model.dropout": 0,
            "train.engine": engine,
        },
    )
    model = build_model(cfg.model)
    model.set_weights(initial_weights)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    history = train(model, data, cfg.train, verbose=0)
    return model, history


@pytest.mark.slow
def test_fused_and_fit_give_the_same_weights_from_the_same_start(data):
    seed_everything(0)
    start = build_model(load_config(None, {"model.dropout": 0}).model).get_weights()
    fused, fused_history = _one_epoch_from(start, data, "fused")
    fitted, fit_history = _one_epoch_from(start, data, "fit")
    assert int(fused.optimizer.iterations) == int(fitted.optimizer.iterations) == 11  # 10 x 100 + the last 24
    for ours, theirs in zip(fused.get_weights(), fitted.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert fused_history[key] == pytest.approx(fit_history[key], rel=1e-5)


@pytest.mark.slow
def test_fused_dropout_is_active_in_training_only(data):
    model, history, _ = _fit(data, engine="fused", **{"model.dropout": 0.9, "train.epochs": 1})
    # Heavy dropout hurts the running training accuracy, not the (inference-mode) validation pass.
    assert history["val_accuracy"][0] > history["accuracy"][0]


@pytest.mark.slow
def test_unresolved_engine_is_refused(data):
    cfg = load_config(None, {"train.epochs": 1})
    with pytest.raises(ValueError, match="unresolved training engine 'auto'"):
        train(build_model(cfg.model), data, cfg.train)


def _models_for_seeds(seeds, optimizer="sgd"):
    rate = {"sgd": 0.05, "adam": 0.001}[optimizer]
    cfg = load_config(None, {"optimizer.name": optimizer, "optimizer.learning_rate": rate})
    models = []
    for seed in seeds:
        seed_everything(seed)
        model = build_model(cfg.model)
        compile_model(model, cfg.optimizer, cfg.train.loss)
        models.append(model)
    return models


@pytest.mark.slow
def test_models_trained_together_match_the_same_seeds_trained_alone(data):
    """The vmapped program is the same computation as the single one, seed by seed.

    SGD keeps the comparison about the program: Adam divides by the root of tiny
    second moments, so the last-bit differences of a batched matmul grow into visible
    ones on weights whose gradient is almost zero.
    """
    seeds = [3, 4, 5]
    together = _models_for_seeds(seeds)
    histories = train_fused_together(together, data, 2, 64, seeds, True, [[] for _ in seeds])
    for seed, model, history in zip(seeds, together, histories, strict=True):
        (alone,) = _models_for_seeds([seed])
        alone_history = train_fused(alone, data, 2, 64, seed, True)
        for ours, theirs in zip(model.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        assert history["loss"] == pytest.approx(alone_history["loss"], rel=1e-5)
    assert histories[0]["loss"] != histories[1]["loss"]  # different seeds, different runs


@pytest.mark.slow
def test_models_trained_together_each_get_their_own_callbacks(data):
    seeds = [0, 1]
    seen = {0: [], 1: []}
    callbacks = [[lambda epoch, m, k=k: seen[k].append((epoch, m["val_accuracy"]))] for k in range(2)]
    histories = train_fused_together(_models_for_seeds(seeds, "adam"), data, 2, 64, seeds, True, callbacks)
    for k in range(2):
        assert [epoch for epoch, _ in seen[k]] == [1, 2]
        assert [accuracy for _, accuracy in seen[k]] == histories[k]["val_accuracy"]
        assert histories[k]["val_accuracy"][-1] > 0.9


@pytest.mark.slow
def test_fused_epoch_time_covers_the_computation(data):
    """JAX returns before the work is done; an epoch of 1024 images still takes measurable time."""
    _, history, _ = _fit(data, engine="fused")
    assert min(history["epoch_time_s"][1:]) > 1e-3

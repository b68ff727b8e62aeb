"""The paper's experiment end to end, from a validated config and loaded data to a run directory.

The stages stay ignorant of each other; this is the one place that wires them in the
paper's order (section 5.1): preprocess -> build -> compile -> fit -> evaluate -> save.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn import runs
from mnist_dnn.augment import augment_images
from mnist_dnn.backend import seed_everything, versions
from mnist_dnn.compile import compile_model, count_steps
from mnist_dnn.config import Config, config_to_toml
from mnist_dnn.data import Dataset
from mnist_dnn.evaluate import evaluate
from mnist_dnn.model import NUM_CLASSES, build_model
from mnist_dnn.monitors import (
    GRAD_SAMPLE_SIZE,
    EarlyStopping,
    GradientNorms,
    PlateauSchedule,
    learning_rate_recorder,
)
from mnist_dnn.preprocess import STATISTICS_FILE, prepare, save_statistics, transform
from mnist_dnn.preprocess import fit as fit_preprocessing
from mnist_dnn.splits import split_indices
from mnist_dnn.train import EpochCallback, TrainingControl, TrainingData, train


def train_and_evaluate(
    cfg: Config, dataset: Dataset, run_dir: Path, verbose: int, extra_callbacks: tuple[EpochCallback, ...] = ()
) -> dict[str, Any]:
    """Train as configured, save config, history, model and metrics into `run_dir`; return the metrics.

    The data's name and checksums go into metrics.json so a result can be traced to its
    data; where the files came from does not, so that equal runs give equal files.
    """
    return train_model(cfg, dataset, run_dir, verbose, extra_callbacks)[1]


def train_model(
    cfg: Config,
    dataset: Dataset,
    run_dir: Path,
    verbose: int,
    extra_callbacks: tuple[EpochCallback, ...] = (),
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """`train_and_evaluate`, also returning the trained model.

    `validation` (network-ready inputs, one-hot targets) replaces the MNIST test set as the
    data each epoch is scored on - section 5.2.2 validates on the author's own digits; the
    test-set scores in metrics.json stay MNIST's, so a bad custom score is never mistaken
    for a bad model.
    """
    started = time.perf_counter()
    runs.atomic_write_text(run_dir / runs.CONFIG_FILE, config_to_toml(cfg))
    seed_everything(cfg.train.seed)
    method = cfg.preprocess.method
    kept, held = split_indices(len(dataset.y_train), cfg.data, cfg.validation, cfg.train.seed)
    raw_train = dataset.x_train[kept]
    stats = fit_preprocessing(method, raw_train)  # training images only (section 4.1)
    if stats is not None:
        save_statistics(stats, run_dir / STATISTICS_FILE)
    x_train, y_train = prepare(raw_train, dataset.y_train[kept], method, NUM_CLASSES, stats)
    x_test, y_test = prepare(dataset.x_test, dataset.y_test, method, NUM_CLASSES, stats)
    if validation is None and held is not None:  # the test set stays untouched until the final evaluation
        validation = prepare(dataset.x_train[held], dataset.y_train[held], method, NUM_CLASSES, stats)
    elif validation is None:
        validation = (x_test, y_test)  # the paper's choice (section 5.1)

    reg = cfg.regularization
    model = build_model(cfg.model, input_size=x_train.shape[1], num_classes=NUM_CLASSES, l1=reg.l1, l2=reg.l2)
    steps = count_steps(len(x_train), cfg.train.batch_size)
    compile_model(model, cfg.optimizer, cfg.train.loss, steps, cfg.train.epochs)
    control = TrainingControl()
    monitors, stopper = _monitors(cfg, model, control, x_train, y_train)
    augment = None
    if reg.augment_shift or reg.augment_rotation:

        def augment(epoch: int) -> np.ndarray:  # new shifts and rotations every epoch, from the run's seed
            rng = np.random.default_rng([cfg.train.seed, epoch])
            return transform(augment_images(raw_train, rng, reg.augment_shift, reg.augment_rotation), method, stats)

    train_started = time.perf_counter()
    history = train(
        model,
        TrainingData(x_train, y_train, *validation),
        cfg.train,
        callbacks=(*monitors, runs.HistoryWriter(run_dir / runs.HISTORY_FILE), *extra_callbacks),
        verbose=verbose,
        control=control,
        epoch_inputs=augment,
    )
    if stopper is not None:
        stopper.restore()
    evaluate_started = time.perf_counter()
    scores = evaluate(model, x_test, y_test, cfg.train.batch_size)
    evaluate_ended = time.perf_counter()
    runs.save_model(model, run_dir / runs.MODEL_FILE)

    metrics = {
        "test_loss": scores["loss"],
        "test_accuracy": scores["accuracy"],
        "epochs_completed": len(history.get("loss", [])),
        "seed": cfg.train.seed,
        "backend": cfg.train.backend,
        "engine": cfg.train.engine,
        "parameters": int(model.count_params()),
        "train_images": int(len(x_train)),
        "validation": {"source": cfg.validation.source, "images": int(len(validation[1]))},
        "dataset": {
            "name": dataset.name,
            "train_size": int(len(dataset.y_train)),
            "test_size": int(len(dataset.y_test)),
            "checksums": dict(sorted(dataset.checksums.items())),
        },
        "versions": versions(),
        "timings": {
            "train_s": evaluate_started - train_started,
            "evaluate_s": evaluate_ended - evaluate_started,
            "epoch_s": history.get("epoch_time_s", []),
            "total_s": time.perf_counter() - started,
        },
    }
    if stopper is not None:
        metrics["early_stopping"] = {"best_epoch": stopper.best_epoch, "stopped_epoch": stopper.stopped_epoch}
    runs.write_json(run_dir / runs.METRICS_FILE, metrics)
    return model, metrics


def _monitors(cfg: Config, model, control: TrainingControl, x_train: np.ndarray, y_train: np.ndarray):
    """The epoch callbacks the config asks for, in the order they must run, and the early stopper if any.

    Gradient norms and the learning rate come first, so the history writer records them;
    the steering ones read the finished epoch's metrics.
    """
    sample = slice(0, GRAD_SAMPLE_SIZE)  # the same images every epoch
    monitors: list[EpochCallback] = [GradientNorms(model, x_train[sample], y_train[sample], cfg.train.loss)]
    opt, reg = cfg.optimizer, cfg.regularization
    if opt.schedule != "constant":
        monitors.append(learning_rate_recorder(model))
    if opt.schedule == "plateau":
        monitors.append(PlateauSchedule(control, opt.learning_rate, opt.decay_rate, opt.plateau_patience))
    stopper = None
    if reg.early_stopping:
        stopper = EarlyStopping(
            model, control, reg.early_stopping_monitor, reg.early_stopping_patience, reg.early_stopping_restore_best
        )
        monitors.append(stopper)
    return monitors, stopper

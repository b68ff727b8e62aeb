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
from mnist_dnn.backend import seed_everything, versions
from mnist_dnn.compile import compile_model
from mnist_dnn.config import Config, config_to_toml
from mnist_dnn.data import Dataset
from mnist_dnn.evaluate import evaluate
from mnist_dnn.model import NUM_CLASSES, build_model
from mnist_dnn.preprocess import prepare
from mnist_dnn.train import EpochCallback, TrainingData, train


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
    x_train, y_train = prepare(dataset.x_train, dataset.y_train, cfg.preprocess.method, NUM_CLASSES)
    x_test, y_test = prepare(dataset.x_test, dataset.y_test, cfg.preprocess.method, NUM_CLASSES)

    model = build_model(cfg.model, input_size=x_train.shape[1], num_classes=NUM_CLASSES)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    train_started = time.perf_counter()
    history = train(
        model,
        TrainingData(x_train, y_train, *(validation if validation is not None else (x_test, y_test))),
        cfg.train,
        callbacks=(runs.HistoryWriter(run_dir / runs.HISTORY_FILE), *extra_callbacks),
        verbose=verbose,
    )
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
    runs.write_json(run_dir / runs.METRICS_FILE, metrics)
    return model, metrics

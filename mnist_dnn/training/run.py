"""The pieces one run is made of, public, so every way of training builds and records a run the same way.

    dataset, run_dir = open_run(cfg, runs_root, name, out, resume_dir)   # data checked first, then the directory
    write_config(run_dir, cfg, resume)
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg, dataset)                   # split; preprocessing fitted on the training images only
    write_statistics(run_dir, data.stats, resume)
    parts = set_up(cfg, dataset, run_dir, data, checkpoint_every=1, resume=resume)   # model, monitors, TensorBoard
    ...                                                 # train (training.train, or a shared fused program)
    metrics = finish(TrainedRun(cfg, dataset, run_dir, parts.model, data, history, started, train_s))

`set_up` is made of the smaller pieces (compiled_model, monitors, tensorboard_log,
step_writers) for runs that keep no checkpoint (section 5.2.2's runs trained together).

`experiments.experiment` (train's run, section 5.2.2's runs), `experiments.bundles` (runs
that share one compiled program: a sweep's bundles, a tune trial's seeds) and tune's
final retrain all put their runs together from these.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.backend import machine, model_device, versions
from mnist_dnn.core.config import Config, config_to_toml
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.augment import augment_images
from mnist_dnn.data.augment import configured as augmentation_options
from mnist_dnn.data.mnist import NUM_CLASSES, Dataset, load_configured
from mnist_dnn.data.preprocess import STATISTICS_FILE, Statistics, prepare, save_statistics, transform
from mnist_dnn.data.preprocess import fit as fit_preprocessing
from mnist_dnn.data.splits import check_train_limit, split_indices
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import records
from mnist_dnn.runs.files import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, STEPS_FILE
from mnist_dnn.training.checkpoint import Checkpointer, saved_epoch
from mnist_dnn.training.compile import compile_model, count_steps
from mnist_dnn.training.evaluate import evaluate
from mnist_dnn.training.loop import EpochCallback, TrainingControl, TrainingData, apply_control
from mnist_dnn.training.model import build_model
from mnist_dnn.training.monitors import (
    GRAD_SAMPLE_SIZE,
    Divergence,
    EarlyStopping,
    GradientNorms,
    PlateauSchedule,
    learning_rate_recorder,
)

log = logging.getLogger(__name__)

RawDigits = tuple[np.ndarray, np.ndarray]
"""(N, 28, 28) images 0-255 and their integer labels, before preprocessing."""


@dataclass(frozen=True)
class PreparedData:
    """A run's network inputs, all preprocessed with the statistics of its own training images."""

    raw_train: np.ndarray  # the training images 0-255 (augmentation works on pixels)
    training: TrainingData
    x_test: np.ndarray | None  # None where the test set plays no part (a tune trial)
    y_test: np.ndarray | None
    stats: Statistics | None


def open_run(
    cfg: Config, runs_root: Path, name: str | None, out: Path | None, resume_dir: Path | None
) -> tuple[Dataset, Path]:
    """The run's data, then its directory: `resume_dir`, `out`, or a new runs_root/<UTC time>-<name>.

    The data are loaded and the config checked against them first, so a data problem
    leaves no empty run directory behind.
    """
    dataset = load_configured(cfg.data)
    check_train_limit(cfg.data, len(dataset.y_train))
    check_training_memory(
        cfg.model, cfg.optimizer, dataset.x_train[0].size, NUM_CLASSES, batch_size=cfg.train.batch_size
    )
    run_dir = resume_dir or runs.create_run_dir(runs_root, name, out)
    train = cfg.train
    log.info(
        "Data: %s from %s (%d train, %d test)", dataset.name, dataset.source, len(dataset.y_train), len(dataset.y_test)
    )
    how = "Run directory"
    if resume_dir is not None:  # say where it continues: a run stopped before any checkpoint starts over
        epoch = saved_epoch(run_dir)
        how = f"Resuming after epoch {epoch}" if epoch else "Restarting from epoch 1 (no checkpoint was saved)"
    log.info("%s: %s  (backend %s, engine %s, seed %d)", how, run_dir, train.backend, train.engine, train.seed)
    return dataset, run_dir


def prepare_data(
    cfg: Config, dataset: Dataset, validation: RawDigits | None = None, test_set: bool = True
) -> PreparedData:
    """Split, fit the preprocessing on the training images only (section 4.1), and transform every split.

    `validation` (raw digits) replaces what config [validation] would score each epoch on;
    section 5.2.2 validates on the author's own digits. `test_set=False` leaves the test
    images unread, as a search must (its config validates on a holdout).
    """
    method = cfg.preprocess.method
    kept, held = split_indices(len(dataset.y_train), cfg.data, cfg.validation, cfg.train.seed)
    if not test_set and validation is None and held is None:
        raise ValueError("without the test set a run must validate on a holdout or fold of the training set")
    raw_train = dataset.x_train[kept]
    stats = fit_preprocessing(method, raw_train)
    x_train, y_train = prepare(raw_train, dataset.y_train[kept], method, NUM_CLASSES, stats)
    x_test, y_test = prepare(dataset.x_test, dataset.y_test, method, NUM_CLASSES, stats) if test_set else (None, None)
    if validation is not None:
        x_val, y_val = prepare(*validation, method, NUM_CLASSES, stats)
    elif held is not None:  # the test set stays untouched until the final evaluation
        x_val, y_val = prepare(dataset.x_train[held], dataset.y_train[held], method, NUM_CLASSES, stats)
    else:
        x_val, y_val = x_test, y_test  # the paper's choice (section 5.1)
    return PreparedData(raw_train, TrainingData(x_train, y_train, x_val, y_val), x_test, y_test, stats)


def write_config(run_dir: Path, cfg: Config, resume: bool = False) -> None:
    """The run's config.toml; a resumed run with a checkpoint keeps its own (the checkpoint checks it)."""
    if not (resume and (run_dir / CHECKPOINT_FILE).exists()):
        atomic_write_text(run_dir / CONFIG_FILE, config_to_toml(cfg))


def write_statistics(run_dir: Path, stats: Statistics | None, resume: bool = False) -> None:
    """The preprocessing statistics the run's model needs at prediction time (none for `scale`); kept on resume."""
    if stats is not None and not (resume and (run_dir / STATISTICS_FILE).exists()):
        save_statistics(stats, run_dir / STATISTICS_FILE)


def compiled_model(cfg: Config, data: PreparedData):
    """The configured network, compiled; call after seeding, as Keras draws the initial weights then."""
    reg = cfg.regularization
    model = build_model(cfg.model, data.training.x_train.shape[1], NUM_CLASSES, l1=reg.l1, l2=reg.l2)
    steps = count_steps(len(data.training.x_train), cfg.train.batch_size)
    compile_model(model, cfg.optimizer, cfg.train.loss, steps, cfg.train.epochs)
    return model


def monitors(cfg: Config, model, control: TrainingControl, training: TrainingData):
    """The epoch callbacks the config asks for, in the order they must run, and the steering ones by name.

    Gradient norms and the learning rate come first, so the history writer records them;
    the steering ones read the finished epoch's metrics, and their state is checkpointed.
    """
    sample = slice(0, GRAD_SAMPLE_SIZE)  # the same images every epoch
    found: list[EpochCallback] = [
        GradientNorms(model, training.x_train[sample], training.y_train[sample], cfg.train.loss)
    ]
    opt, reg = cfg.optimizer, cfg.regularization
    steering: dict[str, Any] = {}
    if opt.schedule != "constant":
        found.append(learning_rate_recorder(model))
    if opt.schedule == "plateau":
        steering["plateau"] = PlateauSchedule(control, opt.learning_rate, opt.decay_rate, opt.plateau_patience)
    if reg.early_stopping:
        steering["early_stopping"] = EarlyStopping(
            model, control, reg.early_stopping_monitor, reg.early_stopping_patience, reg.early_stopping_restore_best
        )
    return [*found, *steering.values()], steering


def tensorboard_log(enabled: bool, run_dir: Path, cfg: Config, start_epoch: int) -> tuple:
    """The run's TensorBoard writer as a tuple of callbacks: one, or none with --no-tensorboard."""
    if not enabled:
        return ()
    from mnist_dnn.runs.tensorboard import TensorBoardLog

    return (TensorBoardLog(run_dir, config_to_toml(cfg), start_epoch),)


def step_writers(run_dir: Path, board: tuple, keep_through: int = 0) -> tuple:
    """The per-batch loss callbacks: steps.csv (kept through epoch `keep_through` on resume), and TensorBoard's."""
    return (records.StepLossWriter(run_dir / STEPS_FILE, keep_through=keep_through), *(b.steps for b in board))


@dataclass(frozen=True)
class RunSetup:
    """What a run trains with, its model built and its checkpoint (if any) restored."""

    model: Any
    control: TrainingControl  # what the steering callbacks ask of the loop (stop, a new rate)
    steering: dict[str, Any]  # "early_stopping", "plateau": the callbacks whose state is checkpointed
    divergence: Divergence
    saver: Checkpointer  # writes history.csv (and checkpoint.npz) after every epoch
    start: int  # epochs already trained: a resumed run's, else 0
    callbacks: tuple  # the epoch callbacks, in the order they must run
    step_callbacks: tuple  # the per-batch loss callbacks


def set_up(
    cfg: Config,
    dataset: Dataset,
    run_dir: Path,
    data: PreparedData,
    *,
    checkpoint_every: int,
    resume: bool = False,
    tensorboard: bool = True,
    divergence_stops: bool = True,
    safe_point: Callable[[], None] = lambda: None,
) -> RunSetup:
    """Build and compile the model, its monitors and TensorBoard, and restore a resumed run's checkpoint.

    Call after seeding (Keras draws the initial weights here). A run whose loss stops
    being finite stops, unless `divergence_stops` is False (runs vmapped together cannot
    stop one by one: it is only recorded). `safe_point` is called after the model is built
    and after the checkpoint is restored (a lone run's Ctrl-C points).
    """
    model = compiled_model(cfg, data)
    safe_point()
    control = TrainingControl()
    epoch_callbacks, steering = monitors(cfg, model, control, data.training)
    divergence = Divergence(control if divergence_stops else None)
    saver = Checkpointer(run_dir, cfg, dataset.checksums, checkpoint_every, resume, steering)
    start = saver.restore(model, data.training.x_train[:1], data.training.y_train[:1])
    divergence.resume(saver.full_history().get("loss", []))
    safe_point()
    apply_control(model, control)  # a restored plateau schedule's rate
    board = tensorboard_log(tensorboard, run_dir, cfg, start)
    callbacks = (*epoch_callbacks, divergence, saver, *board)
    return RunSetup(model, control, steering, divergence, saver, start, callbacks, step_writers(run_dir, board, start))


def augmentation(cfg: Config, data: PreparedData) -> Callable[[int], np.ndarray] | None:
    """The epoch -> training inputs function of config [regularization]'s augmentation, or None."""
    options = augmentation_options(cfg.regularization)
    if options is None:
        return None

    def augmented(epoch: int) -> np.ndarray:  # a new draw every epoch, from the run's seed
        rng = np.random.default_rng([cfg.train.seed, epoch])
        images = augment_images(data.raw_train, rng, **options)
        return transform(images, cfg.preprocess.method, data.stats)

    return augmented


def divergence_record(divergence: Divergence | None) -> dict[str, Any]:
    """What status.json and metrics.json add about a run whose loss stopped being finite."""
    if divergence is None or divergence.diverged_epoch is None:
        return {}
    return {"diverged": True, "diverged_epoch": divergence.diverged_epoch}


@dataclass(frozen=True)
class TrainedRun:
    """A run whose training is over: what `finish` scores, saves and records."""

    cfg: Config
    dataset: Dataset
    run_dir: Path
    model: Any
    data: PreparedData
    history: dict[str, list[float]]  # every epoch's metrics, resumed ones included
    started: float  # time.perf_counter() when the run started
    train_s: float  # seconds spent training
    stopper: EarlyStopping | None = None  # its best and stopping epochs go into metrics.json
    divergence: Divergence | None = None


def finish(
    run: TrainedRun, *, score=evaluate, extra: dict[str, Any] | None = None, **timing_notes: Any
) -> dict[str, Any]:
    """Score the finished model (test set, validation), save the model and metrics.json; return the metrics.

    `timing_notes` (how the run was resumed or shared) go into metrics.json's timings
    beside the run's own. `score` is evaluate.evaluate or a stand-in giving the same
    numbers (a bundle's shared program). Data prepared without the test set (a tune
    trial) give validation scores only; `extra` adds the caller's own keys (a trial's `pruned`).
    """
    cfg, dataset, model, data, history = run.cfg, run.dataset, run.model, run.data, run.history
    evaluate_started = time.perf_counter()
    training, batch = data.training, cfg.train.batch_size
    scores = None if data.x_test is None else score(model, data.x_test, data.y_test, batch)
    validated = scores if training.x_val is data.x_test else score(model, training.x_val, training.y_val, batch)
    evaluate_ended = time.perf_counter()
    runs.save_model(model, run.run_dir / MODEL_FILE)
    tested = {} if scores is None else {"test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
    metrics = {
        "format_version": records.FORMAT_VERSION,
        **tested,
        "validation_loss": validated["loss"],  # the final model on what each epoch was scored on
        "validation_accuracy": validated["accuracy"],
        "epochs_completed": len(history.get("loss", [])),
        "seed": cfg.train.seed,
        "backend": cfg.train.backend,
        "engine": cfg.train.engine,
        "parameters": int(model.count_params()),
        "train_images": int(len(data.training.x_train)),
        "validation": {"source": cfg.validation.source, "images": int(len(data.training.y_val))},
        "dataset": {
            "name": dataset.name,
            "train_size": int(len(dataset.y_train)),
            **({} if scores is None else {"test_size": int(len(dataset.y_test))}),
            "checksums": dict(sorted(dataset.checksums.items())),
        },
        "versions": versions(),
        "machine": machine(),  # the last digits of the scores depend on the CPU (docs/install.md)
        "timings": {
            "train_s": run.train_s,
            "evaluate_s": evaluate_ended - evaluate_started,
            "epoch_s": history.get("epoch_time_s", []),
            "total_s": time.perf_counter() - run.started,
            **model_device(model),
            **timing_notes,
        },
    }
    metrics.update(divergence_record(run.divergence))
    metrics.update(extra or {})
    if run.stopper is not None:
        metrics["early_stopping"] = {"best_epoch": run.stopper.best_epoch, "stopped_epoch": run.stopper.stopped_epoch}
    records.write_json(run.run_dir / METRICS_FILE, metrics)
    return metrics

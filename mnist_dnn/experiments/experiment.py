"""The paper's experiment end to end, from a validated config and loaded data to a run directory.

The stages stay ignorant of each other; this is the one place that wires them in the
paper's order (section 5.1): preprocess -> build -> compile -> fit -> evaluate -> save.

Each run's status.json (runs.run_status) says where it stands: `running`, then `complete`,
or `interrupted` (Ctrl-C; `resume=True` continues it from checkpoint.npz to the very result
an uninterrupted run gives) or `failed`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.backend import machine, model_device, seed_everything, versions
from mnist_dnn.core.config import Config, config_to_toml
from mnist_dnn.core.interrupts import Interrupted, poll
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.augment import augment_images
from mnist_dnn.data.augment import configured as augmentation_options
from mnist_dnn.data.mnist import NUM_CLASSES, Dataset, load_configured
from mnist_dnn.data.preprocess import STATISTICS_FILE, Statistics, prepare, save_statistics, transform
from mnist_dnn.data.preprocess import fit as fit_preprocessing
from mnist_dnn.data.splits import check_train_limit, split_indices
from mnist_dnn.experiments.sharing import one_program
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.checkpoint import Checkpointer, interrupted_message, saved_epoch
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
from mnist_dnn.training.train import train

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


def run_training(
    cfg: Config,
    runs_root: Path,
    name: str | None,
    out: Path | None,
    resume_dir: Path | None,
    verbose: int,
    progress: tuple[EpochCallback, ...],
    checkpoint_every: int,
    tensorboard: bool,
) -> tuple[Path, dict[str, Any]]:
    """The `train` command's work: open the run (open_run), train and evaluate it; (run directory, metrics).

    Ctrl-C becomes Interrupted saying what was kept: a new run stopped before its first
    epoch leaves nothing behind, any other run its checkpoint and the command resuming it.
    """
    dataset, run_dir = open_run(cfg, runs_root, name, out, resume_dir)
    resume = resume_dir is not None
    try:
        metrics = train_and_evaluate(cfg, dataset, run_dir, verbose, progress, resume, checkpoint_every, tensorboard)
    except KeyboardInterrupt:
        if not resume and runs.remove_if_unstarted(run_dir):
            raise Interrupted(f"Interrupted before training started; nothing was saved ({run_dir} removed)") from None
        raise Interrupted(interrupted_message(run_dir)) from None
    return run_dir, metrics


def train_and_evaluate(
    cfg: Config,
    dataset: Dataset,
    run_dir: Path,
    verbose: int,
    extra_callbacks: tuple[EpochCallback, ...] = (),
    resume: bool = False,
    checkpoint_every: int = 1,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Train as configured, save config, history, model and metrics into `run_dir`; return the metrics.

    The data's name and checksums go into metrics.json so a result can be traced to its
    data; where the files came from does not, so that equal runs give equal files.
    """
    return train_model(cfg, dataset, run_dir, verbose, extra_callbacks, None, resume, checkpoint_every, tensorboard)[1]


def train_model(
    cfg: Config,
    dataset: Dataset,
    run_dir: Path,
    verbose: int,
    extra_callbacks: tuple[EpochCallback, ...] = (),
    validation: RawDigits | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    tensorboard: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """`train_and_evaluate`, also returning the trained model.

    With `validation` (the custom digits) the run is part of that experiment: the test-set
    scores in metrics.json stay MNIST's, so a bad custom score is never mistaken for a bad
    model, and it is not resumable on its own. `resume` continues an interrupted run in
    `run_dir` from its checkpoint (written every `checkpoint_every` epochs; 0 = never).
    `tensorboard` writes event files beside history.csv (tensorboard_log.py).
    """
    kind = runs.KIND_TRAIN if validation is None else runs.KIND_CUSTOM
    with runs.run_status(run_dir, kind) as outcome:
        poll()  # a Ctrl-C during start-up (imports, data) ends the run here, marked interrupted
        run = LoneRun(cfg, dataset, run_dir, kind, validation, resume, checkpoint_every, tensorboard)
        run.advance(cfg.train.epochs, verbose, extra_callbacks)
        poll()
        metrics = run.finish()
        outcome.update(run.diverged)
    return run.model, metrics


class LoneRun:
    """One run set up as `train` sets it up, trained a stretch of epochs at a time, then finished.

    train_model goes through in one stretch; a tune trial whose seeds cannot share a
    program advances each seed's LoneRun epoch by epoch in step (bundles.train_in_step),
    and each is then exactly its lone run. `test_set=False` leaves the test images
    unread (a trial validates on a holdout). The caller holds the run's status.
    """

    def __init__(
        self,
        cfg: Config,
        dataset: Dataset,
        run_dir: Path,
        kind: str,
        validation: RawDigits | None = None,
        resume: bool = False,
        checkpoint_every: int = 1,
        tensorboard: bool = True,
        test_set: bool = True,
    ):
        self.started = time.perf_counter()
        self.cfg, self.dataset, self.run_dir = cfg, dataset, run_dir
        if not (resume and (run_dir / runs.CHECKPOINT_FILE).exists()):  # a checkpoint checks its config itself
            runs.atomic_write_text(run_dir / runs.CONFIG_FILE, config_to_toml(cfg))
        seed_everything(cfg.train.seed)
        self.data = data = prepare_data(cfg, dataset, validation, test_set)
        poll()
        if data.stats is not None and not (resume and (run_dir / STATISTICS_FILE).exists()):
            save_statistics(data.stats, run_dir / STATISTICS_FILE)
        self.model = _compiled_model(cfg, data)
        poll()
        self.control = TrainingControl()
        monitors, self.steering = _monitors(cfg, self.model, self.control, data.training)
        self.divergence = Divergence(self.control)
        every = checkpoint_every if kind == runs.KIND_TRAIN else 0
        self.saver = Checkpointer(run_dir, cfg, dataset.checksums, every, resume, self.steering)
        self.start = self.resumed_at = self.saver.restore(
            self.model, data.training.x_train[:1], data.training.y_train[:1]
        )
        self.divergence.resume(self.saver.full_history().get("loss", []))
        poll()
        apply_control(self.model, self.control)  # a restored plateau schedule's rate
        board = _board(tensorboard, run_dir, cfg, self.start)
        self.callbacks = (*monitors, self.divergence, self.saver, *board)
        self.step_callbacks = (
            runs.StepLossWriter(run_dir / runs.STEPS_FILE, keep_through=self.start),
            *(log.steps for log in board),
        )
        self.epoch_inputs = _augmentation(cfg, data)
        self.train_s = 0.0

    @property
    def done(self) -> bool:
        """Trained through its last epoch, or stopped (early stopping, divergence)."""
        return self.start >= self.cfg.train.epochs or self.control.stop

    @property
    def latest(self) -> dict[str, float]:
        """The last epoch's history row (its metrics, and `epoch`)."""
        return self.saver.history.rows[-1]

    @property
    def diverged(self) -> dict[str, Any]:
        """What status.json records of a loss that stopped being finite (nothing when it did not)."""
        return _diverged(self.divergence)

    def advance(self, through: int, verbose: int = 0, extra_callbacks: tuple[EpochCallback, ...] = ()) -> None:
        """Train on to epoch `through` (1-based), unless done: the same epochs one straight run trains."""
        if self.done or self.start >= through:
            return
        started = time.perf_counter()
        train(
            self.model,
            self.data.training,
            dataclasses.replace(self.cfg.train, epochs=through),  # the loop's end; schedules keep the config's
            callbacks=(*self.callbacks, *extra_callbacks),
            verbose=verbose,
            control=self.control,
            epoch_inputs=self.epoch_inputs,
            start_epoch=self.start,
            step_callbacks=self.step_callbacks,
        )
        self.train_s += time.perf_counter() - started
        self.start = len(self.saver.full_history().get("loss", []))

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keep early stopping's best weights, score, save model and metrics (plus `extra`); return the metrics."""
        stopper = self.steering.get("early_stopping")
        if stopper is not None:
            stopper.restore()
        return _finish(
            self.cfg,
            self.dataset,
            self.run_dir,
            self.model,
            self.data,
            self.saver.full_history(),
            self.started,
            self.train_s,
            stopper,
            divergence=self.divergence,
            extra=extra,
            resumed_at_epoch=self.resumed_at,
        )


def train_models_together(
    cfgs: Sequence[Config],
    dataset: Dataset,
    run_dirs: Sequence[Path],
    validation: RawDigits,
    on_run_done: Callable[[int, Any, dict[str, Any]], None],
    tensorboard: bool = True,
) -> None:
    """Train several runs that differ only in their seed as one vmapped program (fused engine).

    Each run directory gets what `train_model` with the custom digits as `validation`
    writes; the numbers agree with a lone run's up to the rounding of batched matrix
    products. `on_run_done(index, model, metrics)` follows each save. The runs' timings
    are those of all of them together.
    """
    from mnist_dnn.training.fused import train_fused_together

    first = cfgs[0]
    if not one_program(cfgs):
        raise ValueError("train_models_together trains runs that share one program (sharing.one_program)")

    def unseeded(cfg: Config) -> Config:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=0))

    if any(unseeded(cfg) != unseeded(first) for cfg in cfgs):
        raise ValueError("train_models_together trains runs that differ in their seed only")
    started = time.perf_counter()
    with runs.run_statuses(run_dirs, runs.KIND_CUSTOM):
        poll()
        data = prepare_data(first, dataset, validation)  # the seed changes neither the split nor the statistics
        models, writers, monitors, boards, divergences = [], [], [], [], []
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            runs.atomic_write_text(run_dir / runs.CONFIG_FILE, config_to_toml(cfg))
            if data.stats is not None:
                save_statistics(data.stats, run_dir / STATISTICS_FILE)
            seed_everything(cfg.train.seed)
            model = _compiled_model(cfg, data)
            models.append(model)
            writers.append(runs.HistoryWriter(run_dir / runs.HISTORY_FILE))
            divergences.append(Divergence(None))  # runs trained together cannot stop one by one: only recorded
            monitors.append([*_monitors(cfg, model, TrainingControl(), data.training)[0], divergences[-1]])
            boards.append(_board(tensorboard, run_dir, cfg, 0))
        train_started = time.perf_counter()
        train_fused_together(
            models,
            data.training,
            first.train.epochs,
            first.train.batch_size,
            [cfg.train.seed for cfg in cfgs],
            first.train.shuffle,
            [
                (
                    *model_monitors,
                    writer,
                    *board,
                    *([_log_progress(first.train.epochs, len(cfgs))] if index == 0 else []),
                )
                for index, (model_monitors, writer, board) in enumerate(zip(monitors, writers, boards, strict=True))
            ],
            step_callbacks=[
                (runs.StepLossWriter(run_dir / runs.STEPS_FILE), *(log.steps for log in board))
                for run_dir, board in zip(run_dirs, boards, strict=True)
            ],
        )
        train_s = time.perf_counter() - train_started
        together = zip(cfgs, run_dirs, models, writers, divergences, strict=True)
        for index, (cfg, run_dir, model, writer, divergence) in enumerate(together):
            history = writer.columns()
            metrics = _finish(
                cfg,
                dataset,
                run_dir,
                model,
                data,
                history,
                started,
                train_s,
                None,
                divergence=divergence,
                trained_together=len(cfgs),
            )
            runs.write_status(run_dir, "complete", kind=runs.KIND_CUSTOM, **_diverged(divergence))
            on_run_done(index, model, metrics)


def _log_progress(epochs: int, count: int):
    """An epoch callback that says how far runs trained together have come (no progress bar shows it)."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        log.info("Epoch %d/%d of %d runs together: %.2fs", epoch, epochs, count, metrics["epoch_time_s"])

    return report


def _board(enabled: bool, run_dir: Path, cfg: Config, start_epoch: int) -> tuple:
    """The run's TensorBoard writer as a tuple of callbacks: one, or none with --no-tensorboard."""
    if not enabled:
        return ()
    from mnist_dnn.runs.tensorboard import TensorBoardLog

    return (TensorBoardLog(run_dir, config_to_toml(cfg), start_epoch),)


def _compiled_model(cfg: Config, data: PreparedData):
    """The configured network, compiled; call after seeding, as Keras draws the initial weights then."""
    reg = cfg.regularization
    model = build_model(cfg.model, data.training.x_train.shape[1], NUM_CLASSES, l1=reg.l1, l2=reg.l2)
    steps = count_steps(len(data.training.x_train), cfg.train.batch_size)
    compile_model(model, cfg.optimizer, cfg.train.loss, steps, cfg.train.epochs)
    return model


def _augmentation(cfg: Config, data: PreparedData):
    """The epoch -> training inputs function of config [regularization]'s augmentation, or None."""
    options = augmentation_options(cfg.regularization)
    if options is None:
        return None

    def augmented(epoch: int) -> np.ndarray:  # a new draw every epoch, from the run's seed
        rng = np.random.default_rng([cfg.train.seed, epoch])
        images = augment_images(data.raw_train, rng, **options)
        return transform(images, cfg.preprocess.method, data.stats)

    return augmented


def _diverged(divergence: Divergence | None) -> dict[str, Any]:
    """What status.json and metrics.json add about a run whose loss stopped being finite."""
    if divergence is None or divergence.diverged_epoch is None:
        return {}
    return {"diverged": True, "diverged_epoch": divergence.diverged_epoch}


def _finish(
    cfg,
    dataset,
    run_dir,
    model,
    data,
    history,
    started,
    train_s,
    stopper,
    score=evaluate,
    divergence=None,
    extra: dict[str, Any] | None = None,
    **timing_notes,
) -> dict[str, Any]:
    """Score the finished model (test set, validation), save the model and metrics.json; return the metrics.

    `started` and `train_s` time the whole run and its training; `timing_notes` (how it
    was resumed or shared) go into metrics.json's timings beside them. `score` is
    evaluate.evaluate or a stand-in giving the same numbers (a bundle's shared program).
    Data prepared without the test set (a tune trial) give validation scores only; `extra`
    adds the caller's own keys (a trial's `pruned`).
    """
    evaluate_started = time.perf_counter()
    training, batch = data.training, cfg.train.batch_size
    scores = None if data.x_test is None else score(model, data.x_test, data.y_test, batch)
    validated = scores if training.x_val is data.x_test else score(model, training.x_val, training.y_val, batch)
    evaluate_ended = time.perf_counter()
    runs.save_model(model, run_dir / runs.MODEL_FILE)
    tested = {} if scores is None else {"test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
    metrics = {
        "format_version": runs.FORMAT_VERSION,
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
            "train_s": train_s,
            "evaluate_s": evaluate_ended - evaluate_started,
            "epoch_s": history.get("epoch_time_s", []),
            "total_s": time.perf_counter() - started,
            **model_device(model),
            **timing_notes,
        },
    }
    metrics.update(_diverged(divergence))
    metrics.update(extra or {})
    if stopper is not None:
        metrics["early_stopping"] = {"best_epoch": stopper.best_epoch, "stopped_epoch": stopper.stopped_epoch}
    runs.write_json(run_dir / runs.METRICS_FILE, metrics)
    return metrics


def _monitors(cfg: Config, model, control: TrainingControl, training: TrainingData):
    """The epoch callbacks the config asks for, in the order they must run, and the steering ones by name.

    Gradient norms and the learning rate come first, so the history writer records them;
    the steering ones read the finished epoch's metrics, and their state is checkpointed.
    """
    sample = slice(0, GRAD_SAMPLE_SIZE)  # the same images every epoch
    monitors: list[EpochCallback] = [
        GradientNorms(model, training.x_train[sample], training.y_train[sample], cfg.train.loss)
    ]
    opt, reg = cfg.optimizer, cfg.regularization
    steering: dict[str, Any] = {}
    if opt.schedule != "constant":
        monitors.append(learning_rate_recorder(model))
    if opt.schedule == "plateau":
        steering["plateau"] = PlateauSchedule(control, opt.learning_rate, opt.decay_rate, opt.plateau_patience)
    if reg.early_stopping:
        steering["early_stopping"] = EarlyStopping(
            model, control, reg.early_stopping_monitor, reg.early_stopping_patience, reg.early_stopping_restore_best
        )
    return [*monitors, *steering.values()], steering

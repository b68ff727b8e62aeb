"""The paper's experiment end to end, from a validated config and loaded data to a run directory.

The stages stay ignorant of each other; this is the one place that wires them in the
paper's order (section 5.1): preprocess -> build -> compile -> fit -> evaluate -> save.

Each run's status.json (lifecycle.run_status) says where it stands: `running`, then `complete`,
or `interrupted` (Ctrl-C; `resume=True` continues it from checkpoint.npz to the very result
an uninterrupted run gives) or `failed`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_dnn.core.backend import seed_everything
from mnist_dnn.core.config import Config
from mnist_dnn.core.interrupts import Interrupted, poll
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.experiments.sharing import one_program
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from mnist_dnn.training.checkpoint import interrupted_message
from mnist_dnn.training.loop import EpochCallback, TrainingControl
from mnist_dnn.training.monitors import Divergence
from mnist_dnn.training.run import (
    RawDigits,
    TrainedRun,
    augmentation,
    compiled_model,
    divergence_record,
    finish,
    open_run,
    prepare_data,
    set_up,
    step_writers,
    tensorboard_log,
    write_config,
    write_statistics,
)
from mnist_dnn.training.run import monitors as run_monitors
from mnist_dnn.training.train import train

log = logging.getLogger(__name__)


def run_training(
    cfg: Config,
    runs_root: Path,
    *,
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
    kind = lifecycle.KIND_TRAIN if validation is None else lifecycle.KIND_CUSTOM
    with lifecycle.run_status(run_dir, kind) as outcome:
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
        write_config(run_dir, cfg, resume)
        seed_everything(cfg.train.seed)
        self.data = data = prepare_data(cfg, dataset, validation, test_set)
        poll()
        write_statistics(run_dir, data.stats, resume)
        every = checkpoint_every if kind == lifecycle.KIND_TRAIN else 0
        self.parts = set_up(
            cfg, dataset, run_dir, data, checkpoint_every=every, resume=resume, tensorboard=tensorboard, safe_point=poll
        )
        self.model, self.control, self.saver = self.parts.model, self.parts.control, self.parts.saver
        self.start = self.resumed_at = self.parts.start
        self.epoch_inputs = augmentation(cfg, data)
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
        return divergence_record(self.parts.divergence)

    def advance(self, through: int, verbose: int = 0, extra_callbacks: tuple[EpochCallback, ...] = ()) -> None:
        """Train on to epoch `through` (1-based), unless done: the same epochs one straight run trains."""
        if self.done or self.start >= through:
            return
        started = time.perf_counter()
        train(
            self.model,
            self.data.training,
            dataclasses.replace(self.cfg.train, epochs=through),  # the loop's end; schedules keep the config's
            callbacks=(*self.parts.callbacks, *extra_callbacks),
            verbose=verbose,
            control=self.control,
            epoch_inputs=self.epoch_inputs,
            start_epoch=self.start,
            step_callbacks=self.parts.step_callbacks,
        )
        self.train_s += time.perf_counter() - started
        self.start = len(self.saver.full_history().get("loss", []))

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keep early stopping's best weights, score, save model and metrics (plus `extra`); return the metrics."""
        stopper = self.parts.steering.get("early_stopping")
        if stopper is not None:
            stopper.restore()
        history = self.saver.full_history()
        trained = TrainedRun(
            self.cfg,
            self.dataset,
            self.run_dir,
            self.model,
            self.data,
            history,
            self.started,
            self.train_s,
            stopper=stopper,
            divergence=self.parts.divergence,
        )
        return finish(trained, extra=extra, resumed_at_epoch=self.resumed_at)


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
    with lifecycle.run_statuses(run_dirs, lifecycle.KIND_CUSTOM):
        poll()
        data = prepare_data(first, dataset, validation)  # the seed changes neither the split nor the statistics
        models, writers, monitors, boards, divergences = [], [], [], [], []
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            write_config(run_dir, cfg)
            write_statistics(run_dir, data.stats)
            seed_everything(cfg.train.seed)
            model = compiled_model(cfg, data)
            models.append(model)
            writers.append(records.HistoryWriter(run_dir / runs.HISTORY_FILE))
            divergences.append(Divergence(None))  # runs trained together cannot stop one by one: only recorded
            monitors.append([*run_monitors(cfg, model, TrainingControl(), data.training)[0], divergences[-1]])
            boards.append(tensorboard_log(tensorboard, run_dir, cfg, 0))
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
            step_callbacks=[step_writers(run_dir, board) for run_dir, board in zip(run_dirs, boards, strict=True)],
        )
        train_s = time.perf_counter() - train_started
        together = zip(cfgs, run_dirs, models, writers, divergences, strict=True)
        for index, (cfg, run_dir, model, writer, divergence) in enumerate(together):
            history = writer.columns()
            trained = TrainedRun(cfg, dataset, run_dir, model, data, history, started, train_s, divergence=divergence)
            metrics = finish(trained, trained_together=len(cfgs))
            lifecycle.write_status(run_dir, "complete", kind=lifecycle.KIND_CUSTOM, **divergence_record(divergence))
            on_run_done(index, model, metrics)


def _log_progress(epochs: int, count: int):
    """An epoch callback that says how far runs trained together have come (no progress bar shows it)."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        log.info("Epoch %d/%d of %d runs together: %.2fs", epoch, epochs, count, metrics["epoch_time_s"])

    return report

"""Bundles: the runs of a sweep that can share one compiled epoch program of the fused engine.

    bundles = plan_bundles(plan)                       # plan: sweep.plan_sweep's PlannedRuns
    for bundle in bundles:
        dirs = [sweep_dir / run.directory for run in bundle.members]
        metrics = train_bundle(bundle, dirs, dataset, on_run_done=lambda k, m: print(k, m["test_accuracy"]))

`plan_bundles(plan) -> list[Bundle]` groups runs whose epoch program is the same: the
seeds of one setting, and settings that differ only in what the program carries as
state (a constant learning rate is a variable of Keras' optimizers; initial weights).
Everything else that shapes the program or the data splits them; runs that cannot share
at all (the `fit` engine, early stopping, a plateau schedule, augmentation) are bundles
of one. Which is which is sharing.py's to say, for every key of the config.
Bundles come in the order of their first run in the plan, members in plan order;
`max_members=N` (keyword) splits larger ones evenly, e.g. to give each worker one.

`train_bundle(bundle, run_dirs, data, on_run_done=None) -> list[dict]` trains the members
into `run_dirs` (one per member, each missing, empty, interrupted or finished) and
returns each member's metrics.json content in member order. A finished run is read, not
trained again; an interrupted one continues from its checkpoint. `data` is the
`data.Dataset` the members' config names (plain numpy arrays and strings: picklable).
`on_run_done(member_index, metrics)` is called as each member finishes.

`train_in_step(cfgs, run_dirs, data, on_epoch) -> (metrics, stopped)` trains new runs
epoch by epoch in step, never touching the test set: a tune trial's seeds, whose mean
validation accuracy goes to the pruner after every epoch. Runs that cannot share a
program (augmentation, early stopping, ...) go as lone runs, one epoch each in turn.

`train_custom_runs(cfgs, run_dirs, data, validation, on_run_done)` trains section 5.2.2's
runs (validated on custom digits) the same way, on a CPU's devices.

The program is traced and compiled once per bundle and the data uploaded once (and copied
once to each CPU device). On a CPU members run side by side, each on a JAX CPU device of
its own - one per core (core.backend.activate_backend), one after another on one - and
each writes the very files of its lone run; on a GPU they are vmapped (`mode=`
overrides: 'sequential', 'devices', 'vmap'). Each run directory of
train_bundle is what `mnist-dnn train` writes for that config: an ordinary, resumable,
checkpointed run, so an interrupted bundle continues from its members' checkpoints.
train_in_step's runs keep no checkpoints (kind tune-trial: a cut-short trial is asked again).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import Config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.experiments.sharing import one_program, program_key
from mnist_dnn.runs import directory as runs

RunDone = Callable[[int, dict[str, Any]], None]
"""(member index, metrics) after each member of a bundle finishes."""

EpochHook = Callable[[int, list[dict[str, float]]], bool]
"""(epoch, each member's metrics of that epoch) -> True to stop them all there (train_in_step)."""


@dataclass(frozen=True)
class Bundle:
    """Planned runs that one compiled epoch program can train (a single run when nothing can share)."""

    members: tuple[Any, ...]  # sweep.PlannedRun: sweep.py drives bundles, so this module does not import it


def plan_bundles(plan: Sequence[Any], *, max_members: int | None = None) -> list[Bundle]:
    """Group a sweep's runs into bundles that share a program; deterministic for a given plan.

    `max_members` caps a bundle's size (an executor that spreads bundles over workers
    splits large ones) into pieces as even as can be, in plan order.
    """
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    groups: dict[Any, list[Any]] = {}
    for index, run in enumerate(plan):
        key = program_key(run.config)
        groups.setdefault(index if key is None else key, []).append(run)
    bundles = []
    for members in groups.values():  # dicts keep insertion order: the order of each group's first run
        pieces = -(-len(members) // (max_members or len(members)))
        cuts = [len(members) * k // pieces for k in range(pieces + 1)]
        bundles += [Bundle(tuple(members[start:end])) for start, end in itertools.pairwise(cuts)]
    return bundles


def train_bundle(
    bundle: Bundle,
    run_dirs: Sequence[Path],
    data,
    on_run_done: RunDone | None = None,
    *,
    mode: str | None = None,
    tensorboard: bool = True,
) -> list[dict[str, Any]]:
    """Train a bundle's members into `run_dirs`; return their metrics in member order (see the module docstring).

    `mode` is how members go through the shared program: 'sequential' (one after
    another) or 'vmap' (all at once); by default what is faster on this device
    (`execution_mode`). `tensorboard` gives each run its event files, as `train` does.
    """
    members = bundle.members
    if len(run_dirs) != len(members):
        raise ValueError(f"{len(members)} members but {len(run_dirs)} run directories")
    if len(members) > 1 and not one_program([run.config for run in members]):
        raise ValueError("a bundle's members must share one program (use plan_bundles)")
    states = [member_state(run_dir) for run_dir in run_dirs]
    results: list[dict[str, Any] | None] = [None] * len(members)

    def done(index: int, metrics: dict[str, Any]) -> None:
        results[index] = metrics
        if on_run_done is not None:
            on_run_done(index, metrics)

    for index, state in enumerate(states):
        if state == "complete":
            done(index, runs.read_metrics(run_dirs[index]))
    pending = [index for index, state in enumerate(states) if state != "complete"]
    if len(members) == 1 and pending:  # nothing to share: the lone path
        from mnist_dnn.experiments.experiment import train_and_evaluate

        resume = states[0] == "resumable"
        done(0, train_and_evaluate(members[0].config, data, run_dirs[0], 0, resume=resume, tensorboard=tensorboard))
    elif pending:
        _train_shared(
            [members[k].config for k in pending],
            [run_dirs[k] for k in pending],
            [states[k] == "resumable" for k in pending],
            data,
            mode or execution_mode(),
            lambda position, _, metrics: done(pending[position], metrics),
            tensorboard,
        )
    return results


def train_custom_runs(
    cfgs: Sequence[Config],
    run_dirs: Sequence[Path],
    dataset,
    validation,
    on_run_done: Callable[[int, Any, dict[str, Any]], None],
    *,
    mode: str | None = None,
    tensorboard: bool = True,
) -> None:
    """Section 5.2.2's runs (seeds of one config, validating on the custom digits) as a bundle, one device each.

    Each run directory is what experiment.train_model with those digits as `validation`
    writes, byte for byte. `on_run_done(index, model, metrics)` follows each save, in order.
    On an accelerator experiment.train_models_together (vmap) is the faster path.
    """
    if not one_program(cfgs):
        raise ValueError("train_custom_runs trains runs that share one program (sharing.one_program)")
    mode = mode or execution_mode()
    if mode == "vmap":
        raise ValueError("train_custom_runs trains on devices; vmapped runs: experiment.train_models_together")
    for run_dir in run_dirs:
        if member_state(run_dir) != "new":
            raise ValueError(f"{run_dir}: a custom-digits run starts from nothing")
    _train_shared(cfgs, run_dirs, [False] * len(cfgs), dataset, mode, on_run_done, tensorboard, validation)


def train_in_step(
    cfgs: Sequence[Config],
    run_dirs: Sequence[Path],
    dataset,
    on_epoch: EpochHook,
    *,
    mode: str | None = None,
    tensorboard: bool = False,
    safe_point: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Train new runs that share a program epoch by epoch in step; (each run's metrics, whether on_epoch stopped them).

    A tune trial's seeds: once every member has run epoch e, `on_epoch(e, their metrics)`
    may stop them all there, and each run is then complete with the epochs it ran. The
    test set is neither prepared nor scored (metrics.json holds validation scores, and
    `pruned`), so the configs must validate on a holdout of the training set. Members go
    through the program as train_bundle's do: one after another on a CPU, where each run's
    history, steps and weights are those of `train --config` on its config.toml; vmapped on
    a GPU. A member whose loss stops being finite stops, as its lone run would; its last
    epoch's metrics stay in what on_epoch sees. `run_dirs` must be new or empty.
    `safe_point` is called once the members are set up and after each member's epoch; an
    exception it raises stops the trial there (tune's Ray tasks asked to stop raise
    KeyboardInterrupt), the runs marked interrupted.
    """
    for run_dir in run_dirs:
        if member_state(run_dir) != "new":
            raise ValueError(f"{run_dir}: a run trained in step starts from nothing")
    safe_point = safe_point or (lambda: None)
    if not one_program(cfgs):
        return _train_alone_in_step(cfgs, run_dirs, dataset, on_epoch, tensorboard, safe_point)
    from mnist_dnn.experiments.experiment import prepare_data
    from mnist_dnn.training.fused import EpochProgram

    mode = mode or execution_mode()
    devices = mode_devices(mode) if mode != "vmap" else []
    first = cfgs[0]
    with runs.run_statuses(run_dirs, runs.KIND_TRIAL):
        data = prepare_data(first, dataset, test_set=False)
        members = [
            _Member(cfg, run_dir, False, dataset, data, len(cfgs), mode, tensorboard, runs.KIND_TRIAL)
            for cfg, run_dir in zip(cfgs, run_dirs, strict=True)
        ]
        program = EpochProgram(members[0].model, data.training, first.train.batch_size, first.train.shuffle)
        for member in members[1:]:
            member.share_compiled(members[0])
        safe_point()
        stopped = False
        for epoch in range(1, first.train.epochs + 1):
            going = [member for member in members if not member.control.stop]
            if not going:  # every member diverged and stopped: no epoch is left to report
                break
            size = len(going) if mode == "vmap" else len(devices)
            for wave in (going[k : k + size] for k in range(0, len(going), size)):
                if mode == "vmap":
                    _train_together(wave, program, through=epoch)
                else:
                    _epoch_side_by_side([m.on(device) for m, device in zip(wave, devices, strict=False)], program)
                safe_point()
            if on_epoch(epoch, [member.latest for member in members]):
                stopped = True
                break
        return [member.finish(program, {"pruned": stopped}) for member in members], stopped


def _train_alone_in_step(
    cfgs: Sequence[Config],
    run_dirs: Sequence[Path],
    dataset,
    on_epoch: EpochHook,
    tensorboard: bool,
    safe_point: Callable[[], None],
) -> tuple[list[dict[str, Any]], bool]:
    """train_in_step for runs that cannot share a program: each its own lone run, advanced epoch by epoch.

    Each run is exactly `train --config` on its config.toml (augmentation, early stopping
    and a plateau schedule included); a run that stopped early keeps its last epoch's
    metrics in what on_epoch sees, as a diverged member of a shared program does.
    """
    import keras

    from mnist_dnn.experiments.experiment import LoneRun

    with runs.run_statuses(run_dirs, runs.KIND_TRIAL):
        members = []
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            keras.backend.clear_session(free_memory=False)  # Keras names as in a process of its own
            members.append(LoneRun(cfg, dataset, run_dir, runs.KIND_TRIAL, tensorboard=tensorboard, test_set=False))
        safe_point()
        stopped = False
        for epoch in range(1, max(cfg.train.epochs for cfg in cfgs) + 1):
            going = [member for member in members if not member.done]
            if not going:
                break
            for member in going:
                member.advance(epoch)
                safe_point()
            if on_epoch(epoch, [member.latest for member in members]):
                stopped = True
                break
        results = []
        for member in members:
            results.append(member.finish({"pruned": stopped}))
            runs.write_status(member.run_dir, "complete", kind=runs.KIND_TRIAL, **member.diverged)
        return results, stopped


MODES = ("sequential", "devices", "vmap")
"""How a bundle's members go through their shared program: one after another on one device, side by side on
every CPU device of the process, or vmapped together on one (an accelerator)."""


def execution_mode() -> str:
    """'vmap' on an accelerator; on a CPU 'devices' when the process has several (one a core), else 'sequential'.

    A CPU runs one model per core fastest; vmap batches the products and is slower there (docs/cores.md).
    """
    import jax

    from mnist_dnn.core.backend import compute_devices

    if jax.default_backend() != "cpu":
        return "vmap"
    return "devices" if len(compute_devices()) > 1 else "sequential"


def member_state(run_dir: Path) -> str:
    """'complete', 'resumable' or 'new' (made ready: created, or found empty).

    A directory that holds files but no status.json, or a run another live process is
    training, is refused with one line.
    """
    status = runs.read_status(run_dir) if run_dir.is_dir() else None
    if status is not None and status["status"] == "complete":
        return "complete"
    if status is not None:
        with runs.run_lock(run_dir):  # refused at once, in one line, while another process trains it
            return "resumable"
    if run_dir.exists():  # created, then stopped before it wrote anything: nothing to keep
        leftovers = sorted(p.name for p in run_dir.iterdir())
        if leftovers:
            raise UserInputError(f"{run_dir}: holds {', '.join(leftovers)} but no status.json; move it away")
        return "new"
    run_dir.mkdir(parents=True)
    return "new"


def _train_shared(
    cfgs: Sequence[Config],
    run_dirs: Sequence[Path],
    resume: Sequence[bool],
    dataset,
    mode: str,
    done: Callable[[int, Any, dict[str, Any]], None],
    tensorboard: bool = True,
    validation=None,
) -> None:
    """Train runs that share a program through one EpochProgram, each into its own ordinary run directory.

    `done(position, model, metrics)` follows each member's save. With `validation` (raw
    custom digits, experiment.prepare_data) the runs are section 5.2.2's (kind custom).

    'sequential' and 'devices' give each member a device of its own (one device, or every
    CPU device), set it up right before it trains - so the random states its checkpoints
    record are a lone run's - and start the next member on a device as soon as one
    finishes. 'vmap' sets them all up, then advances those at the same epoch together.
    """
    from mnist_dnn.experiments.experiment import prepare_data
    from mnist_dnn.training.fused import EpochProgram

    devices = mode_devices(mode)
    first = cfgs[0]
    kind = runs.KIND_TRAIN if validation is None else runs.KIND_CUSTOM
    with runs.run_statuses(run_dirs, kind):
        data = prepare_data(first, dataset, validation)  # the members' split and statistics are one (program_key)
        program = None
        template = None

        def set_up(position: int) -> _Member:
            nonlocal program, template
            member = _Member(
                cfgs[position], run_dirs[position], resume[position], dataset, data, len(cfgs), mode, tensorboard, kind
            )
            if template is None:  # its pure train/test steps serve every member's state
                template = member
                program = EpochProgram(member.model, data.training, first.train.batch_size, first.train.shuffle)
            else:
                member.share_compiled(template)
            return member

        if mode == "vmap":
            members = [set_up(position) for position in range(len(cfgs))]
            for start in sorted({member.start for member in members}):
                _train_together([m for m in members if m.start == start], program)
            for position, member in enumerate(members):
                done(position, member.model, member.finish(program))
            return
        waiting = list(range(len(cfgs)))
        running: dict[int, tuple[int, _Member]] = {}  # device slot -> (position, member)
        while waiting or running:
            for slot, device in enumerate(devices):
                if slot not in running and waiting:
                    position = waiting.pop(0)
                    running[slot] = position, set_up(position).on(device)
            going = [member for _, member in running.values() if not member.trained(first.train.epochs)]
            if going:
                _epoch_side_by_side(going, program)
            for slot, (position, member) in sorted(running.items(), key=lambda item: item[1][0]):
                if member.trained(first.train.epochs):
                    del running[slot]
                    done(position, member.model, member.finish(program))


def side_by_side(count: int, mode: str | None = None) -> int:
    """How many of a bundle's `count` members train at the same time in this process (in `mode`)."""
    mode = mode or execution_mode()
    return count if mode == "vmap" else min(count, len(mode_devices(mode)))


def mode_devices(mode: str) -> list:
    """The devices members of a bundle train on in `mode`: one ('sequential'), every CPU device ('devices')."""
    from mnist_dnn.core.backend import compute_devices

    if mode not in MODES:
        raise ValueError(f"unknown bundle execution mode {mode!r}")
    return compute_devices() if mode == "devices" else compute_devices()[:1]


class _Member:
    """One run of a bundle: what experiment.train_model sets up, trains and writes, around a shared program.

    A trial's member (kind runs.KIND_TRIAL) keeps no checkpoints: a cut-short trial is asked again, not resumed.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        resume: bool,
        dataset,
        data,
        bundle_size: int,
        mode: str,
        tensorboard: bool,
        kind: str = runs.KIND_TRAIN,
    ):
        import keras

        from mnist_dnn.core.backend import seed_everything
        from mnist_dnn.core.config import config_to_toml
        from mnist_dnn.data.preprocess import STATISTICS_FILE, save_statistics
        from mnist_dnn.experiments.experiment import _board, _compiled_model, _monitors
        from mnist_dnn.training.checkpoint import Checkpointer
        from mnist_dnn.training.loop import TrainingControl, build_for_training
        from mnist_dnn.training.monitors import Divergence

        self.started = time.perf_counter()
        self.cfg, self.run_dir, self.dataset, self.data, self.kind = cfg, run_dir, dataset, data, kind
        self.notes = {"bundle_members": bundle_size, "bundle_mode": mode}
        if not (resume and (run_dir / runs.CHECKPOINT_FILE).exists()):  # a checkpoint checks its config itself
            runs.atomic_write_text(run_dir / runs.CONFIG_FILE, config_to_toml(cfg))
        keras.backend.clear_session(free_memory=False)  # Keras names (adam, not adam_3) as in a process of its own
        seed_everything(cfg.train.seed)
        if data.stats is not None and not (resume and (run_dir / STATISTICS_FILE).exists()):
            save_statistics(data.stats, run_dir / STATISTICS_FILE)
        self.model = _compiled_model(cfg, data)
        monitors, steering = _monitors(cfg, self.model, TrainingControl(), data.training)
        self.saver = Checkpointer(run_dir, cfg, dataset.checksums, int(kind == runs.KIND_TRAIN), resume, steering)
        self.start = self.saver.restore(self.model, data.training.x_train[:1], data.training.y_train[:1])
        self.resumed_at = self.start  # `start` moves on as the member trains (train_in_step: epoch by epoch)
        # A member on a device of its own stops at its first non-finite loss, as a lone run does;
        # vmapped members cannot stop one by one, so theirs is only recorded.
        self.control = TrainingControl()
        self.divergence = Divergence(None if mode == "vmap" else self.control)
        self.divergence.resume(self.saver.full_history().get("loss", []))
        board = _board(tensorboard, run_dir, cfg, self.start)
        self.callbacks = (*monitors, self.divergence, self.saver, *board)
        self.step_callbacks = (
            runs.StepLossWriter(run_dir / runs.STEPS_FILE, keep_through=self.start),
            *(log.steps for log in board),
        )
        self.train_s = 0.0
        self.device = None  # where its epochs run (on); vmapped members: the default device
        build_for_training(self.model, data.training.x_train[:1], data.training.y_train[:1])
        self.random_state = _GlobalRandomState.capture()  # set up now; the next member's set-up changes them

    def on(self, device) -> _Member:
        """Run this member's next epochs on `device` (it takes its state there); returns the member."""
        self.device = device
        return self

    def trained(self, epochs: int) -> bool:
        """Whether nothing is left to train: all `epochs` run, or stopped (its loss diverged)."""
        return self.start >= epochs or self.control.stop

    @contextlib.contextmanager
    def own_random_state(self) -> Iterator[None]:
        """Python's, NumPy's and Keras' global random states as this member's lone run has them, meanwhile.

        Members side by side are set up one after another, each seeding the globals; its
        checkpoints record them, so each member's own are put back around its callbacks.
        """
        self.random_state.restore()
        try:
            yield
        finally:
            self.random_state = _GlobalRandomState.capture()

    def share_compiled(self, first: _Member) -> None:
        """Measure gradient norms with the first member's compiled gradient (the epoch program is shared already)."""
        from mnist_dnn.training.monitors import GradientNorms

        (ours,) = [c for c in self.callbacks if isinstance(c, GradientNorms)]
        (theirs,) = [c for c in first.callbacks if isinstance(c, GradientNorms)]
        ours.share_compiled(theirs)

    @property
    def latest(self) -> dict[str, float]:
        """The last epoch's history row (its metrics, and `epoch`): what train_in_step's hook sees."""
        return self.saver.history.rows[-1]

    def finish(self, program, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Score (through the shared program), save model and metrics (plus `extra`), mark the run complete."""
        with self.own_random_state():
            return self._finish(program, extra)

    def _finish(self, program, extra: dict[str, Any] | None) -> dict[str, Any]:
        from mnist_dnn.experiments.experiment import _diverged, _finish

        history = self.saver.full_history()
        metrics = _finish(
            self.cfg,
            self.dataset,
            self.run_dir,
            self.model,
            self.data,
            history,
            self.started,
            self.train_s,
            None,
            program.evaluate,
            divergence=self.divergence,
            extra=extra,
            resumed_at_epoch=self.resumed_at,
            **self.notes,
        )
        runs.write_status(self.run_dir, "complete", kind=self.kind, **_diverged(self.divergence))
        (self.run_dir / runs.CHECKPOINT_FILE).unlink(missing_ok=True)  # model.keras has it all now
        return metrics


def _train_together(members: Sequence[_Member], program, through: int | None = None) -> None:
    """Members at the same start epoch, through the shared program to epoch `through` (default: the last)."""
    from mnist_dnn.training.fused import train_fused_together

    train = members[0].cfg.train
    through = train.epochs if through is None else through
    alone = len(members) == 1
    if members[0].start >= through or (alone and members[0].control.stop):  # nothing left to train
        return
    started = time.perf_counter()
    train_fused_together(
        [member.model for member in members],
        members[0].data.training,
        through,
        train.batch_size,
        [member.cfg.train.seed for member in members],
        train.shuffle,
        [member.callbacks for member in members],
        control=members[0].control if alone else None,
        start_epoch=members[0].start,
        step_callbacks=[member.step_callbacks for member in members],
        program=program,
    )
    for member in members:
        member.train_s += time.perf_counter() - started
        member.start = through


def _epoch_side_by_side(members: Sequence[_Member], program) -> None:
    """Each member's next epoch on its own device, all running at once; then each takes its results in turn.

    A Ctrl-C lands after every member has recorded (and checkpointed) its epoch.
    """
    from mnist_dnn.core.interrupts import poll
    from mnist_dnn.training.fused import record_epoch

    started = time.perf_counter()
    results = program.side_by_side([(m.model, m.device, m.start, m.cfg.train.seed) for m in members])
    elapsed = time.perf_counter() - started
    for member, result in zip(members, results, strict=True):
        with member.own_random_state():
            training = member.data.training
            record_epoch(
                member.model,
                result,
                member.start,
                elapsed,
                program.batch_size,
                len(training.x_train),
                member.callbacks,
                member.step_callbacks,
            )
        member.train_s += elapsed
        member.start += 1
    poll()


@dataclass
class _GlobalRandomState:
    """The process-wide random states a run's checkpoint records (checkpoint.py): Python's, NumPy's, Keras'."""

    python: Any
    numpy: Any
    keras: dict[str, Any]

    @classmethod
    def capture(cls) -> _GlobalRandomState:
        from keras.src.backend.common import global_state

        keras_state = {name: global_state.get_global_attribute(name) for name in _KERAS_RANDOM_GLOBALS}
        return cls(random.getstate(), np.random.get_state(), keras_state)

    def restore(self) -> None:
        from keras.src.backend.common import global_state

        random.setstate(self.python)
        np.random.set_state(self.numpy)
        for name, value in self.keras.items():
            global_state.set_global_attribute(name, value)


_KERAS_RANDOM_GLOBALS = ("global_random_seed", "global_seed_generator")  # keras.utils.set_random_seed's

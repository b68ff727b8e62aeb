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
from mnist_dnn.experiments.lanes import Finished, in_step_on_devices, train_on_devices
from mnist_dnn.experiments.sharing import one_program, program_key
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records

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
            done(index, records.read_metrics(run_dirs[index]))
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
    writes, byte for byte. `on_run_done(index, model, metrics)` follows each save, in the
    order the runs finish (on several cores not always theirs: `index` says which run).
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
    programs: TrialPrograms | None = None,
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
    `safe_point` is called once the first member is set up, after each later one's set-up
    and after each member's epoch; an
    exception it raises stops the trial there (tune's Ray tasks asked to stop raise
    KeyboardInterrupt), the runs marked interrupted. `programs` (one per study) hands a
    trial the previous trial's prepared data and compiled program when they are the same.
    """
    for run_dir in run_dirs:
        if member_state(run_dir) != "new":
            raise ValueError(f"{run_dir}: a run trained in step starts from nothing")
    safe_point = safe_point or (lambda: None)
    if not one_program(cfgs):
        return _train_alone_in_step(cfgs, run_dirs, dataset, on_epoch, tensorboard, safe_point)
    from mnist_dnn.training.fused import EpochProgram
    from mnist_dnn.training.run import prepare_data

    mode = mode or execution_mode()
    devices = mode_devices(mode) if mode != "vmap" else []
    first = cfgs[0]
    programs = programs or TrialPrograms()
    with lifecycle.run_statuses(run_dirs, lifecycle.KIND_TRIAL):
        kept = programs.get(first, dataset)
        data, program, compiled_by = kept or (prepare_data(first, dataset, test_set=False), None, None)
        members: list[_Member | None] = [None] * len(cfgs)

        def set_up(position: int) -> _Member:
            cfg, run_dir, kind = cfgs[position], run_dirs[position], lifecycle.KIND_TRIAL
            member = _Member(cfg, run_dir, False, dataset, data, len(cfgs), mode, tensorboard, kind)
            compiled = members[0] if position else compiled_by  # the first of a study compiles its own
            if compiled is not None:
                member.share_compiled(compiled)
            members[position] = member
            return member

        template = set_up(0)
        if program is None:
            program = EpochProgram(template.model, data.training, first.train.batch_size, first.train.shuffle)
            programs.keep(first, dataset, data, program, template)
        if mode == "vmap":
            for position in range(1, len(cfgs)):
                set_up(position)
            safe_point()
            stopped = _vmapped_in_step(members, program, on_epoch, safe_point)
        else:
            safe_point()
            stopped = in_step_on_devices(members, set_up, program, devices, on_epoch, safe_point)
        return [member.finish(program, {"pruned": stopped}) for member in members], stopped


class TrialPrograms:
    """A study's last trial's prepared data and epoch program, for its next trial when they are the same.

    Trials over what runs carry as state (a constant learning rate, initial weights;
    sharing.py) have one program: its template model's pure steps serve any state of that
    program_key, as they serve a bundle's members. The next such trial then skips preparing
    the data, tracing and compiling (on every CPU device; the gradient-norm monitor's
    program too). One is kept: the memory of one trial's data and program, however long
    the study.
    """

    def __init__(self):
        self._last: tuple | None = None  # (program_key, dataset, prepared data, EpochProgram, template member)

    def get(self, cfg: Config, dataset) -> tuple | None:
        """(prepared data, program, the member whose monitors compiled) of the last trial if `cfg` and `dataset`
        make the same ones, else None."""
        if self._last is None:
            return None
        key, kept_dataset, *kept = self._last
        return tuple(kept) if key == program_key(cfg) and kept_dataset is dataset else None

    def keep(self, cfg: Config, dataset, data, program, template: _Member) -> None:
        self._last = (program_key(cfg), dataset, data, program, template)


def _vmapped_in_step(members: Sequence[_Member], program, on_epoch: EpochHook, safe_point) -> bool:
    """train_in_step's epochs on an accelerator: the members still going vmapped together, epoch by epoch."""
    for epoch in range(1, members[0].cfg.train.epochs + 1):
        going = [member for member in members if not member.control.stop]
        if not going:  # every member diverged and stopped: no epoch is left to report
            return False
        _train_together(going, program, through=epoch)
        safe_point()
        if on_epoch(epoch, [member.latest for member in members]):
            return True
    return False


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

    with lifecycle.run_statuses(run_dirs, lifecycle.KIND_TRIAL):
        members = []
        for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
            keras.backend.clear_session(free_memory=False)  # Keras names as in a process of its own
            members.append(
                LoneRun(cfg, dataset, run_dir, lifecycle.KIND_TRIAL, tensorboard=tensorboard, test_set=False)
            )
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
            lifecycle.write_status(member.run_dir, "complete", kind=lifecycle.KIND_TRIAL, **member.diverged)
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
    status = lifecycle.read_status(run_dir) if run_dir.is_dir() else None
    if status is not None and status["status"] == "complete":
        return "complete"
    if status is not None:
        with lifecycle.run_lock(run_dir):  # refused at once, in one line, while another process trains it
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
    custom digits, training.run.prepare_data) the runs are section 5.2.2's (kind custom).

    'sequential' and 'devices' train each member on a device of its own (one device, or
    every CPU device; lanes.train_on_devices), setting members up as devices come free - each
    set-up seeds the global random generators, and each member's own are put back around
    its callbacks, so its checkpoints record a lone run's. 'vmap' sets them all up, then
    advances those at the same epoch together.
    """
    from mnist_dnn.training.fused import EpochProgram
    from mnist_dnn.training.run import prepare_data

    devices = mode_devices(mode)
    first = cfgs[0]
    kind = lifecycle.KIND_TRAIN if validation is None else lifecycle.KIND_CUSTOM
    with lifecycle.run_statuses(run_dirs, kind):
        data = prepare_data(first, dataset, validation)  # the members' split and statistics are one (program_key)

        def member(position: int) -> _Member:
            return _Member(
                cfgs[position], run_dirs[position], resume[position], dataset, data, len(cfgs), mode, tensorboard, kind
            )

        template = member(0)  # its pure train/test steps serve every member's state
        program = EpochProgram(template.model, data.training, first.train.batch_size, first.train.shuffle)

        def set_up(position: int) -> _Member:
            if position == 0:
                return template
            other = member(position)
            other.share_compiled(template)
            return other

        if mode == "vmap":
            members = [set_up(position) for position in range(len(cfgs))]
            for start in sorted({member.start for member in members}):
                _train_together([m for m in members if m.start == start], program)
            for position, trained in enumerate(members):
                done(position, trained.model, trained.finish(program))
            return
        train_on_devices(set_up, len(cfgs), first.train.epochs, program, devices, done)


def side_by_side(count: int, mode: str | None = None) -> int:
    """How many of a bundle's `count` members train at the same time in this process (in `mode`)."""
    mode = mode or execution_mode()
    return count if mode == "vmap" else min(count, len(mode_devices(mode)))


def held_at_once(count: int, cores: int | None = None) -> int:
    """How many of a bundle's `count` members hold weights and optimizer state at once in a process.

    Those side by side on its `cores` CPU devices (default: this process's, or all of them
    vmapped on an accelerator), and on a CPU the next member, set up while they train
    (lanes.train_on_devices).
    """
    if cores is None:
        mode = execution_mode()
        if mode == "vmap":
            return count
        cores = len(mode_devices(mode))
    return min(count, cores + 1)


def mode_devices(mode: str) -> list:
    """The devices members of a bundle train on in `mode`: one ('sequential'), every CPU device ('devices')."""
    from mnist_dnn.core.backend import compute_devices

    if mode not in MODES:
        raise ValueError(f"unknown bundle execution mode {mode!r}")
    return compute_devices() if mode == "devices" else compute_devices()[:1]


class _Member:
    """One run of a bundle: what experiment.train_model sets up, trains and writes, around a shared program.

    A trial's member (kind lifecycle.KIND_TRIAL) keeps no checkpoints: a cut-short trial is asked again, not resumed.
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
        kind: str = lifecycle.KIND_TRAIN,
    ):
        import keras

        from mnist_dnn.core.backend import seed_everything
        from mnist_dnn.training.loop import build_for_training
        from mnist_dnn.training.run import set_up, write_config, write_statistics

        self.started = time.perf_counter()
        self.cfg, self.run_dir, self.dataset, self.data, self.kind = cfg, run_dir, dataset, data, kind
        self.notes = {"bundle_members": bundle_size, "bundle_mode": mode}
        write_config(run_dir, cfg, resume)
        keras.backend.clear_session(free_memory=False)  # Keras names (adam, not adam_3) as in a process of its own
        seed_everything(cfg.train.seed)
        write_statistics(run_dir, data.stats, resume)
        # A member on a device of its own stops at its first non-finite loss, as a lone run does;
        # vmapped members cannot stop one by one, so theirs is only recorded. Members steer
        # nothing else (sharing.py: no early stopping, no plateau schedule).
        every, stops = int(kind == lifecycle.KIND_TRAIN), mode != "vmap"
        parts = set_up(
            cfg,
            dataset,
            run_dir,
            data,
            checkpoint_every=every,
            resume=resume,
            divergence_stops=stops,
            tensorboard=tensorboard,
        )
        self.model, self.control, self.saver = parts.model, parts.control, parts.saver
        self.divergence, self.callbacks, self.step_callbacks = parts.divergence, parts.callbacks, parts.step_callbacks
        self.start = self.resumed_at = parts.start  # `start` moves on as the member trains (train_in_step)
        self.train_s = 0.0
        build_for_training(self.model, data.training.x_train[:1], data.training.y_train[:1])
        self.random_state = _GlobalRandomState.capture()  # set up now; the next member's set-up changes them

    def record(self, finished: Finished, program) -> None:
        """Take in its epoch that ran on a device: history row, checkpoint and callbacks, as its lone run's."""
        from mnist_dnn.training.fused import record_epoch

        if finished.epoch != self.start:
            raise ValueError(f"epoch {finished.epoch + 1} of {self.run_dir} ran before epoch {self.start + 1}")
        with self.own_random_state():
            training = self.data.training
            record_epoch(
                self.model,
                finished.result,
                finished.epoch,
                finished.seconds,
                program.batch_size,
                len(training.x_train),
                self.callbacks,
                self.step_callbacks,
            )
        self.train_s += finished.seconds
        self.start += 1

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
        from mnist_dnn.training.run import TrainedRun, divergence_record, finish

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
            divergence=self.divergence,
        )
        metrics = finish(trained, score=program.evaluate, extra=extra, resumed_at_epoch=self.resumed_at, **self.notes)
        lifecycle.write_status(self.run_dir, "complete", kind=self.kind, **divergence_record(self.divergence))
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

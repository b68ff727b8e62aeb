"""`mnist-dnn tune`: a search over ranges by Optuna, scored on the mean over seeds, resumable.

    texts = ["optimizer.learning_rate=log:1e-4..1e-1", "model.dropout=float:0..0.7"]
    space = check_space([parse_dimension(t) for t in texts], base)   # every key and range, before anything trains
    plan = TunePlan(base, space, seeds=(0, 1), trials=12, study_seed=0)
    study = open_study(plan, storage_url(tune_dir), "tune", "tpe", "median", startup=5, warmup=1)
    recover(study)                                     # trials cut short last time: failed, asked again
    run_study(study, plan, dataset, tune_dir)          # ask -> train the trial's seeds in step -> tell
    best = retrain_best(study, plan, dataset, tune_dir, train_run)   # full training set, test set once
    write_results(study, plan, tune_dir)               # trials.csv and the figures

A trial is one setting x all seeds. Its seeds are a bundle (bundles.train_in_step): they
share one compiled epoch program and go through it epoch by epoch in step - one after
another on a CPU, where each run is exactly its lone `train`, vmapped on a GPU - each into
an ordinary run directory trials/trial-NNNN/seedS. Seeds that cannot share a program
(augmentation, early stopping, a plateau schedule: sharing.py) go as lone runs in step.
After every epoch the seeds' mean validation accuracy is reported to Optuna, whose pruner
may stop the trial there. Every trial and seed validates on the same images: a holdout
carved from the training set, drawn from the study seed; the test set plays no part in
the search and is read only when the best setting is retrained on the full training set.

The study lives in an Optuna storage (by default the journal file study.journal in the
tune directory), so the same command again continues it: finished trials are kept, a
trial cut short (Ctrl-C, a killed process) is failed and its setting asked again under
a new number. Several processes may share one storage: each asks its own trials - worker
processes here (run_workers) or Ray tasks (run_ray_workers) run that same loop.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import fcntl
import hashlib
import io
import logging
import os
import socket
import statistics
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import (
    Config,
    ValidationConfig,
    apply_overrides,
    config_to_toml,
    parse_assignment,
    resolve_config,
)
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted, deferred
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.experiments.bundles import side_by_side, train_in_step
from mnist_dnn.experiments.sharing import can_share, misbundled, refusal
from mnist_dnn.experiments.study_storage import missing_driver, refuse_in_memory, repair_journal
from mnist_dnn.experiments.sweep import _split_top_level, parse_seeds
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.model import INPUT_SIZE

log = logging.getLogger(__name__)

STUDY_FILE = "study.journal"  # Optuna's journal storage: an append-only file, nothing to start
SCHEMA_ATTEMPTS = 3  # opening an RDB storage whose tables another process is creating at that moment
TRIALS_DIR = "trials"
BEST_DIR = "best"
TABLE_FILE = "trials.csv"
BEST_CONFIG_FILE = "best.toml"
RESULT_FILE = "best.json"
HISTORY_FIGURE = "optimization_history"
IMPORTANCE_FIGURE = "param_importances"
KINDS = ("log", "float", "int", "choice")
FORBIDDEN_PREFIXES = ("train.seed", "validation.", "train.backend", "train.engine")  # fixed by the study itself
MAX_SEEDS = 64  # a trial's seeds are one bundle, vmapped on a GPU: a typo such as --seeds 0-9999 would not fit
POLL_S = 2.0  # how often a process that ran out of trials checks on the ones others are still running
OWNERLESS_S = 60.0  # a running trial with no owner recorded this long after it was asked lost its process
STOP_S = 60.0  # how long Ray tasks asked to stop get to fail their trials (one seed's epoch) before being killed


@dataclass(frozen=True)
class Dimension:
    """One --space: a config key and where Optuna may look (a range, or choices as TOML texts)."""

    key: str
    kind: str  # one of KINDS
    low: float = 0.0
    high: float = 0.0
    integer: bool = False  # the key holds integers: log and int ranges suggest integers
    choices: tuple[str, ...] = ()  # TOML texts, Optuna's categories (it cannot hold lists)
    values: tuple[Any, ...] = ()  # the parsed choices

    @property
    def text(self) -> str:
        if self.kind == "choice":
            return f"{self.key}=choice:{','.join(self.choices)}"
        return f"{self.key}={self.kind}:{_number(self.low)}..{_number(self.high)}"


@dataclass(frozen=True)
class TunePlan:
    """What defines a study: the base config, the space, the seeds; `trials` is how far to take it."""

    base: Config
    space: tuple[Dimension, ...]
    seeds: tuple[int, ...]
    trials: int
    study_seed: int = 0
    tensorboard: bool = True  # event files for every trial run and the retrained best (not part of the study)

    def __post_init__(self):
        if len(self.seeds) > MAX_SEEDS:
            raise UserInputError(f"--seeds: {len(self.seeds)} seeds per trial, more than {MAX_SEEDS}")

    def definition(self, sampler: str, pruner: str, startup: int, warmup: int) -> dict[str, Any]:
        """What the storage remembers, so a different command is not mistaken for the same study."""
        return {
            "space": [dim.text for dim in self.space],
            "seeds": list(self.seeds),
            "study_seed": self.study_seed,
            "base_config": hashlib.sha256(config_to_toml(self.base).encode()).hexdigest(),
            "sampler": sampler,
            "pruner": [pruner, startup, warmup],
        }


# --- the search space: parsed and checked before anything trains ----------------------------------------------------


def plan_from_flags(
    config_path: Path | None,
    flags: dict[str, Any],
    assignments: Sequence[str],
    space_texts: Sequence[str],
    seeds: str,
    trials: int,
    study_seed: int,
    tensorboard: bool = True,
) -> TunePlan:
    """`tune`'s plan from the command's flags: the base config, the space checked against it, the seeds.

    A key both searched and fixed on the command line (`--epochs 3 --space train.epochs=...`)
    is refused: either would silently lose to the other.
    """
    base = resolve_config(config_path, flags, assignments)
    space = check_space([parse_dimension(text) for text in space_texts], base)
    fixed = {key: f"--{key.partition('.')[2].replace('_', '-')}" for key, value in flags.items() if value is not None}
    fixed.update({parse_assignment(text)[0]: f"--set {text}" for text in assignments})
    for dim in space:
        if dim.key in fixed:
            raise UserInputError(f"--space {dim.key}: also fixed by {fixed[dim.key]}; search it or fix it, not both")
    return TunePlan(base, space, tuple(parse_seeds(seeds)), trials, study_seed, tensorboard)


def parse_dimension(text: str) -> Dimension:
    """'key=log:1e-4..1e-1' / 'float:0..0.7' / 'int:32..512' / 'choice:a,b,[1,2]' -> Dimension (shape only)."""
    key, eq, spec = text.partition("=")
    kind, colon, body = spec.partition(":")
    key, kind, body = key.strip(), kind.strip(), body.strip()
    if not eq or not colon or "." not in key or kind not in KINDS:
        raise UserInputError(
            f"--space: expected section.key=KIND:RANGE with KIND one of {', '.join(KINDS)}, got {text!r}"
        )
    if kind == "choice":
        pieces = [piece.strip() for piece in _split_top_level(body)]
        if not body or not all(pieces):
            raise UserInputError(f"--space {key}: choice needs values separated by commas, got {body!r}")
        if len(set(pieces)) < len(pieces):
            raise UserInputError(f"--space {key}: a choice is listed twice in {body!r}")
        values = tuple(parse_assignment(f"{key}={piece}")[1] for piece in pieces)
        return Dimension(key, kind, choices=tuple(pieces), values=values)
    low_text, dots, high_text = body.partition("..")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = float("nan")
    if not dots or not (np.isfinite(low) and np.isfinite(high)):
        raise UserInputError(f"--space {key}: {kind} needs a range LOW..HIGH of numbers, got {body!r}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise UserInputError(f"--space {key}: int needs whole numbers, got {body!r}")
    if kind == "log" and low <= 0:
        raise UserInputError(f"--space {key}: log needs a range above 0, got {body!r}")
    if high < low or (high == low and kind != "int"):
        raise UserInputError(f"--space {key}: the range {body!r} is empty (LOW must be below HIGH)")
    return Dimension(key, kind, low, high)


def check_space(space: Sequence[Dimension], base: Config) -> tuple[Dimension, ...]:
    """Every key known and free to search, every range end and choice a valid config; -> the space, typed.

    A key holding integers (train.batch_size) gets integers from log and int ranges. Range
    ends and every choice are checked as configs, and a network too large for memory is
    refused at each, as `train` refuses it, before a study or trial folder is written. Any
    key may be searched: a trial whose seeds cannot share a program (augmentation, early
    stopping, a plateau schedule; see sharing.py) trains them as lone runs in step
    (bundles.train_in_step).
    """
    if not space:
        raise UserInputError("--space: give at least one KEY=SPEC to search")
    keys = [dim.key for dim in space]
    for key in keys:
        if keys.count(key) > 1:
            raise UserInputError(f"--space {key}: given twice")
        if key.startswith(FORBIDDEN_PREFIXES):
            raise UserInputError(f"--space {key}: fixed by the study (seeds: --seeds; validation: a holdout)")
    typed = []
    for dim in space:
        integer = _holds_integers(dim.key)
        if dim.kind == "int" and not integer:
            raise UserInputError(f"--space {dim.key}: int needs an integer key; use float or log")
        if integer and dim.kind == "float":
            raise UserInputError(f"--space {dim.key}: holds integers; use int or log")
        dim = dataclasses.replace(dim, integer=integer and dim.kind != "choice")
        candidates = dim.values if dim.kind == "choice" else (_value(dim, dim.low), _value(dim, dim.high))
        if dim.integer and _value(dim, dim.low) > _value(dim, dim.high):
            raise UserInputError(f"--space {dim.key}: no integer lies in {_number(dim.low)}..{_number(dim.high)}")
        for value in candidates:
            try:
                cfg = apply_overrides(base, {dim.key: value})
                check_training_memory(cfg.model, cfg.optimizer, INPUT_SIZE, NUM_CLASSES)  # as train checks it
            except UserInputError as exc:
                raise UserInputError(f"--space {dim.text}: {exc}") from None
        typed.append(dim)
    return tuple(typed)


def _holds_integers(key: str) -> bool:
    section, _, name = key.partition(".")
    cls = {f.name: f.default_factory for f in dataclasses.fields(Config)}.get(section)
    if cls is None:
        return False  # apply_overrides names the unknown section
    hint = typing.get_type_hints(cls).get(name)
    return hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType) and int in typing.get_args(hint))


def _value(dim: Dimension, number: float) -> Any:
    if not dim.integer:
        return float(number)
    return int(np.ceil(number)) if number == dim.low else int(np.floor(number))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else repr(float(value))


def suggest(trial, dim: Dimension) -> Any:
    """Ask an Optuna trial for this dimension's value, as the config takes it."""
    if dim.kind == "choice":
        return dim.values[dim.choices.index(trial.suggest_categorical(dim.key, list(dim.choices)))]
    low, high = _value(dim, dim.low), _value(dim, dim.high)
    if dim.integer:
        return trial.suggest_int(dim.key, low, high, log=dim.kind == "log")
    return trial.suggest_float(dim.key, low, high, log=dim.kind == "log")


def setting_of(space: Sequence[Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params -> config overrides (a choice's TOML text becomes its value)."""
    out = {}
    for dim in space:
        value = params[dim.key]
        out[dim.key] = dim.values[dim.choices.index(value)] if dim.kind == "choice" else value
    return out


def search_config(base: Config, study_seed: int) -> Config:
    """The base config as every trial validates: a holdout of the training set drawn from the study seed.

    A config that already validates on a holdout or a fold keeps its fraction or fold; the
    draw is the study's unless the config names validation.split_seed.
    """
    val = base.validation
    if val.source == "test":
        val = dataclasses.replace(val, source="holdout")
    if val.split_seed is None:
        val = dataclasses.replace(val, split_seed=study_seed)
    return dataclasses.replace(base, validation=val)


def trial_seeds(study_seed: int, number: int, seeds: Sequence[int]) -> list[int]:
    """train.seed of each of trial `number`'s runs: drawn from (study seed, trial number, seed)."""
    return [int(np.random.SeedSequence([study_seed, number, seed]).generate_state(1)[0] >> 1) for seed in seeds]


def sampler_seed(study_seed: int, number: int) -> int:
    """The seed of the sampler that draws trial `number`'s setting."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def full_training_config(cfg: Config) -> Config:
    """The setting as `train --config` takes it: the whole training set, validating as the paper does."""
    return dataclasses.replace(cfg, validation=ValidationConfig())


# --- the study: Optuna's storage, sampler and pruner; the ask-and-tell loop ------------------------------------------


def check_tune_dir(out: Path) -> None:
    """--out must be new, empty, or a tune directory (one holding a study or trials): nothing else is written into."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out}: exists and is not a directory")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"--out {out}: {blocking} is not a directory")
    if out.is_dir() and any(out.iterdir()) and not ((out / STUDY_FILE).exists() or (out / TRIALS_DIR).is_dir()):
        raise UserInputError(f"--out {out}: holds other files and is not a tune directory; give a new one")


def check_trials(tune_dir: Path) -> None:
    """Refuse a tune directory whose trials went through a shared program that ignored their config (issue 19).

    Their scores are in the study: a search continued on them would rank settings by runs
    that never trained as those settings say. Nothing is deleted.
    """
    for run_dir in sorted((tune_dir / TRIALS_DIR).glob("trial-*/seed*")):
        reason = misbundled(run_dir)
        if reason is not None:
            raise UserInputError(refusal(tune_dir, run_dir.relative_to(tune_dir).as_posix(), reason))


def storage_url(tune_dir: Path, storage: str | None = None) -> str:
    """--storage as given (an RDB URL: postgresql://..., sqlite:///...; or a journal file), else the tune dir's."""
    return storage if storage else str(tune_dir / STUDY_FILE)


def shown_url(url: str) -> str:
    """--storage as messages and logs show it: an RDB URL's password as ***."""
    if "://" not in url:
        return url
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _storage(url: str):
    """The storage behind --storage: opened now, so a bad URL or a damaged journal is one line, not a traceback.

    A server that is down, a wrong password or a missing database is the connection's first
    error line (psycopg's, for postgresql://), with the password in the URL shown as ***.
    """
    import optuna
    import sqlalchemy.exc
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        refuse_in_memory(url)
        racing = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                return optuna.storages.RDBStorage(url)
            except ImportError as exc:  # SQLAlchemy imports the URL's driver only now
                raise missing_driver(shown_url(url), exc) from None
            except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
                # Processes started together on a fresh database all create Optuna's tables: one wins, the
                # others' CREATE TABLE or version row collides with it, and their next attempt finds them made.
                if isinstance(exc, racing) and attempt < SCHEMA_ATTEMPTS:
                    continue
                problem = str(exc).splitlines()[0]
                raise UserInputError(f"--storage {shown_url(url)}: cannot open it: {problem}") from None
    path = Path(url)
    if path.exists() and not path.is_file():
        raise UserInputError(f"{path}: expected an Optuna journal file, got a directory or special file")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"{path}: {blocking} is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)  # a torn last record set aside, a file that is not a journal refused
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(name: str, seed: int):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, startup: int, warmup: int):
    """'median': prune below the median of earlier trials at the same epoch, once `startup` trials finished,
    from epoch `warmup` on; 'halving': successive halving, the first rung at epoch `warmup`; 'none'."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup))
    return optuna.pruners.NopPruner()


def open_study(plan: TunePlan, url: str, name: str, sampler: str, pruner: str, startup: int, warmup: int):
    """Create the study, or load it when the storage holds it (it must come from the same definition)."""
    import optuna

    try:
        study = optuna.create_study(
            storage=_storage(url),
            study_name=name,
            direction="maximize",
            sampler=make_sampler(sampler, plan.study_seed),
            pruner=make_pruner(pruner, startup, warmup),
            load_if_exists=True,
        )
    except UserInputError:
        raise
    except ValueError as exc:  # a damaged journal (json's decode errors included), another study's direction
        raise UserInputError(f"{shown_url(url)}: cannot use it as study {name!r}: {str(exc).splitlines()[0]}") from None
    definition = plan.definition(sampler, pruner, startup, warmup)
    stored = study.user_attrs.get("definition")
    if stored is None:
        study.set_user_attr("definition", definition)
    elif stored != definition:
        changed = ", ".join(key for key in definition if definition[key] != stored.get(key))
        raise UserInputError(
            f"{shown_url(url)}: study {name!r} was made by another command (its {changed} differ); "
            "use another --out or --study-name"
        )
    return study


def _owner_alive(attrs: dict[str, Any]) -> bool:
    """Whether the process running a trial lives; on another machine we cannot tell, so assume it does."""
    pid = attrs.get("pid")
    if not isinstance(pid, int) or attrs.get("host") != socket.gethostname():
        return attrs.get("host") is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _abandoned(trial) -> bool:
    """A running trial whose process died; one without an owner yet was asked a moment ago, unless long ago."""
    owner = trial.user_attrs.get("owner")
    if owner is None:  # another process (a Ray task starting beside this one) is between ask and recording itself
        started = trial.datetime_start
        return started is not None and (datetime.datetime.now() - started).total_seconds() > OWNERLESS_S
    return not _owner_alive(owner)


def recover(study) -> list[int]:
    """Fail the trials whose process died mid-trial and ask their settings again; -> the failed numbers.

    A trial cut short by Ctrl-C is failed on the way out and marked `interrupted`; one
    whose process was killed is still RUNNING in the storage with a dead owner. Each
    such setting is enqueued once, so it runs again under a new number.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING and _abandoned(trial):
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    rerun = {trial.user_attrs.get("rerun_of") for trial in trials}
    again = [
        trial
        for trial in trials
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in rerun
    ]
    for trial in again:
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return [trial.number for trial in again]


def _counts(study) -> tuple[int, int]:
    """(finished trials: complete or pruned, trials running now)."""
    from optuna.trial import TrialState

    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return sum(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states), states.count(TrialState.RUNNING)


def ask_setting(study, plan: TunePlan, sampler: str = "tpe") -> tuple[Any, dict[str, Any]]:
    """Ask for a trial (a setting enqueued by `recover` comes first) and draw its setting -> (trial, overrides).

    Optuna draws a value when it is suggested, so the sampler that draws it can be seeded
    from the trial's number, known once asked.
    """
    trial = study.ask()
    study.sampler = make_sampler(sampler, sampler_seed(plan.study_seed, trial.number))
    return trial, {dim.key: suggest(trial, dim) for dim in plan.space}


TrialDone = Callable[[Any], None]
"""Optuna's FrozenTrial of each trial finished (user attrs: validation_accuracy per seed, epochs run)."""


def run_study(
    study,
    plan: TunePlan,
    dataset,
    tune_dir: Path,
    on_trial_done: TrialDone | None = None,
    sampler: str = "tpe",
    stop_requested: Callable[[], bool] | None = None,
) -> None:
    """Ask, train and tell until the study holds `plan.trials` finished trials and none is running.

    Each trial's setting is drawn by a `sampler` seeded from the study seed and the trial's
    number: the same study proposes the same settings run after run, and processes that
    share it never draw the same random setting twice. A trial that another process is
    running counts toward the total; when none is left to ask, this process waits for
    those to finish. Ctrl-C fails the trial in flight (marked `interrupted`, asked again
    by the next run) and is re-raised. Storage writes are never cut in half by Ctrl-C
    (interrupts.deferred). `stop_requested`, asked before each trial and after each seed's
    epoch, is Ctrl-C from elsewhere: when it says True, the same happens there.
    """
    from optuna.trial import TrialState

    def check_stop() -> None:
        if stop_requested is not None and stop_requested():
            raise KeyboardInterrupt

    base = search_config(plan.base, plan.study_seed)
    while True:
        check_stop()
        with deferred():
            done, running = _counts(study)
        if done + running >= plan.trials:
            if done >= plan.trials or not running:
                return
            time.sleep(POLL_S)
            continue
        with deferred():
            trial, overrides = ask_setting(study, plan, sampler)
            counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            earlier = [t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
            if len(earlier) >= plan.trials:  # another process asked the last one first
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                continue
            trial.set_user_attr("owner", runs.this_process())
            seeds = trial_seeds(plan.study_seed, trial.number, plan.seeds)
            trial.set_user_attr("train_seeds", seeds)
        cfgs = [apply_overrides(base, {**overrides, "train.seed": seed}) for seed in seeds]
        run_dirs = [trial_dir(tune_dir, trial.number) / f"seed{seed}" for seed in plan.seeds]
        for run_dir in run_dirs:
            run_dir.mkdir(parents=True)

        def report(epoch: int, seeds_metrics: list[dict[str, float]], trial=trial) -> bool:
            with deferred():
                trial.report(float(np.mean([m["val_accuracy"] for m in seeds_metrics])), epoch)
                prune = trial.should_prune()
            check_stop()
            return prune

        try:
            metrics, pruned = train_in_step(
                cfgs, run_dirs, dataset, report, tensorboard=plan.tensorboard, safe_point=check_stop
            )
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        accuracies = [m["validation_accuracy"] for m in metrics]
        with deferred():
            trial.set_user_attr("validation_accuracy", accuracies)
            trial.set_user_attr("epochs", max(m["epochs_completed"] for m in metrics))  # a diverged seed stops sooner
            if pruned:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            else:
                frozen = study.tell(trial, float(np.mean(accuracies)))
        if on_trial_done is not None:
            on_trial_done(frozen)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class StudySpec:
    """Where a study lives and how it searches: what a worker process needs to open it (picklable)."""

    url: str
    name: str
    sampler: str
    pruner: str
    startup: int
    warmup: int

    def open(self, plan: TunePlan):
        return open_study(plan, self.url, self.name, self.sampler, self.pruner, self.startup, self.warmup)


def run_workers(
    workers: int, spec: StudySpec, plan: TunePlan, dataset, tune_dir: Path, on_trial_done: TrialDone | None = None
) -> None:
    """`workers` spawned processes run the ask-and-tell loop on one storage; this one reports as trials finish.

    Each worker is pinned to its share of this process's CPUs (XLA sizes its thread pool
    from them), so N workers do not oversubscribe the cores; Optuna's storage hands each
    its own trials. Ctrl-C here stops them all: each fails its trial in flight (asked
    again by the next run), then KeyboardInterrupt is re-raised.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fork of a process that has started JAX may hang
    processes = [
        context.Process(
            target=_worker, args=(cpus, spec, plan, dataset, tune_dir, os.getpid()), name=f"tune-worker-{k}"
        )
        for k, cpus in enumerate(_cpu_shares(workers))
    ]
    for process in processes:
        process.start()
    report_new = _reporter(spec.open(plan), on_trial_done)
    try:
        while any(process.is_alive() for process in processes):
            time.sleep(POLL_S)
            with deferred():
                report_new()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()  # SIGTERM: the worker's run_study fails and marks its trial
        for process in processes:
            process.join()
        raise
    report_new()
    failed = [process for process in processes if process.exitcode != 0]
    if failed:
        raise RuntimeError(f"{failed[0].name} exited with status {failed[0].exitcode}; see its traceback above")


def _reporter(study, on_trial_done: TrialDone | None) -> Callable[[], None]:
    """A function that passes each trial finished since now, once, to `on_trial_done` (the driver's lines)."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    reported = {trial.number for trial in study.get_trials(deepcopy=False, states=finished)}

    def report_new() -> None:
        for trial in study.get_trials(deepcopy=False, states=finished):
            if trial.number not in reported and on_trial_done is not None:
                on_trial_done(trial)
            reported.add(trial.number)

    return report_new


def run_ray_workers(
    workers: int | None,
    spec: StudySpec,
    plan: TunePlan,
    dataset,
    tune_dir: Path,
    address: str | None = None,
    on_trial_done: TrialDone | None = None,
) -> None:
    """`workers` Ray tasks (default: one per GPU, else per CPU, of the cluster) run the ask-and-tell loop.

    The same loop as run_workers' processes, on an embedded local Ray or the cluster at
    `address` (executors.ray_session). A task opens the study at `spec.url` and writes
    its trials' run directories straight into `tune_dir`, so every node must reach both
    at the same path: on this machine they do; on a cluster the tune directory must be on
    a filesystem every node mounts (a task on a node without it fails with one line), and
    the study on it too or in a database (`--storage` an RDB URL). The dataset goes into
    Ray's object store once. A task whose worker dies is retried by Ray and fails the
    dead worker's trial (this machine's) so it is asked again. Ctrl-C here asks the tasks
    to stop through a Ray actor they check after every epoch: each fails its trial in flight
    (asked again by the next run) and returns; one still running STOP_S later is killed
    (its trial is then failed by the next run, as a dead process's is).

    Stopping by asking rather than by `ray.cancel` matters twice over: a cancel raises
    KeyboardInterrupt anywhere in the task, where JAX may swallow it (interrupts.py), and a
    cancel racing the task's own end aborts the driver inside Ray 2.60 (task_manager.cc:
    "Tried to complete task that was not pending", ray-project/ray#54846).
    """
    from mnist_dnn.experiments.executors import ray_session, ray_task

    tune_dir = tune_dir.resolve()  # Ray workers do not share this process's working directory
    if "://" not in spec.url:
        spec = dataclasses.replace(spec, url=str(Path(spec.url).resolve()))
    report_new = _reporter(spec.open(plan), on_trial_done)
    with ray_session(address) as ray:
        task, slots = ray_task(ray, _ray_worker)
        stop = ray.remote(num_cpus=0)(StopFlag).remote()
        data = ray.put(dataset)
        pending = [task.remote(spec, plan, data, tune_dir, stop) for _ in range(workers or slots)]
        log.info("%d Ray task(s) asking trials", len(pending))
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
                try:
                    ray.get(done)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, UserInputError):
                        raise UserInputError(str(exc.cause)) from None
                    raise
                with deferred():
                    report_new()
        except BaseException:
            if pending:
                log.info(
                    "Stopping %d Ray task(s): each fails its trial in flight (Ctrl-C again quits at once)", len(pending)
                )
                try:
                    ray.get(stop.set.remote(), timeout=STOP_S)
                    _, pending = ray.wait(pending, num_returns=len(pending), timeout=STOP_S)
                except Exception as exc:  # the flag's actor is lost: kill the tasks, and keep the first error
                    log.warning("Could not ask the Ray tasks to stop (%s); killing them", exc)
                for ref in pending:
                    ray.cancel(ref, force=True)
            raise
    report_new()


class StopFlag:
    """A Ray actor the driver sets on Ctrl-C and every task of the study asks after each seed's epoch."""

    def __init__(self):
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


def _ray_worker(spec: StudySpec, plan: TunePlan, dataset, tune_dir: Path, stop) -> None:
    """One Ray task: the ask-and-tell loop to the end of the study or until `stop` (a StopFlag actor) is set."""
    import ray

    from mnist_dnn.core.backend import activate_backend

    if not tune_dir.is_dir():
        raise UserInputError(
            f"{tune_dir}: not found on Ray node {socket.gethostname()}; with a cluster the tune directory "
            "must be on a filesystem every node mounts at that path"
        )
    cores = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    activate_backend(plan.base.train.backend, cpu_devices=cores)  # a trial's seeds side by side on its cores
    require_optuna()  # and its INFO lines off, as in the driver
    study = spec.open(plan)
    with deferred():
        recover(study)  # a retried task: the trial its dead worker was running is asked again

    def stop_requested() -> bool:
        return ray.get(stop.is_set.remote())

    try:
        run_study(study, plan, dataset, tune_dir, sampler=spec.sampler, stop_requested=stop_requested)
    except KeyboardInterrupt:  # asked to stop: the trial in flight was failed and marked interrupted
        if not stop_requested():  # any other interrupt is the task's failure, not a finished study
            raise


def _cpu_shares(workers: int) -> list[list[int]]:
    """An even split of this process's CPUs, one each (shared round-robin) when workers outnumber them."""
    cpus = sorted(os.sched_getaffinity(0))
    if workers >= len(cpus):
        return [[cpus[k % len(cpus)]] for k in range(workers)]
    cuts = [len(cpus) * k // workers for k in range(workers + 1)]
    return [cpus[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]


def _worker(cpus: list[int], spec: StudySpec, plan: TunePlan, dataset, tune_dir: Path, driver: int) -> None:
    """One worker process: pinned, Ctrl-C left to the parent, SIGTERM = interrupt; runs the loop to the end.

    The driver's death (kill -9 included) sends it SIGTERM (lifeline.py): it fails its trial and ends.
    """
    import signal

    from mnist_dnn.core.backend import activate_backend
    from mnist_dnn.core.interrupts import graceful_interrupts
    from mnist_dnn.core.lifeline import die_with_parent

    die_with_parent(driver, signal.SIGTERM)
    os.sched_setaffinity(0, cpus)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(len(cpus))
    activate_backend(plan.base.train.backend, cpu_devices=len(cpus))  # a trial's seeds side by side on its cores
    with graceful_interrupts():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C reaches every worker: the parent decides
        with contextlib.suppress(KeyboardInterrupt):
            run_study(spec.open(plan), plan, dataset, tune_dir, sampler=spec.sampler)


def trial_dir(tune_dir: Path, number: int) -> Path:
    return tune_dir / TRIALS_DIR / f"trial-{number:04d}"


def stray_trial_dirs(tune_dir: Path) -> list[tuple[int, str]]:
    """(number, folder name) of every trial folder in the tune directory, to be matched against the study."""
    found = []
    for path in sorted((tune_dir / TRIALS_DIR).glob("trial-*")):
        number = path.name.removeprefix("trial-")
        if number.isdigit():
            found.append((int(number), path.name))
    return found


# --- the results: ranked table, best config, final retrain, figures ---------------------------------------------------


def trials_table(study, space: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Finished trials (complete, then pruned), best mean validation accuracy first, with mean ± std over seeds."""
    from optuna.trial import TrialState

    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        scores = trial.user_attrs.get("validation_accuracy", [])
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "epochs": trial.user_attrs.get("epochs"),
                "val_accuracy_mean": float(np.mean(scores)),
                "val_accuracy_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                **{key: _show(value) for key, value in setting_of(space, trial.params).items()},
            }
        )
    rows.sort(key=lambda row: (row["state"] != "complete", -row["val_accuracy_mean"], row["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def show_setting(space: Sequence[Dimension], params: dict[str, Any]) -> str:
    """'optimizer.learning_rate=0.00443, model.hidden_units=[400,100]': a trial's setting, short."""
    return ", ".join(f"{key}={_show(value)}" for key, value in setting_of(space, params).items())


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = ["rank", *[key for key in rows[0] if key != "rank"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "val_accuracy_mean": f"{row['val_accuracy_mean']:.6f}",
                "val_accuracy_std": f"{row['val_accuracy_std']:.6f}",
            }
        )
    return buffer.getvalue()


def table_markdown(rows: Sequence[dict[str, Any]], space: Sequence[Dimension]) -> str:
    head = ["rank", "trial", "state", "epochs", "val accuracy (mean ± std)", *[dim.key for dim in space]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row["rank"],
            row["trial"],
            row["state"],
            row["epochs"],
            f"{row['val_accuracy_mean']:.4f} ± {row['val_accuracy_std']:.4f}",
            *[row[dim.key] for dim in space],
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def best_setting(study, plan: TunePlan) -> tuple[Any, Config]:
    """The best complete trial and its setting as a full-training-set config (train.seed: its first seed)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserInputError("tune: no trial completed (all pruned or failed); widen --space or use --pruner none")
    best = study.best_trial
    cfg = apply_overrides(
        plan.base, {**setting_of(plan.space, best.params), "train.seed": best.user_attrs["train_seeds"][0]}
    )
    return best, full_training_config(cfg)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (created): processes sharing a tune directory retrain the best setting once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retrain_best(study, plan: TunePlan, dataset, tune_dir: Path, train_run) -> dict[str, Any]:
    """Retrain the best setting on the full training set with its trial's seeds; score the test set once.

    `train_run(cfg, run_dir, resume) -> metrics` trains one ordinary run (experiment's
    train_and_evaluate). Runs already complete in best/ are read, not trained again; an
    interrupted one is resumed. Writes best.toml and best.json; returns best.json's content.
    """
    from mnist_dnn.experiments.bundles import member_state

    best, cfg = best_setting(study, plan)
    runs.atomic_write_text(tune_dir / BEST_CONFIG_FILE, config_to_toml(cfg))
    results = []
    with _locked(tune_dir / ".best.lock"):
        for k, seed in zip(plan.seeds, best.user_attrs["train_seeds"], strict=True):
            run_dir = tune_dir / BEST_DIR / f"seed{k}"
            state = member_state(run_dir)
            if state == "complete":
                results.append(runs.read_metrics(run_dir))
            else:
                seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
                results.append(train_run(seeded, run_dir, state == "resumable"))
    test = [m["test_accuracy"] for m in results]
    summary = {
        "trial": best.number,
        "params": best.params,  # as Optuna stores them (a choice by its TOML text)
        "setting": setting_of(plan.space, best.params),
        "search_val_accuracy_mean": best.value,
        "train_seeds": best.user_attrs["train_seeds"],
        "test_accuracy": test,
        "test_accuracy_mean": float(np.mean(test)),
        "test_accuracy_std": statistics.stdev(test) if len(test) > 1 else 0.0,
    }
    runs.write_json(tune_dir / RESULT_FILE, summary)
    return summary


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA over complete trials); empty while too few trials completed.

    With too few, Optuna warns and calls every parameter equally important: no figure beats a misleading one.
    """
    import warnings

    import optuna

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shares = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):
            return {}
    return {} if any("too small" in str(w.message) for w in caught) else shares


def write_results(study, plan: TunePlan, tune_dir: Path, plots: bool = True) -> list[dict[str, Any]]:
    """trials.csv (the ranked table) and, with `plots`, the optimisation history and importances; -> the rows."""
    rows = trials_table(study, plan.space)
    runs.atomic_write_text(tune_dir / TABLE_FILE, table_csv(rows))
    if plots:
        from mnist_dnn.figures.plots import plot_optimization_history, plot_param_importances, save_figure

        save_figure(plot_optimization_history(rows), tune_dir / f"{HISTORY_FIGURE}.png")
        shares = importances(study)
        if shares:
            save_figure(plot_param_importances(shares), tune_dir / f"{IMPORTANCE_FIGURE}.png")
    return rows


def require_optuna() -> None:
    """Optuna is an optional extra: without it, one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise UserInputError("tune needs Optuna: pip install 'mnist-dnn[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines say what its INFO lines would


def log_trial(space: Sequence[Dimension]) -> TrialDone:
    """A progress line per finished trial, through logging (the CLI shows it unless --quiet)."""

    def report(trial) -> None:
        scores, epochs_run = trial.user_attrs["validation_accuracy"], trial.user_attrs["epochs"]
        state = f"pruned after epoch {epochs_run}" if trial.state.name == "PRUNED" else "complete"
        log.info(
            "[trial %d] %s: val accuracy %.4f (%s)",
            trial.number,
            state,
            np.mean(scores),
            show_setting(space, trial.params),
        )

    return report


def tune(
    plan: TunePlan,
    spec: StudySpec,
    dataset,
    tune_dir: Path,
    train_run,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    plots: bool = True,
):
    """The whole command: open or continue the study, run it to `plan.trials`, retrain the best, write the results.

    `executor` 'local' runs trials here; 'processes' in `workers` worker processes
    (run_workers; default one per CPU); 'ray' in `workers` Ray tasks (run_ray_workers).
    `train_run(cfg, run_dir, resume) -> metrics` trains the final ordinary runs. Returns
    (the ranked rows, best.json's content).
    """
    strays = stray_trial_dirs(tune_dir)  # listed before the study is read: a folder is made after its trial
    study = spec.open(plan)
    tune_dir.mkdir(parents=True, exist_ok=True)
    known = {trial.number for trial in study.get_trials(deepcopy=False)}
    unknown = [name for number, name in strays if number not in known]
    if unknown:
        raise UserInputError(
            f"{tune_dir / TRIALS_DIR}: holds {unknown[0]}, a trial study {spec.name!r} in {shown_url(spec.url)} "
            "does not have (was the journal emptied or replaced?); use another --out, or move {TRIALS_DIR}/ aside"
        )
    pruning = "no pruning" if spec.pruner == "none" else f"{spec.pruner} pruner from epoch {spec.warmup}"
    if spec.pruner == "median":
        pruning += f" after {spec.startup} trials"
    log.info(
        "Study %r in %s: %d trials x %d seeds, %s, %s",
        spec.name,
        shown_url(spec.url),
        plan.trials,
        len(plan.seeds),
        spec.sampler,
        pruning,
    )
    with deferred():
        again = recover(study)
    if again:
        log.info("Asking again the setting(s) of interrupted trial(s) %s", ", ".join(map(str, again)))
    if executor == "processes":
        from mnist_dnn.experiments.executors import worker_count

        count = worker_count(workers or len(os.sched_getaffinity(0)), plan.trials, "trials")
        run_workers(count, spec, plan, dataset, tune_dir, log_trial(plan.space))
    elif executor == "ray":
        run_ray_workers(workers, spec, plan, dataset, tune_dir, ray_address, log_trial(plan.space))
    else:
        run_study(study, plan, dataset, tune_dir, log_trial(plan.space), spec.sampler)
    log.info("Retraining the best setting on the full training set")
    best = retrain_best(study, plan, dataset, tune_dir, train_run)
    return write_results(study, plan, tune_dir, plots), best


def run_tune(
    plan: TunePlan,
    out: Path | None,
    runs_root: Path,
    storage: str | None,
    study: dict[str, Any],
    executor: str,
    workers: int | None,
    ray_address: str | None,
    plots: bool,
    cores: int | None = None,
) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """The `tune` command's work: (tune directory, ranked rows, best.json's content).

    Optuna, Ray (with --executor ray) and `out` are checked before the backend and MNIST
    load; the study lives in `storage` or <tune dir>/study.journal, and `study` holds the
    rest of its StudySpec. Ctrl-C becomes Interrupted naming the command that continues it.
    `cores`: CPU cores (JAX CPU devices) a local trial's seeds train on side by side.
    """
    require_optuna()
    if executor == "ray":
        from mnist_dnn.experiments.executors import check_ray

        check_ray(ray_address)
    if out is not None:
        check_tune_dir(out)
        check_trials(out)
    if storage is not None and "://" in storage:
        _storage(storage)  # a server down, a wrong password, no such database: one line before anything is written
    from mnist_dnn.core.backend import activate_backend, describe_devices, usable_cores

    activate_backend(plan.base.train.backend, cpu_devices=usable_cores(cores) if executor == "local" else 1)
    if executor == "local":
        at_once = side_by_side(len(plan.seeds)) if can_share(plan.base) else 1
        log.info("A trial's %d seeds: %d at a time on %s", len(plan.seeds), at_once, describe_devices())
        config = plan.base
        check_training_memory(config.model, config.optimizer, INPUT_SIZE, NUM_CLASSES, at_once)
    from mnist_dnn.data.mnist import load_configured
    from mnist_dnn.experiments.experiment import train_and_evaluate

    dataset = load_configured(plan.base.data)
    tune_dir = out or runs.create_run_dir(runs_root, "tune")
    spec = StudySpec(storage or str(tune_dir / STUDY_FILE), **study)

    def train_run(cfg, run_dir, resume):
        return train_and_evaluate(cfg, dataset, run_dir, 0, resume=resume, tensorboard=plan.tensorboard)

    try:
        rows, best = tune(plan, spec, dataset, tune_dir, train_run, executor, workers, ray_address, plots=plots)
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted; finished trials are kept. Continue: the same command with --out {tune_dir}"
        ) from None
    return tune_dir, rows, best


def best_summary(plan: TunePlan, best: dict[str, Any]) -> str:
    """The line saying which trial won and what its retrained runs scored on the test set."""
    return (
        f"Best: trial {best['trial']} ({show_setting(plan.space, best['params'])}), "
        f"validation {best['search_val_accuracy_mean']:.4f}; "
        f"retrained on the full training set: test accuracy {best['test_accuracy_mean']:.4f} "
        f"± {best['test_accuracy_std']:.4f} over {len(plan.seeds)} seeds"
    )

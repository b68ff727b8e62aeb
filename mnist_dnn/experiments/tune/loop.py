"""The ask-and-tell loop: ask a setting, train its seeds in step into trials/trial-NNNN/, report each epoch's
mean validation accuracy to the pruner, tell the result; until the study holds its trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import apply_overrides
from mnist_dnn.core.interrupts import deferred
from mnist_dnn.experiments.bundles import TrialPrograms, execution_mode, mode_devices, train_in_step
from mnist_dnn.experiments.sharing import one_program
from mnist_dnn.experiments.tune.space import TunePlan, sampler_seed, search_config, suggest, trial_seeds
from mnist_dnn.experiments.tune.study import make_sampler, trial_dir
from mnist_dnn.runs import lifecycle

POLL_S = 2.0  # how often a process that ran out of trials checks on the ones others are still running


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


def trials_at_once(plan: TunePlan, sampler: str, prunes: bool, cores: int | None = None) -> int:
    """How many trials train side by side in one process, on `cores` CPU devices that a trial's seeds leave idle
    (default: this process's, none on an accelerator, where a trial's seeds are vmapped).

    Only where the study comes out as asked trial by trial: a random sampler draws each
    setting from the trial's number alone (ask_setting), no pruner compares a trial with
    those beside it, and every setting the space can draw shares one program with the
    others (sharing.one_program: the space's extremes are probed). Else 1.
    """
    if cores is None:
        cores = len(mode_devices("devices")) if execution_mode() == "devices" else 1
    if sampler != "random" or prunes or cores <= len(plan.seeds):
        return 1
    base = search_config(plan.base, plan.study_seed)
    probes = [apply_overrides(base, {dim.key: value}) for dim in plan.space for value in dim.extremes]
    return -(-cores // len(plan.seeds)) if one_program([base, *probes]) else 1


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
    those to finish. On CPU devices the seeds of one trial leave idle, several trials are
    asked and trained side by side where that changes nothing (trials_at_once). Ctrl-C
    fails the trials in flight (marked `interrupted`, asked again by the next run) and is
    re-raised. Storage writes are never cut in half by Ctrl-C (interrupts.deferred).
    `stop_requested`, asked before each trial and after each seed's epoch, is Ctrl-C from
    elsewhere: when it says True, the same happens there.
    """
    from optuna.pruners import NopPruner
    from optuna.trial import TrialState

    def check_stop() -> None:
        if stop_requested is not None and stop_requested():
            raise KeyboardInterrupt

    base = search_config(plan.base, plan.study_seed)
    programs = TrialPrograms()  # trials over a constant learning rate or initial weights compile once
    at_once = trials_at_once(plan, sampler, not isinstance(study.pruner, NopPruner))
    while True:
        check_stop()
        with deferred():
            done, running = _counts(study)
        if done + running >= plan.trials:
            if done >= plan.trials or not running:
                return
            time.sleep(POLL_S)
            continue
        asked: list[_Asked] = []
        try:
            while len(asked) < min(at_once, plan.trials - done - running):
                with deferred():
                    trial, overrides = ask_setting(study, plan, sampler)
                    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
                    earlier = [t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
                    if len(earlier) >= plan.trials:  # another process asked the last one first
                        trial.set_user_attr("surplus", True)
                        study.tell(trial, state=TrialState.FAIL)
                        break
                    trial.set_user_attr("owner", lifecycle.this_process())
                    seeds = trial_seeds(plan.study_seed, trial.number, plan.seeds)
                    trial.set_user_attr("train_seeds", seeds)
                    cfgs = [apply_overrides(base, {**overrides, "train.seed": seed}) for seed in seeds]
                    run_dirs = [trial_dir(tune_dir, trial.number) / f"seed{seed}" for seed in plan.seeds]
                    asked.append(_Asked(trial, cfgs, run_dirs))  # a Ctrl-C from here on fails it
                for run_dir in run_dirs:
                    run_dir.mkdir(parents=True)
            if not asked:  # another process asked the last trial: wait for it above
                continue
            finished = _train_trials(asked, dataset, plan, programs, check_stop)
        except KeyboardInterrupt:
            with deferred():
                for one in asked:
                    one.trial.set_user_attr("interrupted", True)
                    study.tell(one.trial, state=TrialState.FAIL)
            raise
        except BaseException:
            with deferred():
                for one in asked:
                    study.tell(one.trial, state=TrialState.FAIL)
            raise
        told = []
        with deferred():  # all or none: a Ctrl-C between two tells left the second RUNNING, trained again later
            for one, (metrics, pruned) in zip(asked, finished, strict=True):
                accuracies = [m["validation_accuracy"] for m in metrics]
                one.trial.set_user_attr("validation_accuracy", accuracies)
                # a diverged seed stops sooner
                one.trial.set_user_attr("epochs", max(m["epochs_completed"] for m in metrics))
                if pruned:
                    told.append(study.tell(one.trial, state=TrialState.PRUNED))
                else:
                    told.append(study.tell(one.trial, float(np.mean(accuracies))))
        for frozen in told:
            if on_trial_done is not None:
                on_trial_done(frozen)


@dataclass(frozen=True)
class _Asked:
    """A trial asked of the study and what it trains: its seeds' configs and run directories."""

    trial: Any
    cfgs: list
    run_dirs: list[Path]


def _train_trials(asked: list[_Asked], dataset, plan: TunePlan, programs, check_stop) -> list[tuple[list, bool]]:
    """Train the asked trials' seeds in step, all side by side, or one trial's alone; -> (metrics, pruned) of each.

    After each epoch every trial reports its seeds' mean validation accuracy; a lone trial
    asks its pruner whether to stop there, trials side by side have none (trials_at_once).
    """
    bounds = np.cumsum([0] + [len(one.cfgs) for one in asked])

    def report(epoch: int, seeds_metrics: list[dict[str, float]]) -> bool:
        with deferred():
            for one, start, end in zip(asked, bounds, bounds[1:], strict=False):
                rows = seeds_metrics[start:end]
                if any(int(row["epoch"]) == epoch for row in rows):  # not a trial whose seeds all stopped before
                    one.trial.report(float(np.mean([row["val_accuracy"] for row in rows])), epoch)
            prune = len(asked) == 1 and asked[0].trial.should_prune()
        check_stop()
        return prune

    cfgs = [cfg for one in asked for cfg in one.cfgs]
    run_dirs = [run_dir for one in asked for run_dir in one.run_dirs]
    metrics, pruned = train_in_step(
        cfgs, run_dirs, dataset, report, tensorboard=plan.tensorboard, safe_point=check_stop, programs=programs
    )
    return [(metrics[start:end], pruned) for start, end in zip(bounds, bounds[1:], strict=False)]

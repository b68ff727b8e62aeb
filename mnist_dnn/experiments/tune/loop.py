"""The ask-and-tell loop: ask a setting, train its seeds in step into trials/trial-NNNN/, report each epoch's
mean validation accuracy to the pruner, tell the result; until the study holds its trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import apply_overrides
from mnist_dnn.core.interrupts import deferred
from mnist_dnn.experiments.bundles import TrialPrograms, train_in_step
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
    programs = TrialPrograms()  # trials over a constant learning rate or initial weights compile once
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
            trial.set_user_attr("owner", lifecycle.this_process())
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
                cfgs, run_dirs, dataset, report, tensorboard=plan.tensorboard, safe_point=check_stop, programs=programs
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

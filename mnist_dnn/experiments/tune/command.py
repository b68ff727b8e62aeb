"""`mnist-dnn tune`'s run: the tune directory, the study opened and recovered, its trials run here, in
worker processes or on Ray, then the best setting retrained and the results written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted, deferred
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.experiments.bundles import side_by_side
from mnist_dnn.experiments.sharing import can_share
from mnist_dnn.experiments.tune.loop import run_study, trials_at_once
from mnist_dnn.experiments.tune.results import log_trial, retrain_best, write_results
from mnist_dnn.experiments.tune.space import TunePlan
from mnist_dnn.experiments.tune.study import (
    STUDY_FILE,
    TRIALS_DIR,
    StudySpec,
    check_trials,
    check_tune_dir,
    holds_study,
    open_storage,
    recover,
    require_optuna,
    shown_url,
    stray_trial_dirs,
)
from mnist_dnn.experiments.tune.workers import run_ray_workers, run_workers
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.model import INPUT_SIZE

log = logging.getLogger(__name__)


def tune(
    plan: TunePlan,
    spec: StudySpec,
    dataset,
    tune_dir: Path,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    plots: bool = True,
    cores: int | None = None,
):
    """The whole command: open or continue the study, run it to `plan.trials`, retrain the best, write the results.

    `executor` 'local' runs trials here; 'processes' in `workers` worker processes
    (run_workers; default one per CPU); 'ray' in `workers` Ray tasks (run_ray_workers).
    Returns (the ranked rows, best.json's content).
    """
    strays = stray_trial_dirs(tune_dir)  # listed before the study is read: a folder is made after its trial
    if strays and not holds_study(spec.url, spec.name):  # refused before open_study writes the study's record
        _refuse_unknown_trial(tune_dir, strays[0][1], spec)
    study = spec.open(plan)
    tune_dir.mkdir(parents=True, exist_ok=True)
    known = {trial.number for trial in study.get_trials(deepcopy=False)}
    unknown = [name for number, name in strays if number not in known]
    if unknown:
        _refuse_unknown_trial(tune_dir, unknown[0], spec)
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
        run_ray_workers(workers, spec, plan, dataset, tune_dir, ray_address, log_trial(plan.space), cores)
    else:
        run_study(study, plan, dataset, tune_dir, log_trial(plan.space), spec.sampler)
    log.info("Retraining the best setting on the full training set")
    best = retrain_best(study, plan, dataset, tune_dir)
    return write_results(study, plan, tune_dir, plots), best


def _refuse_unknown_trial(tune_dir: Path, trial_name: str, spec: StudySpec):
    raise UserInputError(
        f"{tune_dir / TRIALS_DIR}: holds {trial_name}, a trial study {spec.name!r} in {shown_url(spec.url)} "
        f"does not have (was the journal emptied or replaced?); use another --out, or move {TRIALS_DIR}/ aside"
    )


def run_tune(
    plan: TunePlan,
    *,
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
        from mnist_dnn.experiments.ray_cluster import check_ray

        check_ray(ray_address)
    if out is not None:
        check_tune_dir(out)
        check_trials(out)
    if storage is not None and "://" in storage:
        open_storage(storage)  # a server down, a wrong password, no such database: one line before anything is written
    from mnist_dnn.core.backend import activate_backend, describe_devices, usable_cores

    activate_backend(plan.base.train.backend, cpu_devices=usable_cores(cores) if executor == "local" else 1)
    if executor == "local":
        at_once = side_by_side(len(plan.seeds)) if can_share(plan.base) else 1
        trials = trials_at_once(plan, study["sampler"], study["pruner"] != "none")
        side = f"; {trials} trials side by side" if trials > 1 else ""
        log.info("A trial's %d seeds: %d at a time on %s%s", len(plan.seeds), at_once, describe_devices(), side)
        config = plan.base
        # a trial's seeds (all trials' side by side) are set up before its first epoch
        held = trials * len(plan.seeds) if can_share(plan.base) else 1
        check_training_memory(config.model, config.optimizer, INPUT_SIZE, NUM_CLASSES, held)
    from mnist_dnn.data.mnist import load_configured

    dataset = load_configured(plan.base.data)
    tune_dir = out or runs.create_run_dir(runs_root, "tune")
    spec = StudySpec(storage or str(tune_dir / STUDY_FILE), **study)

    try:
        rows, best = tune(plan, spec, dataset, tune_dir, executor, workers, ray_address, plots=plots, cores=cores)
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted; finished trials are kept. Continue: the same command with --out {tune_dir}"
        ) from None
    return tune_dir, rows, best

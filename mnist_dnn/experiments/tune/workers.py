"""Where a study's trials run besides this process: spawned worker processes pinned to their CPUs, or Ray
tasks; each runs the same ask-and-tell loop on the shared storage while this process reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import deferred
from mnist_dnn.experiments.tune.loop import POLL_S, TrialDone, run_study
from mnist_dnn.experiments.tune.space import TunePlan
from mnist_dnn.experiments.tune.study import StudySpec, recover, require_optuna

log = logging.getLogger(__name__)


STOP_S = 60.0  # how long Ray tasks asked to stop get to fail their trials (one seed's epoch) before being killed


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

    from mnist_dnn.experiments.executors import cpu_shares

    context = multiprocessing.get_context("spawn")  # a fork of a process that has started JAX may hang
    processes = [
        context.Process(
            target=_worker, args=(cpus, spec, plan, dataset, tune_dir, os.getpid()), name=f"tune-worker-{k}"
        )
        for k, cpus in enumerate(cpu_shares(workers))
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
    cores: int | None = None,
) -> None:
    """`workers` Ray tasks (default: one per GPU, else per CPU, of the cluster) run the ask-and-tell loop.

    On a CPU cluster the tasks share `cores` CPUs (default: the cluster's), each asking as many
    as a trial's seeds can use side by side (ray_cluster.task_cores, on_cores).

    The same loop as run_workers' processes, on an embedded local Ray or the cluster at
    `address` (ray_cluster.ray_session). A task opens the study at `spec.url` and writes
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
    from mnist_dnn.experiments.ray_cluster import on_cores, ray_session, ray_task, task_cores

    tune_dir = tune_dir.resolve()  # Ray workers do not share this process's working directory
    if "://" not in spec.url:
        spec = dataclasses.replace(spec, url=str(Path(spec.url).resolve()))
    report_new = _reporter(spec.open(plan), on_trial_done)
    with ray_session(address) as ray:
        task, slots, on_gpus = ray_task(ray, _ray_worker)
        where = "1 GPU"
        if not on_gpus:
            per_task, slots = task_cores(ray, cores, len(plan.seeds), slots, workers)
            task, where = on_cores(task, per_task), f"{per_task} CPU core(s), a trial's seeds side by side"
        stop = ray.remote(num_cpus=0)(StopFlag).remote()
        data = ray.put(dataset)
        pending = [task.remote(spec, plan, data, tune_dir, stop) for _ in range(workers or slots)]
        log.info("%d Ray task(s) asking trials, each on %s", len(pending), where)
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


def _worker(cpus: list[int], spec: StudySpec, plan: TunePlan, dataset, tune_dir: Path, driver: int) -> None:
    """One worker process: pinned, Ctrl-C left to the parent, SIGTERM = interrupt; runs the loop to the end.

    The driver's death (kill -9 included) sends it SIGTERM (lifeline.py): it fails its trial and ends.
    """
    import signal

    from mnist_dnn.core.backend import activate_backend
    from mnist_dnn.core.interrupts import graceful_interrupts
    from mnist_dnn.core.lifeline import die_with_parent
    from mnist_dnn.experiments.executors import pin_to_cpus

    die_with_parent(driver, signal.SIGTERM)
    pin_to_cpus(cpus)
    activate_backend(plan.base.train.backend, cpu_devices=len(cpus))  # a trial's seeds side by side on its cores
    with graceful_interrupts():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C reaches every worker: the parent decides
        with contextlib.suppress(KeyboardInterrupt):
            run_study(spec.open(plan), plan, dataset, tune_dir, sampler=spec.sampler)

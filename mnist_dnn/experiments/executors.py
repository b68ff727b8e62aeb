"""Where a sweep's bundles train: in this process, in worker processes on this machine, or as Ray tasks.

    executor = make_executor("processes", workers=2)          # or "local", or "ray" (ray_address=...)
    metrics = execute_sweep(plan, sweep_dir, datasets, executor, on_progress=print)

`execute_sweep` holds an exclusive lock on the sweep directory for the whole sweep (a
second copy of the same sweep is refused), records the sweep's state in
sweep_status.json (running, then complete, interrupted or failed), skips the runs that
finished before, and hands the rest to the executor, which groups them into bundles
(bundles.py). Every run that finishes is logged as one line with the count done and an
ETA, and passed to `on_progress`, whatever the executor.

- `local`: bundles one after another in this process, straight into the run directories;
  a run interrupted by Ctrl-C continues from its checkpoint next time.
- `processes`: N spawned worker processes on this machine, each pinned to its share of
  the CPUs (affinity, which sizes XLA's thread pool, and the OpenMP/BLAS/TensorFlow
  thread variables), so N workers do not oversubscribe the cores.
- `ray`: each bundle one Ray task (`num_gpus=1` when the cluster has GPUs, else
  `num_cpus=1`); without an address an embedded local Ray, with one an existing cluster.
  The driver puts each dataset into Ray's object store once; a task trains in a scratch
  directory on its node and returns its runs' files - workers need no shared filesystem.
  A task whose worker dies is retried by Ray (`max_retries`).

Worker processes (processes and ray) return files the same way and the driver writes
them, atomically, run by run. A run they had not finished when the sweep was stopped
starts over next time (from its checkpoint, if an earlier local sweep left one).
"""

from __future__ import annotations

import fcntl
import functools
import itertools
import logging
import math
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.atomic import atomic_write_bytes, atomic_write_text
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted, deferred, poll
from mnist_dnn.core.lifeline import die_with_parent
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.experiments.bundles import (
    Bundle,
    execution_mode,
    held_at_once,
    member_state,
    plan_bundles,
    side_by_side,
    train_bundle,
)
from mnist_dnn.experiments.ray_cluster import RAY_MAX_RETRIES, check_ray, on_cores, ray_session, ray_task, task_cores
from mnist_dnn.experiments.sweep import (
    SUMMARY_FILE,
    PlannedRun,
    load_datasets,
    open_sweep_dir,
    summarize,
    summary_csv,
    sweep_backend,
)
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from mnist_dnn.training.model import INPUT_SIZE

log = logging.getLogger(__name__)

SWEEP_STATUS_FILE = "sweep_status.json"  # not status.json: a sweep directory is not a run `train --resume` takes
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
WORKER_RETRIES = 2  # a bundle whose pool lost a worker trains again, up to this many times
WAIT_S = 1.0  # how often a waiting driver returns to Python, so Ctrl-C is handled within a second

Datasets = Mapping[Any, Any]
"""config.data.data_dir -> the data.Dataset loaded from it."""
RunFiles = dict[str, bytes]
"""A run directory's files, name -> content."""
OnRuns = Callable[[Sequence[tuple[PlannedRun, dict[str, Any]]]], None]
"""[(run, metrics), ...]: called by an executor, in the driver, once those runs' files are in the sweep directory."""


@dataclass(frozen=True)
class Progress:
    """One finished run, as a progress line tells it."""

    done: int  # runs finished so far, this one included (those finished before count too)
    total: int
    run: PlannedRun
    metrics: dict[str, Any]
    how: str  # 'trained', 'resumed' or 'finished before'
    eta_s: float | None  # seconds until the sweep should be done, from this session's pace; None: no pace yet, or done


def make_executor(
    name: str,
    workers: int | None = None,
    ray_address: str | None = None,
    tensorboard: bool = True,
    cores: int | None = None,
):
    """The executor `--executor name` asks for; Ray's absence is the user's one line, before anything trains.

    `tensorboard` gives every run its event files (off: `--no-tensorboard`). For ray, `workers`
    tasks at once share `cores` CPUs (default: the cluster's), RayExecutor.
    """
    if name == "local":
        return LocalExecutor(functools.partial(train_bundle, tensorboard=tensorboard))
    if name == "processes":
        return ProcessesExecutor(workers or len(os.sched_getaffinity(0)), tensorboard)
    if name == "ray":
        check_ray(ray_address)
        return RayExecutor(ray_address, tensorboard=tensorboard, workers=workers, cores=cores)
    raise ValueError(f"unknown executor {name!r}")


def run_sweep(
    plan: Sequence[PlannedRun],
    configs: Mapping[str, Any],
    *,
    out: Path | None,
    runs_root: Path,
    name: str,
    executor: str,
    workers: int | None,
    ray_address: str | None,
    tensorboard: bool,
    cores: int | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """The `sweep` command's work: train `plan` on the named executor into `out` (or a new directory under
    `runs_root`); (sweep directory, summary rows).

    The executor is checked before the backend loads, the data before the directory is
    made. Ctrl-C becomes Interrupted naming the command that continues the sweep. `cores`:
    CPU cores (JAX CPU devices) the local executor trains a bundle's members on side by side.
    """
    from mnist_dnn.core.backend import activate_backend, usable_cores

    chosen = make_executor(executor, workers, ray_address, tensorboard=tensorboard, cores=cores)
    activate_backend(sweep_backend(configs), cpu_devices=usable_cores(cores) if executor == "local" else 1)
    from mnist_dnn.runs.tensorboard import write_sweep_hparams

    held, where = chosen.at_once(plan)
    bundles = len(plan_bundles(plan))
    log.info("%d runs: %d bundle%s, %s", len(plan), bundles, "s"[: bundles != 1], where)
    for run in plan:  # members side by side (and each lane's next) hold their weights, gradients and optimizer state
        check_training_memory(run.config.model, run.config.optimizer, INPUT_SIZE, NUM_CLASSES, held)

    datasets = load_datasets(plan)
    sweep_dir = out or runs.create_run_dir(runs_root, name)
    open_sweep_dir(sweep_dir, plan)
    try:
        results = execute_sweep(plan, sweep_dir, datasets, chosen)
    except KeyboardInterrupt:
        if tensorboard:
            write_sweep_hparams(sweep_dir)
        raise Interrupted(
            f"Interrupted; finished runs are kept. Continue: the same command with --out {sweep_dir}"
        ) from None
    if tensorboard:
        write_sweep_hparams(sweep_dir)
    return sweep_dir, summarize(plan, results)


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep directory itself, so two copies of a sweep never train the same runs.

    The lock is on the directory's own file descriptor (flock), released when this
    process ends however it ends; nothing is left behind to clean up.
    """
    fd = os.open(sweep_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(
                f"{sweep_dir}: another mnist-dnn sweep is running in this directory; wait for it or stop it"
            ) from None
        yield
    finally:
        os.close(fd)


def execute_sweep(
    plan: Sequence[PlannedRun],
    sweep_dir: Path,
    datasets: Datasets,
    executor,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every planned run not finished yet with `executor`; return every run's metrics in plan order.

    summary.csv is rewritten after each run (over the runs finished so far).
    """
    with sweep_lock(sweep_dir):
        states = {run.directory: member_state(sweep_dir / run.directory) for run in plan}
        finished: dict[str, dict[str, Any]] = {}
        trained_here = 0

        def record(batch: Sequence[tuple[PlannedRun, dict[str, Any]]], before: bool = False) -> None:
            """Runs finished together (a pooled bundle's runs arrive at once): they share one ETA."""
            nonlocal trained_here
            for run, metrics in batch:
                finished[run.directory] = metrics
            done_runs = [r for r in plan if r.directory in finished]
            atomic_write_text(
                sweep_dir / SUMMARY_FILE, summary_csv(summarize(done_runs, [finished[r.directory] for r in done_runs]))
            )
            eta = None
            if not before:
                trained_here += len(batch)
                left = len(plan) - len(finished)
                eta = (time.perf_counter() - started) / trained_here * left if left else None
            for done, (run, metrics) in enumerate(batch, start=len(finished) - len(batch) + 1):
                how = "finished before" if before else "resumed" if states[run.directory] == "resumable" else "trained"
                log.info(
                    "[%d/%d] %s: test accuracy %.4f, loss %.4f (%s%s)",
                    *(done, len(plan), run.directory, metrics["test_accuracy"], metrics["test_loss"], how),
                    f", ETA {duration(eta)}" if eta is not None else "",
                )
                if on_progress is not None:
                    on_progress(Progress(done, len(plan), run, metrics, how, eta))

        for run in plan:
            if states[run.directory] == "complete":
                record([(run, records.read_metrics(sweep_dir / run.directory))], before=True)
        todo = [run for run in plan if run.directory not in finished]
        _write_sweep_status(sweep_dir, "running", executor, len(plan), len(finished), **lifecycle.this_process())
        started = time.perf_counter()
        try:
            if todo:
                executor.run(todo, sweep_dir, datasets, record)
        except KeyboardInterrupt:
            _write_sweep_status(sweep_dir, "interrupted", executor, len(plan), len(finished))
            raise
        except BaseException as exc:
            _write_sweep_status(sweep_dir, "failed", executor, len(plan), len(finished), reason=type(exc).__name__)
            raise
        _write_sweep_status(sweep_dir, "complete", executor, len(plan), len(finished))
        return [finished[run.directory] for run in plan]


def duration(seconds: float) -> str:
    """An ETA as a person reads it: 45s, 3m 05s, 2h 07m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _write_sweep_status(sweep_dir: Path, status: str, executor, total: int, done: int, **details: Any) -> None:
    records.write_json(
        sweep_dir / SWEEP_STATUS_FILE,
        {
            "format_version": records.FORMAT_VERSION,
            "status": status,
            "executor": executor.name,
            "runs": total,
            "finished": done,
            **details,
        },
    )


def _dataset_for(bundle: Bundle, datasets: Datasets):
    return datasets[bundle.members[0].config.data.data_dir]  # a bundle's members share their data


class LocalExecutor:
    """Bundles one after another in this process, training straight into the sweep's run directories.

    `train` is bundles.train_bundle's signature; the fast tests pass one that only writes files.
    """

    name = "local"

    def __init__(self, train: Callable[..., list[dict[str, Any]]] = train_bundle):
        self.train = train

    def at_once(self, plan: Sequence[PlannedRun]) -> tuple[int, str]:
        """How many runs this process holds at once (bundles.held_at_once), and how many train at the same time
        said with where: (3, '2 at a time on 2 CPU cores')."""
        from mnist_dnn.core.backend import describe_devices

        largest = max(len(bundle.members) for bundle in plan_bundles(plan))
        count = side_by_side(largest)
        vmapped = ", vmapped" if execution_mode() == "vmap" else ""
        return held_at_once(largest), f"{count} at a time on {describe_devices()}{vmapped}"

    def run(self, todo: Sequence[PlannedRun], sweep_dir: Path, datasets: Datasets, on_runs: OnRuns) -> None:
        for bundle in plan_bundles(todo):

            def done(index: int, metrics: dict[str, Any], bundle: Bundle = bundle) -> None:
                on_runs([(bundle.members[index], metrics)])

            run_dirs = [sweep_dir / run.directory for run in bundle.members]
            self.train(bundle, run_dirs, _dataset_for(bundle, datasets), on_run_done=done)


def _pieces(todo: Sequence[PlannedRun], slots: int) -> list[Bundle]:
    """Bundles small enough that `slots` workers all get one (a bundle trains in one worker)."""
    pieces = plan_bundles(todo, max_members=max(1, math.ceil(len(todo) / max(1, slots))))
    whole = len(plan_bundles(todo))
    if len(pieces) > whole:
        log.info("%d bundle(s) cut into %d for %d workers", whole, len(pieces), slots)
    return pieces


def existing_files(sweep_dir: Path, bundle: Bundle) -> dict[str, RunFiles]:
    """The files of the bundle's interrupted runs, for a worker to continue them from their checkpoints."""
    return {
        run.directory: run_files(sweep_dir / run.directory)
        for run in bundle.members
        if member_state(sweep_dir / run.directory) == "resumable"
    }


def run_files(run_dir: Path) -> RunFiles:
    """Every file in a run directory and below it (TensorBoard's event files), by relative POSIX path."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def train_bundle_files(
    bundle: Bundle, existing: Mapping[str, RunFiles], dataset, tensorboard: bool = True, cores: int | None = None
) -> list[tuple[dict[str, Any], RunFiles]]:
    """In a worker: train the bundle in a scratch directory; return each member's metrics and files.

    This is the Ray task (and the processes pool's job): small arguments in, results out,
    nothing written anywhere the driver reads. `existing` holds interrupted runs' files.
    `cores`: the worker's CPU cores, on which the members train side by side (bundles.py);
    by default those it may run on (a pool worker's share, _start_worker).
    """
    from mnist_dnn.core.backend import activate_backend

    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    activate_backend(bundle.members[0].config.train.backend, cpu_devices=cores)
    with tempfile.TemporaryDirectory(prefix="mnist-dnn-bundle-") as scratch:
        run_dirs = []
        for run in bundle.members:
            run_dir = Path(scratch) / run.directory
            run_dir.mkdir()
            for name, content in existing.get(run.directory, {}).items():
                (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (run_dir / name).write_bytes(content)
            run_dirs.append(run_dir)
        metrics = train_bundle(bundle, run_dirs, dataset, tensorboard=tensorboard)
        return [(member_metrics, run_files(run_dir)) for member_metrics, run_dir in zip(metrics, run_dirs, strict=True)]


def train_bundle_on_node(bundle: Bundle, existing: Mapping[str, RunFiles], dataset, tensorboard: bool = True):
    """The Ray task: `train_bundle_files`, and the ID of the node that ran it (the driver logs where bundles ran)."""
    import ray

    context = ray.get_runtime_context()
    cores = int(context.get_assigned_resources().get("CPU", 1))
    return context.get_node_id(), train_bundle_files(bundle, existing, dataset, tensorboard, cores)


def store_run(run_dir: Path, files: RunFiles) -> None:
    """Write a finished run's files into its directory, each atomically, status.json last.

    Until status.json says complete the run counts as unfinished, so a crash in between
    costs a retrain (or a resume), never a torn run. Files the finished run no longer has
    (an interrupted run's checkpoint) go.
    """
    if not all(_plain_relative(name) for name in files) or runs.STATUS_FILE not in files:
        raise ValueError(f"{run_dir.name}: a worker returned unexpected file names {sorted(files)}")
    run_dir.mkdir(exist_ok=True)
    for name, content in files.items():
        if name != runs.STATUS_FILE:
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / name, content)
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and path.relative_to(run_dir).as_posix() not in files:
            path.unlink()
    atomic_write_bytes(run_dir / runs.STATUS_FILE, files[runs.STATUS_FILE])


def _plain_relative(name: str) -> bool:
    """A name a worker may return: a relative path inside the run directory, no part hidden or climbing out."""
    parts = name.split("/")
    return all(part and not part.startswith(".") for part in parts) and len(parts) <= 4


def _collect(bundle: Bundle, results, sweep_dir: Path, on_runs: OnRuns) -> None:
    """Write a worker's runs into the sweep directory; a Ctrl-C meanwhile waits until each run is whole."""
    for run, (_, files) in zip(bundle.members, results, strict=True):
        with deferred():
            store_run(sweep_dir / run.directory, files)
    on_runs([(run, metrics) for run, (metrics, _) in zip(bundle.members, results, strict=True)])


# --- processes: a pool of spawned workers on this machine ---


def cpu_shares(workers: int) -> list[list[int]]:
    """The CPUs each worker may use: an even split of this process's CPUs, one each when workers outnumber them."""
    cpus = sorted(os.sched_getaffinity(0))
    if workers >= len(cpus):
        return [[cpus[index % len(cpus)]] for index in range(workers)]
    cuts = [len(cpus) * index // workers for index in range(workers + 1)]
    return [cpus[start:end] for start, end in itertools.pairwise(cuts)]


def pin_to_cpus(cpus: Sequence[int]) -> None:
    """Pin this process to `cpus` before any numeric library starts its threads, and size their pools to them.

    XLA sizes its thread pool from the CPUs the process may run on; OpenMP, BLAS and
    TensorFlow read the variables. Sweep workers and tune workers both start with this.
    """
    os.sched_setaffinity(0, cpus)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(len(cpus))


def _start_worker(shares, driver: int) -> None:
    """A pool worker's first act: die with the driver, then pin_to_cpus before any numeric library starts threads.

    SIGINT is ignored: the driver decides what Ctrl-C stops. A driver killed outright
    (kill -9) takes its workers with it (lifeline.py): a worker holds nothing the driver
    has not written, and its run starts over next time.
    """
    die_with_parent(driver, signal.SIGKILL)
    pin_to_cpus(shares.get())
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_count(asked: int, jobs: int, what: str = "bundles") -> int:
    """Workers that can run at once: no more than the CPUs this process may use, nor the jobs; said if fewer."""
    cpus = len(os.sched_getaffinity(0))
    count = max(1, min(asked, cpus, jobs))
    if count < asked:
        log.info("--workers %d: starting %d (CPUs this process may use: %d; %s: %d)", asked, count, cpus, what, jobs)
    return count


class ProcessesExecutor:
    """N spawned worker processes on this machine, each pinned to its own share of the CPUs.

    A worker that dies (killed, out of memory) breaks the pool; the bundles it and the
    others had not returned are trained again in a new pool, each up to WORKER_RETRIES
    times, and the runs already returned are kept.
    """

    name = "processes"

    def __init__(self, workers: int, tensorboard: bool = True):
        if workers < 1:
            raise UserInputError(f"--workers: expected at least 1, got {workers}")
        self.workers, self.tensorboard = workers, tensorboard

    def at_once(self, plan: Sequence[PlannedRun]) -> tuple[int, str]:
        """LocalExecutor.at_once: each worker trains its bundle's members side by side on its share of the cores,
        setting the next one up meanwhile."""
        cpus = len(os.sched_getaffinity(0))
        pieces = _pieces(plan, min(self.workers, cpus))
        largest = max(len(piece.members) for piece in pieces)
        shares = cpu_shares(max(1, min(self.workers, cpus, len(pieces))))  # run's pool (worker_count)
        count = sum(min(len(share), largest) for share in shares)
        held = sum(held_at_once(largest, len(share)) for share in shares)
        cores = len({cpu for share in shares for cpu in share})
        return held, f"{count} at a time in {len(shares)} worker process(es) on {cores} CPU core(s)"

    def run(self, todo: Sequence[PlannedRun], sweep_dir: Path, datasets: Datasets, on_runs: OnRuns) -> None:
        bundles = _pieces(todo, min(self.workers, len(os.sched_getaffinity(0))))
        workers = worker_count(self.workers, len(bundles))
        lost_before: dict[int, int] = {}  # id(bundle) -> times a dead worker's pool took it down
        while bundles:
            lost = self._run_pool(bundles, workers, sweep_dir, datasets, on_runs)
            for bundle in lost:
                lost_before[id(bundle)] = lost_before.get(id(bundle), 0) + 1
            given_up = [bundle for bundle in lost if lost_before[id(bundle)] > WORKER_RETRIES]
            if given_up:
                names = ", ".join(run.directory for bundle in given_up for run in bundle.members)
                raise UserInputError(
                    f"a worker process died {WORKER_RETRIES + 1} times while training {names} (killed, or out of "
                    "memory?); the other runs are kept: run the same command to continue"
                )
            if lost:
                log.warning(
                    "A worker process died (killed, or out of memory?); training its %d unfinished run(s) again",
                    sum(len(bundle.members) for bundle in lost),
                )
            bundles = lost

    def _run_pool(
        self, bundles: Sequence[Bundle], workers: int, sweep_dir: Path, datasets: Datasets, on_runs: OnRuns
    ) -> list[Bundle]:
        """Train `bundles` in a pool of `workers`; -> the bundles lost because a worker died."""
        context = multiprocessing.get_context("spawn")  # no forked copies of a half-initialised JAX
        shares = context.SimpleQueue()
        for cpus in cpu_shares(workers):
            shares.put(cpus)
        # The data goes with each job, through the pool's queue: as an initializer argument it would be
        # written into the new worker's start-up pipe, and a worker killed before reading all of it
        # leaves that write blocked for good (CPython's spawn holds the pipe's other end meanwhile).
        pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(shares, os.getpid()))
        lost = []
        try:
            pending = {
                pool.submit(
                    train_bundle_files, b, existing_files(sweep_dir, b), _dataset_for(b, datasets), self.tensorboard
                ): b
                for b in bundles
            }
            while pending:
                done, _ = wait(pending, timeout=WAIT_S, return_when=FIRST_COMPLETED)
                poll()  # a Ctrl-C that came while the pool's wait ran (not our code) stops the sweep now
                for future in done:
                    bundle = pending.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:  # this bundle's worker, or another one, died
                        lost.append(bundle)
                        continue
                    _collect(bundle, results, sweep_dir, on_runs)
        except BaseException:
            # Unfinished bundles are dropped: stop the workers now rather than wait for their bundles
            # (Python 3.14's ProcessPoolExecutor.terminate_workers does this).
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        return lost


# --- ray: a task per bundle on a local or remote cluster (connecting: ray_cluster.py) ---


class RayExecutor:
    """Each bundle one Ray task; the driver writes what the tasks return.

    On a CPU cluster `workers` tasks at a time (default: one per bundle, up to the CPUs) share
    `cores` CPUs (default: the cluster's); a task asks as many as its bundle's members can use
    and trains them side by side on that many JAX CPU devices (on_cores). On GPUs, one GPU each.
    Without `address` an embedded local Ray starts (and stops) with the sweep; with one
    (HOST:PORT, or 'auto': $RAY_ADDRESS, else the cluster `ray start` started on this
    machine) the sweep joins that cluster. A process already connected to Ray (a test, a
    notebook) keeps its connection.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        max_retries: int = RAY_MAX_RETRIES,
        tensorboard: bool = True,
        workers: int | None = None,
        cores: int | None = None,
    ):
        self.address, self.max_retries, self.tensorboard = address, max_retries, tensorboard
        self.workers, self.cores = workers, cores

    def at_once(self, plan: Sequence[PlannedRun]) -> tuple[int, str]:
        """LocalExecutor.at_once: a task per bundle, its members side by side on its CPU cores, or on one GPU."""
        return 1, "one bundle per Ray task, its runs side by side on the task's CPU cores (or on one GPU)"

    def run(self, todo: Sequence[PlannedRun], sweep_dir: Path, datasets: Datasets, on_runs: OnRuns) -> None:
        with ray_session(self.address) as ray:
            self._run(ray, todo, sweep_dir, datasets, on_runs)

    def _run(self, ray, todo: Sequence[PlannedRun], sweep_dir: Path, datasets: Datasets, on_runs: OnRuns) -> None:
        pending: dict[Any, Bundle] = {}
        try:
            task, slots, on_gpus = ray_task(ray, train_bundle_on_node, self.max_retries)
            per_task = 1
            if not on_gpus:
                largest = max(len(bundle.members) for bundle in plan_bundles(todo))
                per_task, slots = task_cores(ray, self.cores, largest, len(plan_bundles(todo)), self.workers)
            refs = {key: ray.put(dataset) for key, dataset in datasets.items()}  # once, not once per task
            for bundle in _pieces(todo, slots):
                key = bundle.members[0].config.data.data_dir
                sized = task if on_gpus else on_cores(task, min(len(bundle.members), per_task))
                pending[sized.remote(bundle, existing_files(sweep_dir, bundle), refs[key], self.tensorboard)] = bundle
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                poll()  # a Ctrl-C that came while Ray waited (not our code) stops the sweep now
                for ref in done:
                    bundle = pending.pop(ref)
                    node, results = ray.get(ref)
                    cores = "1 GPU" if on_gpus else f"{min(len(bundle.members), per_task)} CPU core(s)"
                    log.info("Bundle of %d run(s) finished on node %s (%s)", len(bundle.members), node, cores)
                    _collect(bundle, results, sweep_dir, on_runs)
        except BaseException:
            # Only tasks still running: a cancel racing a task's own end can abort the driver inside
            # Ray 2.60 ("Tried to complete task that was not pending"), so the finished are left alone.
            _, running = ray.wait(list(pending), num_returns=len(pending), timeout=0) if pending else ([], [])
            for ref in running:
                ray.cancel(ref, force=True)
            raise

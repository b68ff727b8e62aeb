"""Ray for the sweep executors and tune's workers alike: installed or one line, connected for a block, a task per job.

    with ray_session(address) as ray:       # an embedded local Ray, or the cluster at HOST:PORT ('auto')
        task, slots, on_gpus = ray_task(ray, train_one)

Every node needs the same mnist-dnn version: Ray tasks unpickle functions by module path.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mnist_dnn.core.backend import CORES_VARIABLE
from mnist_dnn.core.errors import UserInputError

log = logging.getLogger(__name__)

RAY_MAX_RETRIES = 3  # a task whose worker process or node dies runs again, up to this many times
RAY_INSTALL_HINT = "pip install 'mnist-dnn[ray]'"


def import_ray():
    """The ray module, or the user's one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserInputError(f"--executor ray: Ray is not installed; install it with {RAY_INSTALL_HINT}") from None
    return ray


def check_ray(address: str | None) -> None:
    """Before anything trains: Ray installed, and a HOST:PORT address answering (the user's one line if not)."""
    ray = import_ray()
    if address == "auto":
        address = find_cluster(ray)
    if address is not None:
        check_reachable(address)


def find_cluster(ray) -> str:
    """The HOST:PORT `--ray-address auto` joins ($RAY_ADDRESS, else the `ray start` of this machine), or one line.

    Ray's own lookup (as `ray.init(address="auto")` makes it, ray 2.x), asked before the
    sweep or tune directory exists, so a missing cluster leaves nothing behind.
    """
    from ray._private.services import get_ray_address_from_environment

    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UserInputError(
            "--ray-address auto: no Ray cluster found ($RAY_ADDRESS unset, no 'ray start' on this machine); "
            "start one with 'ray start --head', or leave --ray-address out for a local Ray"
        ) from None
    return found.removeprefix("ray://")


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected for the block: an embedded local Ray without `address`, else the cluster there (or 'auto').

    A process already connected to Ray (a test, a notebook) keeps its connection; one
    connected here is disconnected (an embedded Ray stopped) when the block ends.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    started = time.perf_counter()
    sigterm = signal.getsignal(signal.SIGTERM)
    # 'local' starts a Ray of our own even where RAY_ADDRESS or a `ray start` on this machine
    # would make ray.init() join that one; --ray-address auto joins it.
    try:
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as exc:  # 'auto' and no cluster to find
        raise UserInputError(f"--ray-address {address}: {exc}") from None
    if sigterm is not None:  # ray.init makes SIGTERM exit at once; ours cancels the tasks first
        signal.signal(signal.SIGTERM, sigterm)
    how = "joined the cluster" if address else "started locally"
    log.info("Ray: %s in %.1fs", how, time.perf_counter() - started)
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_task(ray, function: Callable, max_retries: int = RAY_MAX_RETRIES) -> tuple[Any, int, bool]:
    """`function` as a Ray task of one GPU where the cluster has GPUs, else one CPU (on_cores asks more);
    -> (task, the cluster's GPUs or else CPUs, whether they are GPUs)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    task = ray.remote(max_retries=max_retries, num_cpus=1, num_gpus=1 if gpus else 0)(function)
    return task, gpus or int(resources.get("CPU", 1)), bool(gpus)


def task_cores(ray, cores: int | None, members: int, jobs: int, workers: int | None) -> tuple[int, int]:
    """(CPU cores per task, tasks) on the connected cluster: share_cores with its CPUs and its largest node's."""
    nodes = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]]
    cpus = cores or int(ray.cluster_resources().get("CPU", 1))
    return share_cores(cpus, max(nodes, default=1), members, jobs, workers)


def share_cores(cpus: int, node_cpus: int, members: int, jobs: int, workers: int | None) -> tuple[int, int]:
    """(CPU cores per task, tasks): `workers` tasks (default one per job, up to the CPUs) share `cpus` cores,
    each asking no more than its `members` runs can use side by side (one JAX CPU device each) nor than
    the largest node has (`node_cpus`: a task runs on one node)."""
    tasks = workers or max(1, min(jobs, cpus))
    return max(1, min(members, cpus // tasks, node_cpus)), tasks


def on_cores(task, cores: int):
    """`task` asking `cores` CPUs, in Ray worker processes of its own whose JAX shows that many devices.

    A worker's JAX fixes its devices when it first loads, and Ray reuses a worker for any task
    of the same runtime environment: naming the core count in the environment gives each
    count its own workers, in which the task's activate_backend runs before JAX loads.
    """
    return task.options(num_cpus=cores, runtime_env={"env_vars": {CORES_VARIABLE: str(cores)}})


def check_reachable(address: str) -> None:
    """A HOST:PORT that nothing answers at is the user's one line now, not minutes of Ray retrying."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--ray-address: expected HOST:PORT (a Ray head) or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise UserInputError(
            f"--ray-address {address}: no Ray head answers there ({exc.strerror or exc}); "
            "start one with 'ray start --head'"
        ) from None

"""Executors: the same sweep in this process, in worker processes and on a real Ray, with faults and Ctrl-C.

The slow tests train a small real sweep (tiny digits in MNIST's file format, 1 epoch, two
architectures x two seeds = two bundles) and compare every run's files with the same
sweep trained `local`ly. Ray nodes get one CPU each: the machine has two cores and a JAX worker needs
about 1 GB.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.experiments.bundles import member_state, plan_bundles
from mnist_dnn.experiments.executors import (
    SWEEP_STATUS_FILE,
    LocalExecutor,
    cpu_shares,
    execute_sweep,
    existing_files,
    store_run,
    sweep_lock,
    train_bundle_files,
)
from mnist_dnn.experiments.ray_cluster import RAY_INSTALL_HINT, share_cores
from mnist_dnn.experiments.sweep import (
    SUMMARY_FILE,
    open_sweep_dir,
    parse_axis,
    plan_sweep,
    summarize,
    summary_markdown,
)
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from tests.conftest import REPO, mnist_dnn_command
from tests.test_train import write_separable_idx

GRID = ["--set", "model.hidden_units=[64],[32]", "--seeds", "0-1", "--no-plots"]  # 4 runs, 2 bundles
RUN_NAMES = ["hidden_units--32__seed0", "hidden_units--32__seed1", "hidden_units--64__seed0", "hidden_units--64__seed1"]
TASK_TITLE = b"ray::train_bundle_on_node"  # Ray names a worker process after the task it runs
# Ray starts its services with fork + exec from this (JAX-loaded) process: safe, whatever Python's warning says.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def sweep_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--data-dir", str(data), "--epochs", "1", *GRID, "--out", str(out), *extra]


def run_files(sweep_dir: Path) -> dict:
    """Every run's files as they must agree between executors: all bytes, timings aside (model.keras: its scores)."""
    found = {}
    for run_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        lines = (run_dir / runs.HISTORY_FILE).read_text().splitlines()
        header = lines[0].split(",")
        keep = [i for i, name in enumerate(header) if name not in records.TIMING_COLUMNS]
        metrics = json.loads((run_dir / runs.METRICS_FILE).read_text())
        metrics.pop("timings")
        found[run_dir.name] = {
            "files": sorted(p.name for p in run_dir.iterdir()),
            "event files in": sorted(p.parent.relative_to(run_dir).as_posix() for p in run_dir.rglob("events.*")),
            "history": [",".join(line.split(",")[i] for i in keep) for line in lines],
            "metrics": metrics,
            "status": {k: v for k, v in json.loads((run_dir / "status.json").read_text()).items() if k != "started_at"},
            **{name: (run_dir / name).read_bytes() for name in ("steps.csv", "config.toml")},
        }
    return found


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """Learnable digits in MNIST's IDX layout: 640 to train on, 160 to test (a sweep of them takes seconds)."""
    directory = tmp_path_factory.mktemp("digits")
    return write_separable_idx(directory, 640, 160)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, digits_dir):
    """The reference: the sweep trained in this process."""
    tmp_path = tmp_path_factory.mktemp("local")
    result = CliRunner().invoke(main, sweep_args(digits_dir, tmp_path / "sweep"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == RUN_NAMES
    return run_files(tmp_path / "sweep")


@pytest.fixture
def local_ray():
    """A real local Ray of one CPU, which the sweep's RayExecutor uses because this process is connected."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


# --- fast: the pieces ---


def test_a_second_copy_of_a_sweep_is_refused_while_the_first_holds_the_lock(tmp_path):
    refused = pytest.raises(UserInputError, match="another mnist-dnn sweep is running in this directory")
    with sweep_lock(tmp_path), refused, sweep_lock(tmp_path):
        pass
    with sweep_lock(tmp_path):  # released when the holder is done
        pass


def test_workers_get_disjoint_shares_of_the_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    shares = cpu_shares(len(cpus))
    assert shares == [[cpu] for cpu in cpus]
    assert cpu_shares(1) == [cpus]
    assert [cpu for share in cpu_shares(2) for cpu in share] == cpus if len(cpus) >= 2 else True
    assert len(cpu_shares(len(cpus) + 3)) == len(cpus) + 3  # more workers than CPUs: one CPU each, shared


def test_a_returned_run_is_written_whole_with_its_status_last_and_stale_files_gone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"old")
    lifecycle.write_status(run_dir, "interrupted", kind="train")
    store_run(run_dir, {"metrics.json": b"{}", "status.json": b'{"status": "complete"}'})
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json", "status.json"]
    assert (run_dir / "status.json").read_bytes() == b'{"status": "complete"}'
    with pytest.raises(ValueError, match="unexpected file names"):
        store_run(run_dir, {"../escape": b"", "status.json": b""})


def _fake_training(trained):
    """Stands in for bundles.train_bundle: writes what a finished run has; accuracy grows with the learning rate."""

    def train(bundle, run_dirs, data, on_run_done):
        results = []
        for index, (run, run_dir) in enumerate(zip(bundle.members, run_dirs, strict=True)):
            state = member_state(run_dir)
            if state == "complete":
                metrics = records.read_metrics(run_dir)
            else:
                trained.append((run_dir.name, state == "resumable"))
                accuracy = 0.9 + run.config.optimizer.learning_rate + run.config.train.seed / 1000
                metrics = {"test_accuracy": accuracy, "test_loss": 1 - accuracy}
                metrics.update(validation_accuracy=accuracy, validation_loss=1 - accuracy)
                records.write_json(run_dir / runs.METRICS_FILE, metrics)
                lifecycle.write_status(run_dir, "complete", kind="train")
            on_run_done(index, metrics)
            results.append(metrics)
        return results

    return train


def test_a_sweep_runs_every_run_ranks_the_settings_and_reports_progress_with_an_eta(tmp_path):
    plan = plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.01,0.05")], [0, 2])
    trained, seen = [], []
    assert open_sweep_dir(tmp_path / "sweep", plan) is False
    results = execute_sweep(plan, tmp_path / "sweep", {None: None}, LocalExecutor(_fake_training(trained)), seen.append)
    assert [name for name, _ in trained] == [run.directory for run in plan]
    assert [(p.done, p.total, p.how) for p in seen] == [(k, 4, "trained") for k in range(1, 5)]
    assert all(p.eta_s > 0 for p in seen[:-1]) and seen[-1].eta_s is None  # nothing left: no ETA
    rows = summarize(plan, results)
    assert [row["setting"] for row in rows] == ["optimizer.learning_rate=0.05", "optimizer.learning_rate=0.01"]
    assert rows[0]["runs"] == 2 and rows[0]["rank"] == 1
    assert rows[0]["test_accuracy_mean"] == pytest.approx(0.951)
    assert rows[0]["test_accuracy_std"] == pytest.approx(math.sqrt(2) * 0.001)  # sample std of 0.950, 0.952
    summary = (tmp_path / "sweep" / SUMMARY_FILE).read_text().splitlines()
    assert summary[0].startswith("rank,setting,runs,test_accuracy_mean,test_accuracy_std")
    assert summary[1].startswith("1,optimizer.learning_rate=0.05,2,0.951")
    assert "| 1 | optimizer.learning_rate=0.05 | 2 | 0.9510 ± 0.0014 |" in summary_markdown(rows)
    status = json.loads((tmp_path / "sweep" / SWEEP_STATUS_FILE).read_text())
    assert (status["status"], status["executor"], status["finished"]) == ("complete", "local", 4)


def test_running_a_sweep_again_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    plan = plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.01,0.05")], [0])
    sweep_dir = tmp_path / "sweep"
    open_sweep_dir(sweep_dir, plan)
    execute_sweep(plan[:1], sweep_dir, {None: None}, LocalExecutor(_fake_training([])))
    (sweep_dir / plan[1].directory).mkdir()
    lifecycle.write_status(sweep_dir / plan[1].directory, "interrupted", kind="train")
    trained, seen = [], []
    assert open_sweep_dir(sweep_dir, plan) is True
    execute_sweep(plan, sweep_dir, {None: None}, LocalExecutor(_fake_training(trained)), seen.append)
    assert trained == [(plan[1].directory, True)]
    assert [p.how for p in seen] == ["finished before", "resumed"]
    assert seen[0].eta_s is None  # no pace yet: nothing was trained this time


def test_an_interrupted_sweep_is_marked_interrupted(tmp_path):
    plan = plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.01,0.05")], [0])
    open_sweep_dir(tmp_path / "sweep", plan)

    def ctrl_c(bundle, run_dirs, data, on_run_done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_sweep(plan, tmp_path / "sweep", {None: None}, LocalExecutor(ctrl_c))
    assert json.loads((tmp_path / "sweep" / SWEEP_STATUS_FILE).read_text())["status"] == "interrupted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers: only with --executor processes or ray"),
        (["--ray-address", "auto"], "--ray-address: only with --executor ray"),
        (["--executor", "ray", "--ray-address", "nonsense"], "--ray-address: expected HOST:PORT (a Ray head) or auto"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: no Ray head answers there"),
    ],
)
def test_executor_options_are_checked_before_anything_trains(cli_env, args, message):
    result = CliRunner().invoke(main, ["sweep", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (cli_env / "runs").exists()


# --- slow: real sweeps ---


@pytest.mark.slow
def test_executors_agree_local_processes_and_ray_write_the_same_files(tmp_path, digits_dir, local_sweep, local_ray):
    ray_run = CliRunner().invoke(main, sweep_args(digits_dir, tmp_path / "ray", "--executor", "ray"))
    assert ray_run.exit_code == 0, ray_run.output
    assert run_files(tmp_path / "ray") == local_sweep
    assert json.loads((tmp_path / "ray" / SWEEP_STATUS_FILE).read_text())["status"] == "complete"

    # One worker gets every CPU this process has, as local training does: the very same sums.
    one = CliRunner().invoke(
        main, sweep_args(digits_dir, tmp_path / "one", "--executor", "processes", "--workers", "1")
    )
    assert one.exit_code == 0, one.output
    assert run_files(tmp_path / "one") == local_sweep
    assert "[4/4]" in one.stderr and "ETA" in one.stderr


@pytest.mark.slow
def test_a_ray_task_given_two_cores_trains_its_bundle_on_two_devices_with_the_files_of_local_training(
    tmp_path, digits_dir, local_sweep
):
    """--workers 1 on a Ray of 2 CPUs: each bundle's task asks both and its 2 members train on cpu:0 and cpu:1."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    try:
        result = CliRunner().invoke(
            main, sweep_args(digits_dir, tmp_path / "ray", "--executor", "ray", "--workers", "1")
        )
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    devices = {
        name: json.loads((tmp_path / "ray" / name / runs.METRICS_FILE).read_text())["timings"]["device"]
        for name in RUN_NAMES
    }
    assert devices == dict(zip(RUN_NAMES, ["cpu:0", "cpu:1", "cpu:0", "cpu:1"], strict=True))
    assert result.stderr.count("(2 CPU core(s))") == 2  # each bundle's task
    assert run_files(tmp_path / "ray") == local_sweep


def test_ray_tasks_ask_the_cores_their_members_can_use_and_no_more_than_a_node_has():
    # a cluster of 6 CPUs whose largest node has 4
    assert share_cores(6, 4, members=3, jobs=1, workers=None) == (3, 1)  # one bundle: its 3 runs on 3 cores
    assert share_cores(6, 4, members=12, jobs=1, workers=None) == (4, 1)  # no node has more than 4
    assert share_cores(6, 4, members=3, jobs=4, workers=None) == (1, 4)  # 4 bundles share 6 cores
    assert share_cores(6, 4, members=3, jobs=4, workers=2) == (3, 2)  # --workers 2
    assert share_cores(2, 4, members=3, jobs=1, workers=None) == (2, 1)  # --cores 2
    assert share_cores(6, 4, members=3, jobs=4, workers=8) == (1, 8)  # more tasks than cores: one each


@pytest.mark.slow
def test_pinned_workers_match_local_training_on_the_same_share_of_cpus(tmp_path, digits_dir, local_sweep):
    """Two workers on a 2-core machine get one CPU each; XLA's sums follow its thread count (docs/ray.md: tolerance)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to pin two workers apart")
    two = CliRunner().invoke(
        main, sweep_args(digits_dir, tmp_path / "two", "--executor", "processes", "--workers", "2")
    )
    assert two.exit_code == 0, two.output
    share = cpu_shares(2)[0]
    pinned = subprocess.run(
        [*mnist_dnn_command(), *sweep_args(digits_dir, tmp_path / "pinned"), "-q"],
        preexec_fn=lambda: os.sched_setaffinity(0, share),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert pinned.returncode == 0, pinned.stderr
    assert run_files(tmp_path / "two") == run_files(tmp_path / "pinned")
    for name, files in run_files(tmp_path / "two").items():  # and against unpinned training: the stated tolerance
        for key in ("test_loss", "test_accuracy", "validation_loss"):
            assert files["metrics"][key] == pytest.approx(local_sweep[name]["metrics"][key], rel=1e-4)


@pytest.mark.slow
def test_a_two_node_cluster_runs_bundles_on_both_nodes_and_the_driver_writes_every_run(
    tmp_path, digits_dir, local_sweep
):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 200 * 2**20, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=1, object_store_memory=200 * 2**20)
        cluster.wait_for_nodes()
        node_ids = {cluster.head_node.node_id, worker.node_id}
        result = CliRunner().invoke(
            main, sweep_args(digits_dir, tmp_path / "cluster", "--executor", "ray", "--ray-address", cluster.address)
        )
    finally:
        cluster.shutdown()
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "finished on node" in line]
    assert all(line.endswith("(1 CPU core(s))") for line in lines)  # nodes of one CPU each
    nodes = {line.split("on node ")[1].split()[0] for line in lines}
    assert nodes == node_ids
    assert run_files(tmp_path / "cluster") == local_sweep


def _kill_first_task_worker(killed: list[int], stop: threading.Event) -> None:
    """Wait for a worker process running a bundle, let it train a moment, then SIGKILL it."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(TASK_TITLE):
                    time.sleep(2.0)
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
                    return
            except (OSError, ProcessLookupError):
                continue
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_sweep_completes_with_the_same_files(
    tmp_path, digits_dir, local_sweep, local_ray
):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_task_worker, args=(killed, stop))
    killer.start()
    try:
        result = CliRunner().invoke(main, sweep_args(digits_dir, tmp_path / "sweep", "--executor", "ray"))
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    assert result.exit_code == 0, result.output
    assert run_files(tmp_path / "sweep") == local_sweep


@pytest.mark.slow
def test_a_worker_continues_a_run_a_local_sweep_left_interrupted_from_its_checkpoint(tmp_path, digits_dir):
    """The driver ships an interrupted run's files (its checkpoint) to the worker, which resumes it exactly."""
    from mnist_dnn.data.mnist import load_mnist
    from mnist_dnn.experiments.experiment import train_and_evaluate

    dataset = load_mnist(digits_dir)
    settings = {"train.epochs": 2, "train.engine": "fused", "train.backend": "jax", "data.data_dir": str(digits_dir)}
    config = load_config(None, settings)
    plan = plan_sweep({"paper": config}, [], [0])
    bundle = plan_bundles(plan)[0]
    whole = tmp_path / "alone" / plan[0].directory  # the same run, never interrupted
    whole.mkdir(parents=True)
    train_and_evaluate(plan[0].config, dataset, whole, 0)

    def ctrl_c_after_epoch_1(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / plan[0].directory
    run_dir.mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(plan[0].config, dataset, run_dir, 0, extra_callbacks=(ctrl_c_after_epoch_1,))
    existing = existing_files(sweep_dir, bundle)
    assert "checkpoint.npz" in existing[plan[0].directory]
    [(metrics, files)] = train_bundle_files(bundle, existing, dataset)
    store_run(run_dir, files)
    assert metrics["timings"]["resumed_at_epoch"] == 1
    assert run_files(sweep_dir) == run_files(tmp_path / "alone")


@contextmanager
def _executor_flags(executor: str):
    """The sweep flags of `executor`; for ray, a one-CPU cluster started here (the driver joins it)."""
    if executor == "processes":
        yield ["--executor", "processes", "--workers", "1"]  # one worker: bundles one after another
        return
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 200 * 2**20, "include_dashboard": False},
    )
    try:
        yield ["--executor", "ray", "--ray-address", cluster.address]
    finally:
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_sigint_to_the_driver_keeps_finished_runs_and_the_same_command_continues(
    tmp_path, digits_dir, local_sweep, executor
):
    sweep_dir = tmp_path / "sweep"
    with _executor_flags(executor) as flags:
        command = [*mnist_dnn_command(), *sweep_args(digits_dir, sweep_dir, *flags)]
        driver = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        lines = []
        for line in driver.stderr:  # the first bundle's two runs are in; the second bundle is training
            lines.append(line)
            if line.startswith("[2/4]"):
                driver.send_signal(signal.SIGINT)
                break
        lines += driver.stderr.readlines()
        assert driver.wait(timeout=60) == 130, "".join(lines)
        assert "Interrupted; finished runs are kept" in "".join(lines)
        assert json.loads((sweep_dir / SWEEP_STATUS_FILE).read_text())["status"] == "interrupted"
        finished = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / runs.METRICS_FILE).exists()]
        assert len(finished) == 2
        stamps = {p.name: (p / runs.METRICS_FILE).stat().st_mtime_ns for p in finished}

        again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("(finished before)") == 2
    assert {p: (sweep_dir / p / runs.METRICS_FILE).stat().st_mtime_ns for p in stamps} == stamps  # not trained again
    assert run_files(sweep_dir) == local_sweep
    assert json.loads((sweep_dir / SWEEP_STATUS_FILE).read_text())["status"] == "complete"


@pytest.mark.slow
def test_executor_ray_without_ray_installed_is_one_line_exit_2(tmp_path):
    code = "import sys; sys.modules['ray'] = None; from mnist_dnn.cli.app import main; main(sys.argv[1:])"
    result = subprocess.run(
        [sys.executable, "-c", code, "sweep", "--executor", "ray", "--epochs", "1", "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert result.stderr == f"Error: --executor ray: Ray is not installed; install it with {RAY_INSTALL_HINT}\n"
    assert not (tmp_path / "s").exists()

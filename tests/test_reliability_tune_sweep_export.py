"""Hostile and unlucky inputs to tune, sweep and export (issue 24): each one line, or recovered, never a traceback."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.core.config import Config, apply_overrides
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import MNIST_FILES, default_cache_dir, load_mnist, write_idx
from mnist_dnn.experiments.bundles import member_state
from mnist_dnn.experiments.executors import worker_count
from mnist_dnn.experiments.tune.command import tune
from mnist_dnn.experiments.tune.space import TunePlan, check_space, parse_dimension
from mnist_dnn.experiments.tune.study import STUDY_FILE, StudySpec, open_study, trial_dir
from mnist_dnn.export import remove_stale_temporaries, temporary_name
from tests.conftest import mnist_dnn_command
from tests.test_train import write_separable_idx

SPACE = "model.dropout=float:0..0.5"


@pytest.fixture
def our_log(caplog, monkeypatch):
    """caplog, seeing mnist_dnn's INFO lines even after a CLI test in this process stopped them propagating."""
    monkeypatch.setattr(logging.getLogger("mnist_dnn"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="mnist_dnn"):
        yield caplog


def _plan(trials: int = 2) -> TunePlan:
    base = apply_overrides(Config(), {"train.backend": "jax", "train.engine": "fused"})
    return TunePlan(base, check_space([parse_dimension(SPACE)], base), (0,), trials)


def _open(url: str, plan: TunePlan | None = None):
    return open_study(plan or _plan(), url, "tune", "tpe", "median", 5, 1)


def _finish_trial(study, value: float) -> None:
    trial = study.ask()
    trial.suggest_float("model.dropout", 0.0, 0.5)
    study.tell(trial, value)


def _one_line_exit_2(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


# --- D2: a torn study journal ---------------------------------------------------------------------------------------


def test_torn_journal_tail_is_set_aside_and_the_study_continues(tmp_path, our_log):
    caplog = our_log
    journal = tmp_path / STUDY_FILE
    study = _open(str(journal))
    _finish_trial(study, 0.9)
    whole = journal.read_bytes()
    torn = b'{"op_code": 5, "worker_id": "x", "study_id": 0, "datetime_start": "2026-'  # a crash mid-append
    journal.write_bytes(whole + torn)

    study = _open(str(journal))  # set aside, then continued: the finished trial is still the study's
    assert [t.value for t in study.get_trials()] == [0.9]
    (aside,) = tmp_path.glob(f"{STUDY_FILE}.torn-*")
    assert aside.read_bytes() == torn
    assert "last record was cut off" in caplog.text and aside.name in caplog.text
    _finish_trial(study, 0.8)  # appended after the last complete record, not onto the tear
    assert [t.value for t in _open(str(journal)).get_trials()] == [0.9, 0.8]
    assert journal.read_bytes().startswith(whole) and torn not in journal.read_bytes()


# --- T4, T5, UX: storages that cannot hold the study ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("postgresql+psycopg2://u@127.0.0.1:1/db", "needs the database driver 'psycopg2', not installed; install it"),
        ("sqlite:///", "an in-memory SQLite database keeps nothing after the command"),
        ("sqlite://", "an in-memory SQLite database keeps nothing after the command"),
        ("data.jsonl", "data.jsonl: not an Optuna journal"),
    ],
)
def test_a_storage_that_cannot_hold_the_study_is_one_line(cli_env, monkeypatch, storage, message):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # the driver missing, whatever this machine has
    (cli_env / "data.jsonl").write_text('{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n')
    with pytest.raises(UserInputError) as caught:
        _open(storage)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert (cli_env / "data.jsonl").read_text().count("\n") == 2  # not appended to


# --- T6: trial folders the study does not know ----------------------------------------------------------------------


def test_trial_folders_the_study_does_not_know_are_one_line_not_file_exists(tmp_path):
    trial_dir(tmp_path, 0).joinpath("seed0").mkdir(parents=True)
    (tmp_path / STUDY_FILE).write_bytes(b"")  # emptied: the trials it recorded are gone
    spec = StudySpec(str(tmp_path / STUDY_FILE), "tune", "tpe", "median", 5, 1)
    with pytest.raises(UserInputError, match=r"trials: holds trial-0000, a trial study 'tune' .* does not have"):
        tune(_plan(), spec, None, tmp_path)
    assert sorted(p.name for p in (tmp_path / "trials").iterdir()) == ["trial-0000"]
    assert (tmp_path / STUDY_FILE).read_bytes() == b""  # refused before the study's record was written


# --- C1, C2, UX: checked before anything is written -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "model.hidden_units=choice:[64],[100000000]"], "model.hidden_units: training [100000000] needs"),
        (["--space", SPACE, "--study-seed", "4294967296"], "--study-seed"),
        (["--space", SPACE, "--space", "train.epochs=int:1..3", "--epochs", "2"], "also fixed by --epochs"),
        (["--space", SPACE, "--set", "model.dropout=0.1"], "--space model.dropout: also fixed by --set"),
        (["--space", SPACE, "--seeds", "4294967295-4294967296"], "--seeds: a seed is at most 4294967295"),
    ],
)
def test_every_tune_value_is_checked_before_anything_is_written(cli_env, args, message):
    _one_line_exit_2(CliRunner().invoke(main, ["tune", "--trials", "1", "--out", "t", *args]), message)
    assert list(cli_env.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "4294967295-4294967296"], "--seeds: a seed is at most 4294967295, got '4294967295-4294967296'"),
        (["--seeds", "0-4294967295"], "--seeds: '0-4294967295' lists more than 10000 seeds"),
    ],
)
def test_sweep_seeds_out_of_range_blame_seeds(cli_env, args, message):
    result = CliRunner().invoke(main, ["sweep", "--set", "model.dropout=0,0.5", "--out", "s", *args])
    _one_line_exit_2(result, message)
    assert list(cli_env.iterdir()) == []


@pytest.mark.slow
def test_ray_address_auto_without_a_cluster_is_one_line_and_writes_nothing(cli_env, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TMPDIR", str(cli_env / "no-ray-here"))  # no `ray start` recorded there
    # Ray's "auto" also joins any Ray it finds running on this machine (a process scan): another test
    # file's cluster, in the other test process, is one. This machine has none of the user's.
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", lambda: [])
    args = ["sweep", "--set", "model.dropout=0,0.5", "--executor", "ray", "--ray-address", "auto", "--out", "s"]
    _one_line_exit_2(CliRunner().invoke(main, args), "--ray-address auto: no Ray cluster found")
    assert not (cli_env / "s").exists()


# --- H2, L1, T9: the processes executor's workers -------------------------------------------------------------------


def test_workers_are_capped_at_the_cpus_and_the_bundles_and_the_cap_is_said(our_log):
    caplog = our_log
    cpus = len(os.sched_getaffinity(0))
    assert worker_count(5000, 3) == min(cpus, 3)
    assert f"--workers 5000: starting {min(cpus, 3)} (CPUs this process may use: {cpus}; bundles: 3)" in caplog.text
    caplog.clear()
    assert worker_count(1, 3) == 1 and caplog.text == ""


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """Learnable digits in MNIST's IDX layout: a sweep of them trains in seconds."""
    directory = tmp_path_factory.mktemp("digits")
    return write_separable_idx(directory, 400, 100)


def _sweep_command(digits: Path, out: Path, *extra: str) -> list[str]:
    grid = ["--set", "model.hidden_units=[64],[32]", "--seeds", "0-1", "--no-plots", "--no-tensorboard"]
    # `python -m`: a spawned worker re-imports the main module, and only this one is sure to be import-safe
    command = [sys.executable, "-m", "mnist_dnn", "sweep", "--data-dir", str(digits), "--epochs", "1", *grid]
    return [*command, "--out", str(out), *extra]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"\nPPid:\t{pid}\n" in (entry / "status").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _workers_of(driver: int) -> list[int]:
    """The driver's spawned pool workers (not its resource tracker)."""
    workers = []
    for pid in _children(driver):
        with suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
    return workers


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


def _wait_for_workers(driver: subprocess.Popen, count: int) -> list[int]:
    while driver.poll() is None:
        workers = _workers_of(driver.pid)
        if len(workers) >= count:
            return workers
        time.sleep(0.2)
    pytest.fail(f"the driver ended (exit {driver.returncode}) before {count} worker(s) started")


@pytest.mark.slow
def test_workers_die_with_a_sweep_driver_killed_with_sigkill(tmp_path, digits_dir):
    driver = subprocess.Popen(
        _sweep_command(digits_dir, tmp_path / "s", "--executor", "processes", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = []
    try:
        workers = _wait_for_workers(driver, 1)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 60  # the kernel signals them at once; this only bounds a slow machine
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived their killed driver"
    finally:
        for pid in [driver.pid, *workers]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_worker_s_bundle_is_trained_again_and_the_other_bundles_finish(tmp_path, digits_dir):
    out = tmp_path / "s"
    driver = subprocess.Popen(
        _sweep_command(digits_dir, out, "--executor", "processes", "--workers", "5000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = _wait_for_workers(driver, 1)[0]
        time.sleep(1.0)  # starting up or into its bundle: a worker may die at any moment
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        with suppress(ProcessLookupError):
            driver.kill()
    assert driver.returncode == 0, stderr
    assert "A worker process died (killed, or out of memory?); training its" in stderr
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr
    cpus = len(os.sched_getaffinity(0))
    assert f"--workers 5000: starting {min(cpus, 2)} (CPUs this process may use: {cpus}; bundles: 2)" in stderr
    assert sorted(member_state(p) for p in out.iterdir() if p.is_dir()) == ["complete"] * 4


# --- L2, T7, T8, UX: export ----------------------------------------------------------------------------------------


def test_stale_export_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid is free now (taken again only after the kernel's pid counter wraps)
    out = tmp_path / "model.onnx"
    dead, live, mine = (temporary_name(out, pid) for pid in (ended.pid, os.getppid(), os.getpid()))
    dead.write_bytes(b"half an onnx file")
    live.write_bytes(b"another export at work")
    mine.mkdir()  # a dead process's, whose pid is now this one's
    (tmp_path / ".other.onnx.1.tmp").write_bytes(b"not model.onnx's")
    assert sorted(remove_stale_temporaries(out)) == sorted([dead, mine])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, ".other.onnx.1.tmp"])


@pytest.fixture(scope="module")
def standardized_run(tmp_path_factory, digits_dir):
    """A finished run whose preprocessing (standardize) keeps per-pixel statistics in preprocess.npz."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    args = ["train", "--data-dir", digits_dir, "--epochs", "1", "--set", "preprocess.method=standardize"]
    done = subprocess.run(
        [*mnist_dnn_command(), *map(str, args), "--out", str(run_dir), "-q", "--no-plots", "--no-tensorboard"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return run_dir


def _copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


def _export_command(run_dir: Path, *extra: str) -> list[str]:
    return [*mnist_dnn_command(), "export", str(run_dir), *extra]


@pytest.mark.slow
def test_export_leaves_no_onnxruntime_telemetry_under_home_and_removes_a_dead_export_s_temporary(
    tmp_path, standardized_run
):
    run_dir = _copy_run(standardized_run, tmp_path / "run")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = temporary_name(run_dir / "model.onnx", ended.pid)
    stale.write_bytes(b"left by a killed export")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        _export_command(run_dir, "--format", "onnx"),
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
    )
    assert done.returncode == 0, done.stderr
    assert (run_dir / "model.onnx").is_file() and not stale.exists()
    assert not (home / ".cache" / "Microsoft").exists()
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("to", ["the terminal's process group", "the parent alone"])
def test_an_interrupted_export_publishes_nothing_and_exits_130(tmp_path, standardized_run, to):
    run_dir = _copy_run(standardized_run, tmp_path / "run")
    export = subprocess.Popen(
        _export_command(run_dir, "--format", "onnx"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground command
    )
    try:
        while not _children(export.pid) and export.poll() is None:
            time.sleep(0.1)
        time.sleep(3.0)  # the child is loading TensorFlow and the model
        if to == "the parent alone":
            os.kill(export.pid, signal.SIGINT)
        else:
            os.killpg(export.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stdout, stderr = export.communicate(timeout=120)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(export.pid, signal.SIGKILL)
    assert export.returncode == 130, stderr
    assert stderr == "Interrupted; nothing was exported.\n" and stdout == ""
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in standardized_run.iterdir())


def _immutable(directory: Path) -> bool:
    """Make a directory refuse new files, even to root (chattr +i), or by its mode for other users."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return True
    return shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(directory)]).returncode == 0


@pytest.mark.slow
def test_export_into_a_read_only_directory_is_one_line(tmp_path, standardized_run):
    locked = tmp_path / "locked"
    locked.mkdir()
    if not _immutable(locked):
        pytest.skip("cannot make a directory read-only here (root without chattr)")
    try:
        done = subprocess.run(
            _export_command(standardized_run, "--format", "savedmodel", "--out", str(locked / "sm")),
            capture_output=True,
            text=True,
        )
        assert list(locked.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)])
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"Error: --out: cannot write into {locked} (") and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_run_whose_statistics_hold_nan_is_refused_in_one_line(tmp_path, standardized_run):
    run_dir = _copy_run(standardized_run, tmp_path / "run")
    with np.load(run_dir / "preprocess.npz") as stats:
        arrays = dict(stats)
    arrays["mean"] = np.full_like(arrays["mean"], np.nan)
    np.savez(run_dir / "preprocess.npz", **arrays)
    done = subprocess.run(_export_command(run_dir, "--format", "onnx"), capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"Error: {run_dir / 'preprocess.npz'}: holds NaN or infinite statistics (damaged); "
        "the run's model cannot be fed\n"
    )
    assert not (run_dir / "model.onnx").exists()


# --- UX: data -------------------------------------------------------------------------------------------------------


def test_a_dataset_of_0x0_images_is_refused_in_one_line(tmp_path):
    for prefix, count in {"train": 20, "t10k": 10}.items():
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.zeros((count, 0, 0), np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.zeros(count, np.uint8))
    with pytest.raises(UserInputError) as caught:
        load_mnist(tmp_path, cache_dir=tmp_path / "cache")
    assert str(caught.value) == (
        f"{tmp_path / 'train-images-idx3-ubyte'}: shape (20, 0, 0), expected (N, height, width), each above 0"
    )
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.mnist
def test_a_read_only_cache_does_not_reject_a_valid_data_dir(tmp_path, mnist, our_log):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in MNIST_FILES:
        shutil.copy(default_cache_dir() / name, data_dir / name)
    cache = tmp_path / "cache"
    cache.mkdir()
    if not _immutable(cache):
        pytest.skip("cannot make a directory read-only here (root without chattr)")
    try:
        dataset = load_mnist(data_dir, cache_dir=cache)
        assert list(cache.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(cache)])
        cache.chmod(0o755)
    assert (dataset.name, len(dataset.x_train)) == ("mnist", 60_000)
    assert f"holds MNIST (checksums match); not cached in {cache}" in our_log.text

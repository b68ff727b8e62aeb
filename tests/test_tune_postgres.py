"""`tune --storage postgresql://...` on a real PostgreSQL server (tests/postgres.py), as processes on several
machines share a study: one study, two processes at once, one killed and run again, and the three ways a
database a user points at can be wrong."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.experiments.tune import TABLE_FILE, trial_dir

from .conftest import REPO
from .postgres import PASSWORD, PostgresServer, Unavailable, process_alive

pytestmark = [pytest.mark.slow]

SMALL = "[data]\ntrain_limit = 500\n[model]\nhidden_units = [64]\n"  # a trial trains in seconds
DEADLINE_S = 600  # a hung process fails the test instead of holding it forever (not a timing assertion)


@pytest.fixture(scope="module")
def postgres():
    """One server for the module's tests, each in its own database; stopped at the end, failed tests too."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'mnist-dnn[tune]'")
    try:
        server = PostgresServer.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()
        assert not process_alive(server.pid), "the PostgreSQL server is still running"


def _args(config: Path, out: Path, url: str, trials: int = 2) -> list[str]:
    return [
        "tune", "--config", str(config), "--space", "optimizer.learning_rate=log:1e-4..1e-1",
        "--trials", str(trials), "--seeds", "0", "--epochs", "1", "--pruner", "none",
        "--storage", url, "--out", str(out), "--no-plots", "--no-tensorboard",
    ]  # fmt: skip


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}
    command = [sys.executable, "-m", "mnist_dnn", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    """Wait for a tune process (killed if it hangs past DEADLINE_S); -> its stderr. It must have succeeded."""
    try:
        _, err = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    return err


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _trials(server: PostgresServer, database: str) -> list[tuple[int, str]]:
    """Optuna's trials table as the server holds it: (number, state), by number."""
    with server.connect(database) as connection:
        return sorted(connection.execute("SELECT number, state::text FROM trials").fetchall())


def _table(out: Path) -> list[dict[str, str]]:
    with open(out / TABLE_FILE) as handle:
        return sorted(csv.DictReader(handle), key=lambda row: int(row["trial"]))


def _load(url: str):
    import optuna

    return optuna.load_study(study_name="tune", storage=url)


OPEN_STUDY = """
import sys
from mnist_dnn.core.config import Config, apply_overrides
from mnist_dnn.experiments.tune import TunePlan, check_space, open_study, parse_dimension
base = apply_overrides(Config(), {"train.backend": "jax", "train.engine": "fused"})
space = check_space([parse_dimension("model.dropout=float:0..0.5")], base)
open_study(TunePlan(base, space, (0,), 1), sys.argv[1], "tune", "tpe", "median", 5, 1)
"""


def test_processes_opening_one_fresh_database_at_once_all_get_the_study(postgres):
    """Machines started together: each creates Optuna's tables, one wins, the others use them (no UniqueViolation)."""
    url = postgres.create_database("fresh")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_STUDY, url], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=DEADLINE_S)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], errors
    with postgres.connect("fresh") as connection:
        assert connection.execute("SELECT study_name FROM studies").fetchall() == [("tune",)]


@pytest.mark.mnist
def test_a_tune_study_on_postgresql_runs_and_the_same_command_continues_it(postgres, tmp_path):
    url = postgres.create_database("single")
    config, out = _config(tmp_path), tmp_path / "t"
    process = _spawn(_args(config, out, url))
    log = _finish(process)
    assert _trials(postgres, "single") == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert "Study 'tune' in postgresql://mnist:***@127.0.0.1" in log and PASSWORD not in log
    again = _spawn(_args(config, out, url, trials=3))
    _finish(again)
    assert _trials(postgres, "single") == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert [row["trial"] for row in _table(out)] == ["0", "1", "2"]
    assert (out / "best.json").exists()
    assert not process_alive(process.pid) and not process_alive(again.pid)


@pytest.mark.mnist
def test_two_tune_processes_on_one_postgresql_study_train_every_trial_once(postgres, tmp_path):
    """Two machines' worth: each process has its own --out, the study is the server's."""
    url = postgres.create_database("shared")
    config = _config(tmp_path)
    outs = [tmp_path / "a", tmp_path / "b"]
    processes = [_spawn(_args(config, out, url, trials=3)) for out in outs]
    for process in processes:
        _finish(process)
    trials = _trials(postgres, "shared")
    assert trials == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]  # none lost, none doubled, none running
    study = _load(url)
    owners = {trial.number: trial.user_attrs["owner"]["pid"] for trial in study.trials}
    for number, pid in owners.items():  # trained once, by the process that asked it, into its own --out
        (out,) = [out for out in outs if trial_dir(out, number).exists()]
        assert pid == processes[outs.index(out)].pid
        status = json.loads((trial_dir(out, number) / "seed0" / "status.json").read_text())
        assert status["status"] == "complete"
    assert set(owners.values()) == {process.pid for process in processes}
    assert _table(outs[0]) == _table(outs[1])  # both tables list every trial with the server's values
    assert {int(row["trial"]) for row in _table(outs[0])} == {0, 1, 2}
    assert not any(process_alive(process.pid) for process in processes)


@pytest.mark.mnist
def test_a_tune_process_killed_mid_trial_has_its_trial_recovered_and_asked_again(postgres, tmp_path):
    url = postgres.create_database("killed")
    config, out = _config(tmp_path), tmp_path / "t"
    victim = _spawn(_args(config, out, url))
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not (trial_dir(out, 0) / "seed0").is_dir():  # trial 0 asked, its owner recorded, training begun
            assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
            time.sleep(0.2)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert _trials(postgres, "killed") == [(0, "RUNNING")]  # the server cannot know its process died

    again = _spawn(_args(config, out, url))
    _finish(again)
    study = _load(url)
    killed = study.trials[0]
    assert killed.state.name == "FAIL" and killed.user_attrs["interrupted"]
    rerun = [trial for trial in study.trials if trial.user_attrs.get("rerun_of") == 0]
    assert len(rerun) == 1 and rerun[0].params == killed.params and rerun[0].state.name == "COMPLETE"
    assert _trials(postgres, "killed") == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert not process_alive(victim.pid) and not process_alive(again.pid)


@pytest.fixture
def stopped_server_url():
    """The URL of a server that ran a moment ago, its database made, and is stopped now."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install 'mnist-dnn[tune]'")
    try:
        server = PostgresServer.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        url = server.create_database("study")
    finally:
        server.stop()
    assert not process_alive(server.pid)
    return url


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong password", 'password authentication failed for user "mnist"'),
        ("missing database", 'database "nosuch" does not exist'),
        ("stopped server", "Connection refused"),
    ],
)
def test_a_postgresql_storage_that_cannot_be_used_is_one_line_exit_2_and_nothing_written(
    request, cli_env, case, message
):
    if case == "stopped server":
        url = request.getfixturevalue("stopped_server_url")
    else:
        server = request.getfixturevalue("postgres")
        before = server.databases()
        url = server.url("postgres", "wrong") if case == "wrong password" else server.url("nosuch")
    config = _config(cli_env)
    result = CliRunner().invoke(main, _args(config, cli_env / "t", url))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("Error: --storage postgresql://mnist:***@127.0.0.1:")  # the password is not shown
    assert "Traceback" not in result.output
    assert sorted(path.name for path in cli_env.iterdir()) == ["small.toml"]  # no tune directory, no runs/
    if case != "stopped server":
        assert server.databases() == before  # the server is as it was: no database made

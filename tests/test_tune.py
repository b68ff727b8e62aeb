"""`mnist-dnn tune`: the search space, the study's bookkeeping, and real searches on a small MNIST subset."""

import csv
import dataclasses
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
from mnist_dnn.core.config import Config, apply_overrides
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.experiments.tune.loop import run_study, trials_at_once
from mnist_dnn.experiments.tune.results import TABLE_FILE
from mnist_dnn.experiments.tune.space import TunePlan, check_space, parse_dimension, search_config, trial_seeds
from mnist_dnn.experiments.tune.study import open_study, storage_url, trial_dir

from .conftest import REPO

SMALL = "[data]\ntrain_limit = 600\n[model]\nhidden_units = [64]\n"  # a trial's seeds train in seconds


def _fused(**overrides) -> Config:
    return apply_overrides(Config(), {"train.backend": "jax", "train.engine": "fused", **overrides})


# --- the search space (fast) ---------------------------------------------------------------------------------------


def test_a_space_reads_ranges_and_toml_choices():
    lr = parse_dimension("optimizer.learning_rate=log:1e-4..1e-1")
    assert (lr.kind, lr.low, lr.high) == ("log", 1e-4, 0.1)
    widths = parse_dimension("model.hidden_units=choice:[400,100],[800],[256,256]")
    assert widths.choices == ("[400,100]", "[800]", "[256,256]")
    assert widths.values == ([400, 100], [800], [256, 256])
    assert parse_dimension("optimizer.name=choice:adam,sgd,rmsprop").values == ("adam", "sgd", "rmsprop")


def test_a_log_range_on_an_integer_key_suggests_integers():
    (batch,) = check_space([parse_dimension("train.batch_size=log:16..512")], _fused())
    assert batch.integer
    (dropout,) = check_space([parse_dimension("model.dropout=float:0..0.7")], _fused())
    assert not dropout.integer


def test_a_space_may_search_augmentation_early_stopping_and_a_plateau_schedule():
    """Seeds that cannot share a program train as lone runs in step (bundles.train_in_step): nothing is refused."""
    texts = [
        "regularization.augment_blur=float:0..1.5",
        "regularization.augment_shift=int:0..2",
        "regularization.early_stopping=choice:true,false",
        "optimizer.schedule=choice:constant,plateau",
    ]
    space = check_space([parse_dimension(text) for text in texts], _fused())
    assert [dim.key for dim in space] == [text.partition("=")[0] for text in texts]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer.learning_rate=log:0..1", "log needs a range above 0"),
        ("train.batch_size=int:5..1", "the range '5..1' is empty"),
        ("model.nope=float:0..1", "unknown key 'model.nope'"),
        ("optimizer.name=choice:", "choice needs values"),
        ("model.dropout=float:0..1.5", "model.dropout: must be at most 0.99"),
        ("optimizer.name=choice:adam,adamw", "optimizer.name: expected one of"),
        ("model.dropout=uniform:0..1", "KIND one of log, float, int, choice"),
        ("train.seed=int:0..9", "fixed by the study"),
        ("model.dropout=int:0..1", "int needs an integer key"),
    ],
)
def test_bad_specs_are_one_line_exit_2_and_nothing_written(cli_env, text, message):
    result = CliRunner().invoke(main, ["tune", "--space", text, "--trials", "2", "--out", "tuned"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output
    assert list(cli_env.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0-99"], "--seeds: 100 seeds per trial, more than 64"),
        (["--out", "small.toml/tuned"], "small.toml is not a directory"),
        (["--out", "small.toml"], "exists and is not a directory"),
    ],
)
def test_bad_seeds_and_out_paths_are_one_line_exit_2(cli_env, args, message):
    (cli_env / "small.toml").write_text(SMALL)
    result = CliRunner().invoke(main, ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1", *args])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.output
    assert sorted(p.name for p in cli_env.iterdir()) == ["small.toml"]


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("bad.journal", "bad.journal: cannot use it as study 'tune': Expecting value"),
        ("small.toml/study.journal", "small.toml is not a directory"),
        (".", "expected an Optuna journal file, got a directory"),
        ("sqlite:////no/such/dir/x.db", "cannot open it: (sqlite3.OperationalError) unable to open database file"),
        ("nosuchdb://x", "cannot open it: Can't load plugin"),
    ],
)
def test_a_bad_storage_is_one_line_naming_it(cli_env, storage, message):
    (cli_env / "small.toml").write_text(SMALL)
    (cli_env / "bad.journal").write_text("not a journal\nnor is this\n")
    space = check_space([parse_dimension("model.dropout=float:0..0.5")], _fused())
    with pytest.raises(UserInputError) as caught:
        open_study(TunePlan(_fused(), space, (0,), 1), storage, "tune", "tpe", "median", 5, 1)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_without_optuna_tune_says_how_to_install_it(cli_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    result = CliRunner().invoke(main, ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1"])
    assert result.exit_code == 2
    assert result.stderr == "Error: tune needs Optuna: pip install 'mnist-dnn[tune]'\n"
    assert list(cli_env.iterdir()) == []


@pytest.mark.slow
def test_importing_the_cli_imports_no_optuna():
    code = "import sys, mnist_dnn.cli.app; print('optuna' in sys.modules, 'mnist_dnn.experiments.tune' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False False"


def test_a_trial_s_seeds_come_from_the_study_seed_and_its_number():
    assert trial_seeds(0, 3, [0, 1]) == trial_seeds(0, 3, [0, 1])
    assert len(set(trial_seeds(0, 3, [0, 1, 2]))) == 3
    assert trial_seeds(0, 3, [0]) != trial_seeds(0, 4, [0]) != trial_seeds(1, 4, [0])


def test_every_trial_validates_on_one_holdout_of_the_training_set():
    cfg = search_config(_fused(), study_seed=7)
    assert (cfg.validation.source, cfg.validation.fraction, cfg.validation.split_seed) == ("holdout", 0.1, 7)


def test_a_study_made_by_another_command_is_not_continued(tmp_path):
    base = _fused()
    space = check_space([parse_dimension("model.dropout=float:0..0.5")], base)
    open_study(TunePlan(base, space, (0,), 2), storage_url(tmp_path), "tune", "tpe", "median", 5, 1)
    other = check_space([parse_dimension("model.dropout=float:0..0.7")], base)
    with pytest.raises(UserInputError, match=r"made by another command \(its space differ"):
        open_study(TunePlan(base, other, (0,), 2), storage_url(tmp_path), "tune", "tpe", "median", 5, 1)


# --- real searches on a small MNIST subset (slow) ------------------------------------------------------------------


def _tune_args(config: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        "tune",
        "--config",
        str(config),
        "--space",
        "optimizer.learning_rate=log:1e-4..1e-1",
        "--space",
        "model.dropout=float:0..0.7",
        "--trials",
        str(trials),
        "--seeds",
        "0-1",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-plots",
        *extra,
    ]


def _side_by_side_args(config: Path, out: Path, trials: int, *extra: str) -> list[str]:
    """A search whose trials can go side by side: a random sampler, no pruner, learning rates, one seed each."""
    args = _tune_args(config, out, trials, "--sampler", "random", "--pruner", "none", *extra)
    dropout = args.index("model.dropout=float:0..0.7")  # part of the program: trials over it cannot share one
    del args[dropout - 1 : dropout + 1]
    args[args.index("--seeds") + 1] = "0"
    return args


def _small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def _history_without_timings(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as handle:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(handle)]


def _study(out: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(
        study_name="tune", storage=optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.journal")))
    )


@pytest.mark.slow
@pytest.mark.mnist
def test_the_same_command_twice_proposes_the_same_trials_with_the_same_results(cli_env):
    config = _small_config(cli_env)
    for out in ("a", "b"):
        result = CliRunner().invoke(main, _tune_args(config, cli_env / out, 3, "--pruner", "none"))
        assert result.exit_code == 0, result.output
    first, second = _study(cli_env / "a"), _study(cli_env / "b")
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    assert len({t.params["optimizer.learning_rate"] for t in first.trials}) == 3
    assert (cli_env / "a" / TABLE_FILE).read_text() == (cli_env / "b" / TABLE_FILE).read_text()
    for number in range(3):
        for seed in ("seed0", "seed1"):
            a, b = (trial_dir(cli_env / out, number) / seed for out in ("a", "b"))
            assert _history_without_timings(a) == _history_without_timings(b)
    assert (
        json.loads((cli_env / "a" / "best.json").read_text())["test_accuracy"]
        == json.loads((cli_env / "b" / "best.json").read_text())["test_accuracy"]
    )


class _TestSetSpy:
    """A Dataset whose test images record when they are first looked at."""

    def __init__(self, dataset, tune_dir: Path):
        self._dataset, self._tune_dir, self.finished_trials_at_first_read = dataset, tune_dir, None

    def __getattr__(self, name):
        if name in ("x_test", "y_test") and self.finished_trials_at_first_read is None:
            statuses = [json.loads(p.read_text())["status"] for p in self._tune_dir.glob("trials/*/*/status.json")]
            self.finished_trials_at_first_read = statuses
        return getattr(self._dataset, name)


@pytest.mark.slow
@pytest.mark.mnist
def test_the_test_set_is_never_read_before_the_final_retrain(cli_env, monkeypatch, mnist):
    import mnist_dnn.data.mnist

    spy = _TestSetSpy(mnist, cli_env / "t")
    monkeypatch.setattr(mnist_dnn.data.mnist, "load_mnist", lambda data_dir=None: spy)
    result = CliRunner().invoke(main, _tune_args(_small_config(cli_env), cli_env / "t", 2, "--pruner", "none"))
    assert result.exit_code == 0, result.output
    assert spy.finished_trials_at_first_read == ["complete"] * 4  # 2 trials x 2 seeds, all done before
    for metrics in (cli_env / "t").glob("trials/*/*/metrics.json"):
        assert not any(key.startswith("test") for key in json.loads(metrics.read_text()))
    assert all("test_accuracy" in json.loads(p.read_text()) for p in (cli_env / "t").glob("best/*/metrics.json"))


@pytest.mark.slow
@pytest.mark.mnist
def test_adam_at_rate_0_1_is_pruned_before_its_last_epoch_once_startup_trials_are_done(tmp_path, mnist):
    base = _fused(**{"data.train_limit": 1000, "train.epochs": 2})  # the paper's network, as in the README
    space = check_space([parse_dimension("optimizer.learning_rate=choice:0.001,0.1")], base)
    plan = TunePlan(base, space, (0, 1), trials=3)
    study = open_study(plan, storage_url(tmp_path), "tune", "tpe", "median", startup=2, warmup=1)
    for rate in ("0.001", "0.001", "0.1"):  # two start-up trials that learn, then the one stuck near chance
        study.enqueue_trial({"optimizer.learning_rate": rate})
    run_study(study, plan, mnist, tmp_path)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    stuck = study.trials[2]
    assert stuck.user_attrs["epochs"] == 1 and list(stuck.intermediate_values) == [1]
    assert stuck.intermediate_values[1] < 0.3 < min(t.intermediate_values[1] for t in study.trials[:2])
    for seed in ("seed0", "seed1"):
        metrics = json.loads((trial_dir(tmp_path, 2) / seed / "metrics.json").read_text())
        assert metrics["pruned"] and metrics["epochs_completed"] == 1


def _command(config: Path, out: Path, trials: int) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}
    return [sys.executable, "-m", "mnist_dnn", *_tune_args(config, out, trials, "--pruner", "none")], env


@pytest.mark.slow
@pytest.mark.mnist
def test_sigint_mid_study_then_the_same_command_continues_without_rerunning_finished_trials(tmp_path):
    out = tmp_path / "t"
    command, env = _command(_small_config(tmp_path), out, 4)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (trial_dir(out, 1) / "seed1").is_dir():  # trial 0 finished, trial 1 under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    before = _study(out)
    finished = {t.number: t.value for t in before.trials if t.state.name == "COMPLETE"}
    interrupted = [t for t in before.trials if t.state.name == "FAIL"]
    assert finished and len(interrupted) == 1 and interrupted[0].user_attrs["interrupted"]
    kept = {p: p.read_bytes() for n in finished for p in trial_dir(out, n).glob("*/metrics.json")}

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    after = _study(out)
    complete = [t for t in after.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len(after.trials) == 5  # the interrupted trial's number is not reused
    assert {t.number: t.value for t in complete if t.number in finished} == finished
    assert all(p.read_bytes() == content for p, content in kept.items())  # finished trials not trained again
    rerun = [t for t in after.trials if t.user_attrs.get("rerun_of") == interrupted[0].number]
    assert len(rerun) == 1 and rerun[0].params == interrupted[0].params
    with open(out / TABLE_FILE) as handle:
        assert sorted(int(row["trial"]) for row in csv.DictReader(handle)) == sorted(t.number for t in complete)


@pytest.mark.slow
@pytest.mark.mnist
def test_two_processes_on_one_storage_file_run_distinct_trials(tmp_path):
    out = tmp_path / "t"
    command, env = _command(_small_config(tmp_path), out, 4)
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err
    study = _study(out)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({t.number for t in complete}) == 4
    assert {t.user_attrs["owner"]["pid"] for t in complete} == {p.pid for p in processes}
    for trial in complete:  # each trial's runs were trained once, by the process that asked it
        for seed in ("seed0", "seed1"):
            assert json.loads((trial_dir(out, trial.number) / seed / "status.json").read_text())["status"] == "complete"
    assert (out / "best.json").exists()


@pytest.mark.slow
@pytest.mark.mnist
def test_executor_processes_runs_trials_in_pinned_worker_processes(tmp_path):
    out = tmp_path / "t"
    command, env = _command(_small_config(tmp_path), out, 4)
    result = subprocess.run(
        [*command, "--executor", "processes", "--workers", "2"], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    complete = [t for t in _study(out).trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert len({t.user_attrs["owner"]["pid"] for t in complete}) == 2  # both workers asked trials
    assert sorted(line.split("]")[0] for line in result.stderr.splitlines() if line.startswith("[trial")) == [
        f"[trial {t.number}" for t in complete
    ]


def _assert_every_trial_run_complete(out: Path, trials) -> None:
    for trial in trials:
        for seed in ("seed0", "seed1"):
            assert json.loads((trial_dir(out, trial.number) / seed / "status.json").read_text())["status"] == "complete"


@pytest.mark.slow
@pytest.mark.mnist
def test_executor_ray_runs_distinct_trials_in_ray_tasks_and_completes_the_study(tmp_path):
    out = tmp_path / "t"
    command, env = _command(_small_config(tmp_path), out, 4)
    process = subprocess.Popen(
        [*command, "--executor", "ray", "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = (stream.decode() for stream in process.communicate(timeout=900))
    assert process.returncode == 0, stderr
    assert "Ray: started locally" in stderr and "2 Ray task(s) asking trials" in stderr
    trials = _study(out).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == len(complete) == 4 and len({t.number for t in complete}) == 4
    owners = {t.user_attrs["owner"]["pid"] for t in complete}
    assert len(owners) == 2 and process.pid not in owners  # both Ray tasks asked trials, the driver none
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    _assert_every_trial_run_complete(out, complete)  # written through the tune directory by the tasks
    with open(out / TABLE_FILE) as handle:
        assert sorted(int(row["trial"]) for row in csv.DictReader(handle)) == [0, 1, 2, 3]
    assert stdout.startswith("| rank | trial | state | epochs | val accuracy (mean ± std) |")
    assert len([line for line in stdout.splitlines() if line.startswith("| ") and "complete" in line]) == 4
    assert json.loads((out / "best.json").read_text())["trial"] in {t.number for t in complete}


@pytest.mark.slow
@pytest.mark.mnist
def test_a_ray_task_given_two_cores_trains_a_trials_seeds_on_two_devices_with_the_numbers_of_local_tune(tmp_path):
    """--workers 1 on a Ray of this machine's 2 CPUs: the task asks both; the seeds train on cpu:0 and cpu:1."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs for a task of two cores")
    runs = {}
    for executor in (["--executor", "ray", "--workers", "1"], ["--cores", "2"]):
        out = tmp_path / executor[1]
        command, env = _command(_small_config(tmp_path), out, 1)
        result = subprocess.run([*command, *executor], env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        seeds = [trial_dir(out, 0) / seed for seed in ("seed0", "seed1")]
        runs[executor[1]] = [
            (json.loads((run / "metrics.json").read_text())["timings"]["device"], _history_without_timings(run))
            for run in seeds
        ]
    assert [device for device, _ in runs["ray"]] == ["cpu:0", "cpu:1"]
    assert runs["ray"] == runs["2"]
    # the best setting's retrain: its two seeds as a bundle, side by side on the two cores, as a sweep's
    retrained = [json.loads((tmp_path / "2" / "best" / s / "metrics.json").read_text()) for s in ("seed0", "seed1")]
    assert {m["timings"]["device"] for m in retrained} == {"cpu:0", "cpu:1"}
    assert [m["timings"]["bundle_members"] for m in retrained] == [2, 2]


def test_trials_go_side_by_side_only_where_the_study_comes_out_the_same():
    """A random sampler, no pruner and a space of one program: as many trials as fill the cores; else one."""
    rates = check_space([parse_dimension("optimizer.learning_rate=log:1e-4..1e-1")], _fused())
    plan = TunePlan(_fused(), rates, seeds=(0, 1, 2), trials=10)
    assert trials_at_once(plan, "random", False, 8) == 3  # 9 seeds' runs on 8 cores: none idle
    assert trials_at_once(plan, "random", False, 3) == 1  # the seeds fill the cores already
    assert trials_at_once(plan, "tpe", False, 8) == 1  # TPE draws from the trials told before
    assert trials_at_once(plan, "random", True, 8) == 1  # a pruner compares a trial with those before it
    for other in ("model.dropout=float:0..0.5", "optimizer.schedule=choice:'constant','cosine'"):
        space = check_space([*rates, parse_dimension(other)], _fused())
        assert trials_at_once(dataclasses.replace(plan, space=space), "random", False, 8) == 1  # two programs


def _two_trials_side_by_side(monkeypatch):
    """(study, plan) for run_study to train 2 trials x 2 seeds side by side through a stand-in for train_in_step:
    the first trial's seeds both diverge at epoch 1, the second's train 2 epochs."""
    import optuna

    from mnist_dnn.experiments.tune import loop

    def train_in_step(cfgs, run_dirs, dataset, report, **kwargs):
        assert len(cfgs) == 4 and [cfg.train.seed for cfg in cfgs][::2] != [cfg.train.seed for cfg in cfgs][1::2]
        first = [{"epoch": 1, "val_accuracy": accuracy} for accuracy in (0.1, 0.2, 0.5, 0.7)]
        second = first[:2] + [{"epoch": 2, "val_accuracy": accuracy} for accuracy in (0.6, 0.8)]
        assert not report(1, first) and not report(2, second)
        final = first[:2] + second[2:]
        return [{"validation_accuracy": r["val_accuracy"], "epochs_completed": r["epoch"]} for r in final], False

    monkeypatch.setattr(loop, "train_in_step", train_in_step)
    monkeypatch.setattr(loop, "trials_at_once", lambda *args: 2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    space = check_space([parse_dimension("optimizer.learning_rate=log:1e-4..1e-1")], _fused())
    return study, TunePlan(_fused(), space, seeds=(0, 1), trials=2)


def test_trials_side_by_side_each_report_and_score_their_own_seeds_and_a_stopped_trial_no_more(monkeypatch, tmp_path):
    study, plan = _two_trials_side_by_side(monkeypatch)
    run_study(study, plan, None, tmp_path, sampler="random")
    first, second = study.trials
    assert first.intermediate_values == {1: pytest.approx(0.15)}  # its seeds stopped: nothing at epoch 2
    assert second.intermediate_values == {1: pytest.approx(0.6), 2: pytest.approx(0.7)}
    assert (first.value, second.value) == (pytest.approx(0.15), pytest.approx(0.7))
    assert (first.user_attrs["epochs"], second.user_attrs["epochs"]) == (1, 2)


def test_a_ctrl_c_while_the_first_of_two_finished_trials_is_reported_leaves_neither_running(monkeypatch, tmp_path):
    def interrupted(frozen):
        raise KeyboardInterrupt

    study, plan = _two_trials_side_by_side(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_study(study, plan, None, tmp_path, interrupted, sampler="random")
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]


@pytest.mark.slow
@pytest.mark.mnist
def test_trials_side_by_side_on_spare_cores_make_the_study_of_one_trial_after_another(tmp_path):
    """--sampler random --pruner none over learning rates, one seed a trial on 2 cores: 2 trials at once, whose
    settings, values, reports and runs are those of the study run trial by trial on one core."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    config, found, logs = _small_config(tmp_path), {}, {}
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}
    for cores in ("1", "2"):
        out = tmp_path / cores
        args = _side_by_side_args(config, out, 3, "--epochs", "2")
        result = subprocess.run(
            [sys.executable, "-m", "mnist_dnn", *args, "--cores", cores], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        logs[cores], found[cores], devices = result.stderr, [], set()
        for trial in _study(out).trials:
            seeds = [trial_dir(out, trial.number) / "seed0"]
            metrics = [json.loads((run / "metrics.json").read_text()) for run in seeds]
            devices |= {m["timings"]["device"] for m in metrics} if trial.number < 2 else set()
            runs = [
                (_history_without_timings(run), {k: v for k, v in m.items() if k != "timings"})
                for run, m in zip(seeds, metrics, strict=True)
            ]
            found[cores].append((trial.state.name, trial.params, trial.value, trial.intermediate_values, runs))
        assert len(devices) == int(cores)  # the first two trials: on both cores at once, or on one
    assert "2 trials side by side" in logs["2"] and "trials side by side" not in logs["1"]
    assert [state for state, *_ in found["2"]] == ["COMPLETE"] * 3
    assert found["2"] == found["1"]


@pytest.mark.slow
@pytest.mark.mnist
def test_sigint_to_trials_side_by_side_fails_both_and_the_same_command_asks_both_settings_again(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    out = tmp_path / "t"
    args = _side_by_side_args(_small_config(tmp_path), out, 4, "--epochs", "300")  # the trials are stopped mid-way
    command = [sys.executable, "-m", "mnist_dnn", *args, "--cores", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not all((trial_dir(out, n) / "seed0" / "history.csv").is_file() for n in (0, 1)):  # both under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "2 trials side by side" in err
    interrupted = _study(out).trials
    assert [(t.number, t.state.name, t.user_attrs.get("interrupted")) for t in interrupted] == [
        (0, "FAIL", True),
        (1, "FAIL", True),
    ]

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    after = _study(out).trials
    assert [t.state.name for t in after] == ["FAIL", "FAIL", *["COMPLETE"] * 4]  # numbers 0 and 1 are not reused
    reruns = {t.user_attrs.get("rerun_of"): t.params for t in after[2:]}
    assert reruns[0] == interrupted[0].params and reruns[1] == interrupted[1].params


@pytest.mark.slow
@pytest.mark.mnist
def test_sigint_to_a_ray_study_fails_its_running_trials_and_the_same_command_continues(tmp_path):
    out = tmp_path / "t"
    command, env = _command(_small_config(tmp_path), out, 4)
    command = [*command, "--executor", "ray", "--workers", "2", "--epochs", "300"]  # a trial is stopped mid-way
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600

    def a_later_trial_is_running() -> bool:
        """A trial finished (its files are written) and one asked after the first two is training.

        Waiting for trial 2's files alone raced on a loaded machine: trial 3, asked beside it, had
        finished too by the time the signal landed, and nothing was left to interrupt.
        """
        if not any((trial_dir(out, n) / "seed0" / "history.csv").is_file() for n in (0, 1)):
            return False
        return any(t.number >= 2 and t.state.name == "RUNNING" for t in _study(out).trials)

    while not a_later_trial_is_running():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "Ray task(s): each fails its trial" in err and "unexpected system state" not in err, err
    before = _study(out)
    finished = {t.number: t.value for t in before.trials if t.state.name == "COMPLETE"}
    interrupted = [t for t in before.trials if t.state.name == "FAIL"]
    assert finished and interrupted and all(t.user_attrs["interrupted"] for t in interrupted)  # failed by the task
    assert len(finished) + len(interrupted) == len(before.trials)  # no trial left running
    kept = {p: p.read_bytes() for n in finished for p in trial_dir(out, n).glob("*/metrics.json")}

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    after = _study(out)
    complete = [t for t in after.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len(after.trials) == 4 + len(interrupted)
    assert {t.number: t.value for t in complete if t.number in finished} == finished
    assert all(p.read_bytes() == content for p, content in kept.items())  # finished trials not trained again
    for trial in interrupted:
        (rerun,) = [t for t in after.trials if t.user_attrs.get("rerun_of") == trial.number]
        assert rerun.params == trial.params
    _assert_every_trial_run_complete(out, complete)


def test_executor_ray_without_ray_installed_is_one_line_exit_2(cli_env, monkeypatch):
    from mnist_dnn.experiments.ray_cluster import RAY_INSTALL_HINT

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    args = ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1", "--executor", "ray", "--out", "t"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr == f"Error: --executor ray: Ray is not installed; install it with {RAY_INSTALL_HINT}\n"
    assert list(cli_env.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers: only with --executor processes or ray"),
        (["--executor", "processes", "--ray-address", "auto"], "--ray-address: only with --executor ray"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: no Ray head answers"),
    ],
)
def test_tune_executor_options_are_checked_before_anything_is_written(cli_env, args, message):
    result = CliRunner().invoke(main, ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1", *args])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output, result.output
    assert list(cli_env.iterdir()) == []


def test_the_history_figure_marks_pruned_trials_and_the_best_so_far():
    from mnist_dnn.figures.diagnostics import plot_optimization_history, plot_param_importances

    rows = [
        {"trial": 0, "state": "complete", "val_accuracy_mean": 0.6},
        {"trial": 1, "state": "pruned", "val_accuracy_mean": 0.1},
        {"trial": 2, "state": "complete", "val_accuracy_mean": 0.5},
        {"trial": 3, "state": "complete", "val_accuracy_mean": 0.9},
    ]
    ax = plot_optimization_history(rows).axes[0]
    complete, pruned = ax.collections
    assert complete.get_offsets().tolist() == [[0, 0.6], [2, 0.5], [3, 0.9]]
    assert pruned.get_offsets().tolist() == [[1, 0.1]]
    (best,) = ax.lines
    assert list(best.get_ydata()) == [0.6, 0.6, 0.9]
    bars = plot_param_importances({"model.dropout": 0.3, "optimizer.learning_rate": 0.7}).axes[0]
    assert [label.get_text() for label in bars.get_yticklabels()] == ["model.dropout", "optimizer.learning_rate"]
    assert [patch.get_width() for patch in bars.patches] == [0.3, 0.7]


@pytest.mark.slow
def test_a_trial_whose_process_died_is_failed_and_its_setting_asked_again(tmp_path):
    import socket

    from mnist_dnn.experiments.tune.space import suggest
    from mnist_dnn.experiments.tune.study import recover

    base = _fused()
    space = check_space([parse_dimension("model.dropout=float:0..0.5")], base)
    study = open_study(TunePlan(base, space, (0,), 2), storage_url(tmp_path), "tune", "tpe", "median", 5, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed, alive = study.ask(), study.ask()
    for trial, pid in ((killed, dead.pid), (alive, os.getppid())):
        suggest(trial, space[0])
        trial.set_user_attr("owner", {"pid": pid, "host": socket.gethostname()})
    assert recover(study) == [killed.number]
    states = {t.number: t.state.name for t in study.trials}
    assert states == {killed.number: "FAIL", alive.number: "RUNNING", 2: "WAITING"}
    again = study.trials[2]
    assert again.system_attrs["fixed_params"] == killed.params and again.user_attrs["rerun_of"] == killed.number
    assert recover(study) == []  # asked again once, not once per run


def test_a_trial_just_asked_by_another_process_is_not_failed_before_it_records_its_owner(tmp_path, monkeypatch):
    from mnist_dnn.experiments.tune import study as tune_study
    from mnist_dnn.experiments.tune.study import recover

    space = check_space([parse_dimension("model.dropout=float:0..0.5")], _fused())
    study = open_study(TunePlan(_fused(), space, (0,), 2), storage_url(tmp_path), "tune", "tpe", "median", 5, 1)
    asked = study.ask()  # a Ray task starting beside this one, not yet at set_user_attr("owner")
    assert recover(study) == [] and study.trials[asked.number].state.name == "RUNNING"
    monkeypatch.setattr(tune_study, "OWNERLESS_S", -1.0)  # ...or one whose process died before it could record itself
    recover(study)
    assert study.trials[asked.number].state.name == "FAIL"


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_processes_sharing_a_study_draw_distinct_settings_and_a_fresh_study_the_same_ones(tmp_path, sampler):
    from mnist_dnn.experiments.tune.loop import ask_setting

    base = _fused()
    space = check_space([parse_dimension("model.dropout=float:0..0.7")], base)
    plan = TunePlan(base, space, (0,), 4)
    drawn = {}
    for name in ("first", "again"):
        url = storage_url(tmp_path / name)
        one, two = (open_study(plan, url, "tune", sampler, "median", 5, 1) for _ in range(2))  # two processes
        drawn[name] = [ask_setting(study, plan, sampler)[1]["model.dropout"] for study in (one, two, two, one)]
    assert len(set(drawn["first"])) == 4
    assert drawn["again"] == drawn["first"]

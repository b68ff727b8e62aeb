"""Bundles: which runs of a sweep share one compiled program, and that sharing it changes no run's files."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_dnn.core.config import load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.experiments.bundles import Bundle, plan_bundles, train_bundle, train_in_step
from mnist_dnn.experiments.experiment import train_and_evaluate
from mnist_dnn.experiments.sweep import parse_axis, plan_sweep
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from tests.conftest import REPO
from tests.test_train import _separable_digits, write_separable_idx

FUSED = {"train.backend": "jax", "train.engine": "fused"}


def _plan(axes=(), seeds=(0, 1), folds=None, **overrides):
    base = load_config(None, {**FUSED, **overrides})
    return plan_sweep({"paper": base}, [parse_axis(text) for text in axes], list(seeds), folds)


def _grouped(plan, **kwargs):
    return [[run.directory for run in bundle.members] for bundle in plan_bundles(plan, **kwargs)]


# --- which runs bundle together (plans only, no training) ---


def test_a_constant_rate_by_seed_grid_is_one_bundle():
    plan = _plan(["optimizer.learning_rate=1e-4,1e-3,1e-2,1e-1"], seeds=(0, 1, 2))
    assert _grouped(plan) == [[run.directory for run in plan]]


def test_initial_weight_distributions_share_a_program():
    plan = _plan(["model.kernel_initializer=glorot_uniform,uniform", "model.init_scale=0.05,0.1"])
    assert len(plan_bundles(plan)) == 1


def test_a_learning_rate_schedule_splits_rates_but_keeps_seeds_together():
    plan = _plan(["optimizer.learning_rate=1e-3,1e-2"], **{"optimizer.schedule": "step"})
    assert _grouped(plan) == [
        ["learning_rate-0.001__seed0", "learning_rate-0.001__seed1"],
        ["learning_rate-0.01__seed0", "learning_rate-0.01__seed1"],
    ]


@pytest.mark.parametrize(
    "axis",
    [
        "model.hidden_units=[400,100],[800]",  # another architecture
        "model.dropout=0,0.5",  # a constant of the program
        "optimizer.name=adam,sgd",
        "regularization.l2=0,0.0001",
        "train.batch_size=64,128",
        "train.epochs=1,2",
        "preprocess.method=scale,standardize",  # other inputs
        "data.train_limit=100,200",
    ],
)
def test_anything_the_program_or_its_data_depends_on_splits_settings(axis):
    plan = _plan([axis])
    assert _grouped(plan) == [[run.directory for run in plan[:2]], [run.directory for run in plan[2:]]]


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.engine": "fit"},
        {"regularization.early_stopping": True},
        {"optimizer.schedule": "plateau"},
        {"regularization.augment_shift": 2},
        {"regularization.augment_rotation": 10.0},
    ],
)
def test_runs_steered_or_fed_alone_are_bundles_of_one(overrides):
    plan = _plan(["optimizer.learning_rate=1e-3,1e-2"], **overrides)
    assert _grouped(plan) == [[run.directory] for run in plan]


def test_folds_share_a_split_seed_so_seeds_of_a_fold_bundle_together():
    plan = _plan(["model.dropout=0,0.5"], seeds=(3, 4), folds=2)
    assert {run.config.validation.split_seed for run in plan} == {3}  # the sweep's first seed
    assert _grouped(plan) == [
        ["dropout-0__seed3_fold1", "dropout-0__seed4_fold1"],
        ["dropout-0__seed3_fold2", "dropout-0__seed4_fold2"],
        ["dropout-0.5__seed3_fold1", "dropout-0.5__seed4_fold1"],
        ["dropout-0.5__seed3_fold2", "dropout-0.5__seed4_fold2"],
    ]
    holdout = _plan(["optimizer.learning_rate=1e-3,1e-2"], **{"validation.source": "holdout"})
    assert len(plan_bundles(holdout)) == 1
    own = _plan([], **{"validation.source": "holdout", "validation.split_seed": 9})
    assert [run.config.validation.split_seed for run in own] == [9, 9]  # a config's own split seed is kept


def test_the_paper_validation_leaves_the_config_as_a_lone_run_writes_it():
    plan = _plan(["optimizer.learning_rate=1e-3,1e-2"])
    assert all(run.config.validation.split_seed is None for run in plan)


def test_bundles_follow_plan_order_and_can_be_capped():
    plan = _plan(["model.dropout=0.5,0", "optimizer.learning_rate=1e-3,1e-2"], seeds=(0, 1, 2))
    grouped = _grouped(plan)
    assert [len(members) for members in grouped] == [6, 6]
    assert grouped[0][0] == plan[0].directory and grouped[1][0] == plan[6].directory
    assert [len(members) for members in _grouped(plan, max_members=4)] == [3, 3, 3, 3]
    assert sum(_grouped(plan, max_members=4), []) == sum(grouped, [])
    assert _grouped(plan) == _grouped(plan)


# --- training a bundle (small synthetic data) ---


def synthetic_dataset():
    x_train, y_train = _separable_digits(512, 0)
    x_test, y_test = _separable_digits(128, 1)
    return Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {"train-images": "0" * 64})


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset()


def _lr_seed_bundle(optimizer="adam", rates="0.001,0.01", epochs=2):
    plan = _plan(
        [f"optimizer.learning_rate={rates}"], seeds=(0, 1), **{"optimizer.name": optimizer, "train.epochs": epochs}
    )
    (bundle,) = plan_bundles(plan)
    return bundle


def _alone(run, dataset, run_dir):
    run_dir.mkdir(parents=True)
    return train_and_evaluate(run.config, dataset, run_dir, 0)


def _files(run_dir):
    """Every file's bytes, timings out of history.csv and metrics.json, model.keras as weights, event files by place."""
    import keras

    files = {}
    for path in sorted(run_dir.iterdir()):
        if path.name == runs.HISTORY_FILE:
            files[path.name] = {k: v for k, v in records.read_history(path).items() if k not in records.TIMING_COLUMNS}
        elif path.name in (runs.METRICS_FILE, runs.STATUS_FILE):  # a time: metrics' timings, status' started_at
            times = ("timings", "started_at")
            files[path.name] = {k: v for k, v in json.loads(path.read_text()).items() if k not in times}
        elif path.name == runs.MODEL_FILE:
            files[path.name] = [w.tobytes() for w in keras.saving.load_model(path).get_weights()]
        elif path.is_dir():  # TensorBoard's event files embed times and the host: where they are, not their bytes
            files[path.name] = sorted(p.parent.relative_to(path).as_posix() for p in path.rglob("events.*"))
        else:
            files[path.name] = path.read_bytes()
    return files


@pytest.mark.slow
def test_a_bundle_run_one_after_another_is_its_lone_run_exactly(dataset, tmp_path):
    """Sequential members go through the very program a lone run compiles: identical files, timings aside."""
    bundle = _lr_seed_bundle()
    dirs = [tmp_path / "bundle" / run.directory for run in bundle.members]
    finished = []
    results = train_bundle(bundle, dirs, dataset, lambda k, m: finished.append(k), mode="sequential")
    assert finished == [0, 1, 2, 3]
    for run, run_dir, metrics in zip(bundle.members, dirs, results, strict=True):
        alone = _alone(run, dataset, tmp_path / "alone" / run.directory)
        assert metrics["test_accuracy"] == alone["test_accuracy"]
        assert _files(run_dir) == _files(tmp_path / "alone" / run.directory)
        assert metrics["timings"]["bundle_members"] == 4
    assert len({m["test_loss"] for m in results}) == 4  # four different runs, not one four times


@pytest.fixture(scope="module")
def lone_runs(dataset, tmp_path_factory):
    """Each member of _lr_seed_bundle trained by itself, as `train` does: directory name -> run directory."""
    root = tmp_path_factory.mktemp("alone")
    for run in _lr_seed_bundle().members:
        _alone(run, dataset, root / run.directory)
    return {run.directory: root / run.directory for run in _lr_seed_bundle().members}


def _on_devices(devices, out, what="bundle", interrupt=()):
    """tests/on_devices.py in a process of its own (XLA fixes the CPU devices as JAX starts); its report."""
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = [sys.executable, "-m", "tests.on_devices", str(devices), str(out), what, *map(str, interrupt)]
    subprocess.run(command, cwd=REPO, env=env, check=True, timeout=900)
    return json.loads((out / "report.json").read_text())


PARENT_THEN_CHILD = """
import os, subprocess, sys
from mnist_dnn.core.backend import activate_backend
activate_backend("jax", cpu_devices=3)  # as an in-process sweep on 3 cores does
if len(sys.argv) > 1:  # the script then sets XLA_FLAGS itself for the child
    os.environ["XLA_FLAGS"] = sys.argv[1]
child = "from mnist_dnn.core.backend import activate_backend; activate_backend('jax', cpu_devices=1); import jax; " \\
    "print(jax.device_count())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout.strip())
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("users_flags", "rewritten", "child_devices"),
    [
        (None, None, 1),
        ("--xla_force_host_platform_device_count=2", None, 2),
        (None, "--xla_force_host_platform_device_count=3", 3),  # the very flag the parent had added, the user's now
    ],
)
def test_the_device_count_a_process_chose_does_not_reach_its_children_but_the_users_does(
    users_flags, rewritten, child_devices
):
    """A script that ran a sweep in-process and then starts `mnist-dnn ... --cores 1` gets one device, not three;
    a device count the user put in XLA_FLAGS, before the sweep or after it, still wins."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MNIST_DNN_ADDED_XLA_FLAGS")}
    env.update({"XLA_FLAGS": users_flags} if users_flags else {})
    command = [sys.executable, "-c", PARENT_THEN_CHILD, *([rewritten] if rewritten else [])]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(child_devices)]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2, 3])
def test_a_bundle_side_by_side_on_cpu_devices_is_its_lone_runs_exactly(lone_runs, tmp_path, devices):
    """Each member on a JAX CPU device of its own, all at once (4 members, 3 devices: one waits its turn)."""
    report = _on_devices(devices, tmp_path, "bundle")
    assert report["devices"] == devices and sorted(report["finished"]) == [0, 1, 2, 3]
    assert report["mode"] == ("devices" if devices > 1 else "sequential")
    places = set()
    for name, alone_dir in lone_runs.items():
        assert _files(tmp_path / name) == _files(alone_dir)
        timings = records.read_metrics(tmp_path / name)["timings"]
        assert timings["bundle_mode"] == report["mode"] and timings["bundle_members"] == 4
        places.add(timings["device"])
    assert places == {f"cpu:{k}" for k in range(devices)}  # every device trained a member
    assert records.read_metrics(lone_runs[next(iter(lone_runs))])["timings"]["device"] == "cpu:0"


@pytest.mark.slow
def test_an_interrupted_bundle_on_devices_continues_to_its_lone_runs_exactly(lone_runs, tmp_path):
    """Ctrl-C after the second member's first epoch on 2 devices: each member resumes after the epochs it recorded.

    Members on devices do not wait for each other, so the first may be an epoch ahead of the
    second when the Ctrl-C lands (it records the epoch it was running first); the last two
    had not started.
    """
    second = _lr_seed_bundle().members[1].directory
    assert _on_devices(2, tmp_path, "bundle", interrupt=(second, 1))["interrupted"]
    assert [lifecycle.read_status(tmp_path / name)["status"] for name in lone_runs] == ["interrupted"] * 4
    kept = [len(records.read_history(tmp_path / name / runs.HISTORY_FILE)["epoch"]) for name in list(lone_runs)[:2]]
    assert kept[0] in (1, 2) and kept[1] == 1
    report = _on_devices(2, tmp_path, "bundle")
    assert not report["interrupted"] and sorted(report["finished"]) == [0, 1, 2, 3]
    resumed = [records.read_metrics(tmp_path / name)["timings"]["resumed_at_epoch"] for name in lone_runs]
    assert resumed == [*kept, 0, 0]
    for name, alone_dir in lone_runs.items():
        assert _files(tmp_path / name) == _files(alone_dir)


@pytest.mark.slow
def test_a_diverged_member_on_devices_stops_alone(tmp_path):
    """Rate 1e30 on the device beside a healthy member: it stops where its lone run would; the others train on."""
    _on_devices(2, tmp_path, "diverging")
    for run in _lr_seed_bundle(rates="0.001,1e30", epochs=3).members:
        status = lifecycle.read_status(tmp_path / run.directory)
        epochs = len(records.read_history(tmp_path / run.directory / runs.HISTORY_FILE)["epoch"])
        assert status["status"] == "complete"
        if run.config.optimizer.learning_rate < 1:
            assert "diverged" not in status and epochs == 3
        else:
            assert status["diverged"] is True and status["diverged_epoch"] == epochs < 3


@pytest.mark.slow
def test_a_vmapped_bundle_matches_its_lone_runs_within_the_stated_tolerance(dataset, tmp_path):
    """vmap batches the matrix products, so the last bits differ.

    Metrics agree to 1e-3 (Adam magnifies rounding on near-zero second moments), weights under SGD to 1e-5.
    """
    for optimizer, rates in (("adam", "0.001,0.01"), ("sgd", "0.05,0.1")):
        bundle = _lr_seed_bundle(optimizer, rates)
        dirs = [tmp_path / optimizer / "bundle" / run.directory for run in bundle.members]
        results = train_bundle(bundle, dirs, dataset, mode="vmap")
        for run, run_dir, metrics in zip(bundle.members, dirs, results, strict=True):
            alone_dir = tmp_path / optimizer / "alone" / run.directory
            alone = _alone(run, dataset, alone_dir)
            assert metrics["timings"]["bundle_mode"] == "vmap"
            assert metrics["test_accuracy"] == pytest.approx(alone["test_accuracy"], abs=1e-3)
            assert metrics["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-3)
            ours, theirs = (
                records.read_history(run_dir / runs.HISTORY_FILE),
                records.read_history(alone_dir / runs.HISTORY_FILE),
            )
            np.testing.assert_allclose(ours["val_loss"], theirs["val_loss"], rtol=1e-3)
            if optimizer == "sgd":
                for a, b in zip(_weights(run_dir), _weights(alone_dir), strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            assert _files(run_dir).keys() == _files(alone_dir).keys()


def _weights(run_dir):
    import keras

    return keras.saving.load_model(run_dir / runs.MODEL_FILE).get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_an_interrupted_bundle_continues_from_its_members_checkpoints(dataset, tmp_path, monkeypatch, mode):
    """Ctrl-C in the second member's second epoch: the first stays finished, the second resumes after epoch 1."""
    from mnist_dnn.training.checkpoint import Checkpointer

    bundle = _lr_seed_bundle(rates="0.001,0.01", epochs=3)
    members = bundle.members[:3]
    bundle = Bundle(members)
    dirs = [tmp_path / "bundle" / run.directory for run in members]
    original = Checkpointer.__call__

    def interrupt_after(self, epoch, metrics):
        original(self, epoch, metrics)
        if self.run_dir == dirs[1] and epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointer, "__call__", interrupt_after)
    with pytest.raises(KeyboardInterrupt):
        train_bundle(bundle, dirs, dataset, mode=mode)
    monkeypatch.setattr(Checkpointer, "__call__", original)
    statuses = [lifecycle.read_status(run_dir)["status"] for run_dir in dirs]
    if mode == "sequential":
        assert statuses == ["complete", "interrupted", "interrupted"]
    else:  # all advance together: none finished yet
        assert statuses == ["interrupted", "interrupted", "interrupted"]
    finished = []
    results = train_bundle(bundle, dirs, dataset, lambda k, m: finished.append(k), mode=mode)
    resumed_at = [m["timings"].get("resumed_at_epoch") for m in results]
    assert finished == [0, 1, 2] if mode == "sequential" else sorted(finished) == [0, 1, 2]
    # sequential: the first member was not trained again; vmap: the third had not written epoch 2 at Ctrl-C
    assert resumed_at == ([0, 2, 0] if mode == "sequential" else [2, 2, 1])
    uninterrupted = train_bundle(bundle, [tmp_path / "again" / r.directory for r in members], dataset, mode=mode)
    for run_dir, ours, theirs in zip(dirs, results, uninterrupted, strict=True):
        assert lifecycle.read_status(run_dir)["status"] == "complete"
        if mode == "sequential":  # the very files of a bundle never interrupted
            assert _files(run_dir) == _files(tmp_path / "again" / run_dir.name)
        else:  # a member resumed alone ran epochs outside the vmapped program: the vmap tolerance
            assert ours["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-3)


def test_train_bundle_refuses_what_is_not_a_run_and_members_that_cannot_share(dataset, tmp_path):
    bundle = _lr_seed_bundle()
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"stray: holds notes.txt but no status.json"):
        train_bundle(Bundle(bundle.members[:1]), [stray], dataset)
    with pytest.raises(ValueError, match="4 members but 1 run directories"):
        train_bundle(bundle, [stray], dataset)
    mixed = Bundle((*_plan([], **{"model.dropout": 0.2}), *_plan([])))
    with pytest.raises(ValueError, match="must share one program"):
        train_bundle(mixed, [tmp_path / f"m{k}" for k in range(4)], dataset)
    assert (stray / "notes.txt").read_text() == "mine" and not (tmp_path / "m0").exists()


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bands-idx")
    return write_separable_idx(directory, 512, 128)


@pytest.mark.slow
def test_two_sweeps_of_the_same_plan_write_the_same_files(idx_dir, tmp_path):
    """Two `mnist-dnn sweep` of one plan: every file the same, timings aside; holdout split from one seed."""
    from click.testing import CliRunner

    from mnist_dnn.cli.app import main

    sweeps = [tmp_path / "first", tmp_path / "second"]
    for out in sweeps:
        args = ["sweep", "--data-dir", str(idx_dir), "--epochs", "1", "--seeds", "1-2", "--no-plots", "-q"]
        args += ["--set", "optimizer.learning_rate=0.001,0.01", "--set", "validation.source=holdout"]
        result = CliRunner().invoke(main, [*args, "--out", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    first, second = sweeps
    assert (first / "sweep.json").read_bytes() == (second / "sweep.json").read_bytes()
    assert (first / "summary.csv").read_bytes() == (second / "summary.csv").read_bytes()
    run_dirs = sorted(p.name for p in first.iterdir() if p.is_dir())
    assert run_dirs == sorted(p.name for p in second.iterdir() if p.is_dir()) and len(run_dirs) == 4
    for name in run_dirs:
        assert _files(first / name) == _files(second / name)
        assert "split_seed = 1" in (first / name / runs.CONFIG_FILE).read_text()  # the sweep's first seed
        assert json.loads((first / name / runs.METRICS_FILE).read_text())["validation"]["source"] == "holdout"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_a_diverged_member_of_a_bundle_is_marked_as_a_lone_run_is(dataset, tmp_path, mode):
    """Rate 1e30 overflows at once: the member ends complete and diverged; one trained alone also stops there."""
    bundle = _lr_seed_bundle(rates="0.001,1e30", epochs=3)
    dirs = [tmp_path / run.directory for run in bundle.members]
    results = train_bundle(bundle, dirs, dataset, mode=mode)
    for run, run_dir, metrics in zip(bundle.members, dirs, results, strict=True):
        status = json.loads((run_dir / runs.STATUS_FILE).read_text())
        epochs = len(records.read_history(run_dir / runs.HISTORY_FILE)["epoch"])
        if run.config.optimizer.learning_rate < 1:
            assert "diverged" not in status and "diverged" not in metrics and epochs == 3
            continue
        assert status["status"] == "complete" and status["diverged"] is True and metrics["diverged"] is True
        if mode == "sequential":  # alone through the program it stops, as `train` does
            assert status["diverged_epoch"] == epochs < 3


# --- train_in_step: a tune trial's seeds, epoch by epoch, validation only ---


def _holdout_seeds(epochs=2, seeds=(0, 1)):
    holdout = {"validation.source": "holdout", "validation.split_seed": 7, "train.epochs": epochs}
    return [load_config(None, {**FUSED, **holdout, "train.seed": seed}) for seed in seeds]


def _without_timings(run_dir):
    history = records.read_history(run_dir / runs.HISTORY_FILE)
    return {k: v for k, v in history.items() if k not in records.TIMING_COLUMNS}


@pytest.mark.slow
def test_runs_trained_in_step_one_after_another_are_their_lone_runs_exactly(dataset, tmp_path):
    """Epoch by epoch in step changes nothing a run computes: each is its lone `train`, and on_epoch sees its rows."""
    cfgs = _holdout_seeds()
    dirs = [tmp_path / "step" / f"seed{cfg.train.seed}" for cfg in cfgs]
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, [m["val_accuracy"] for m in metrics]))
        return False

    no_test_set = Dataset(dataset.x_train, dataset.y_train, None, None, "bands", "test", Path("."), dataset.checksums)
    results, stopped = train_in_step(cfgs, dirs, no_test_set, on_epoch, mode="sequential")
    assert not stopped and [epoch for epoch, _ in seen] == [1, 2]
    for k, (cfg, run_dir, metrics) in enumerate(zip(cfgs, dirs, results, strict=True)):
        alone_dir = tmp_path / "alone" / run_dir.name
        alone_dir.mkdir(parents=True)
        alone = train_and_evaluate(cfg, dataset, alone_dir, 0)
        assert _without_timings(run_dir) == _without_timings(alone_dir)
        assert [accuracies[k] for _, accuracies in seen] == _without_timings(run_dir)["val_accuracy"]
        assert (run_dir / runs.STEPS_FILE).read_bytes() == (alone_dir / runs.STEPS_FILE).read_bytes()
        assert [w.tobytes() for w in _weights(run_dir)] == [w.tobytes() for w in _weights(alone_dir)]
        assert metrics["validation_accuracy"] == alone["validation_accuracy"]
        assert not any(key.startswith("test_") for key in metrics) and metrics["pruned"] is False
        assert json.loads((run_dir / runs.STATUS_FILE).read_text())["kind"] == lifecycle.KIND_TRIAL
    assert results[0]["validation_loss"] != results[1]["validation_loss"]  # two seeds, two runs


@pytest.mark.slow
def test_a_trial_through_the_previous_trials_program_is_its_lone_runs_exactly(dataset, tmp_path):
    """tune's TrialPrograms: a second trial (another constant rate) reuses the first's program; its runs are still
    their lone `train`; a trial whose program differs gets its own."""
    from mnist_dnn.experiments.bundles import TrialPrograms

    programs = TrialPrograms()
    first = _holdout_seeds(epochs=1)
    faster = [dataclasses.replace(cfg.optimizer, learning_rate=0.01) for cfg in first]
    second = [dataclasses.replace(cfg, optimizer=optimizer) for cfg, optimizer in zip(first, faster, strict=True)]
    for trial, cfgs in enumerate((first, second)):
        dirs = [tmp_path / f"trial{trial}" / f"seed{cfg.train.seed}" for cfg in cfgs]
        train_in_step(cfgs, dirs, dataset, lambda *_: False, mode="sequential", programs=programs)
        if trial == 0:
            kept = programs.get(first[0], dataset)
    assert kept is not None and programs.get(second[0], dataset)[1] is kept[1]  # one program for both trials
    wider = dataclasses.replace(first[0], model=dataclasses.replace(first[0].model, hidden_units=(64, 32)))
    assert programs.get(wider, dataset) is None and programs.get(first[0], synthetic_dataset()) is None
    for cfg, run_dir in zip(second, dirs, strict=True):
        alone_dir = tmp_path / "alone" / run_dir.name
        alone_dir.mkdir(parents=True)
        train_and_evaluate(cfg, dataset, alone_dir, 0)
        assert _without_timings(run_dir) == _without_timings(alone_dir)
        assert [w.tobytes() for w in _weights(run_dir)] == [w.tobytes() for w in _weights(alone_dir)]


@pytest.mark.slow
def test_runs_in_step_on_two_cpu_devices_are_their_lone_runs_exactly(dataset, tmp_path):
    """A trial's three seeds on 2 devices: two side by side, then the third, every epoch; each is its lone run."""
    report = _on_devices(2, tmp_path / "step", "in_step")
    assert report["mode"] == "devices" and len(report["seen"]) == 2
    for k, cfg in enumerate(_holdout_seeds(seeds=(0, 1, 2))):
        run_dir, alone_dir = tmp_path / "step" / f"seed{cfg.train.seed}", tmp_path / "alone" / f"seed{k}"
        alone_dir.mkdir(parents=True)
        train_and_evaluate(cfg, dataset, alone_dir, 0)
        assert _without_timings(run_dir) == _without_timings(alone_dir)
        assert [accuracies[k] for accuracies in report["seen"]] == _without_timings(run_dir)["val_accuracy"]
        assert (run_dir / runs.STEPS_FILE).read_bytes() == (alone_dir / runs.STEPS_FILE).read_bytes()
        assert [w.tobytes() for w in _weights(run_dir)] == [w.tobytes() for w in _weights(alone_dir)]
    devices = {records.read_metrics(tmp_path / "step" / f"seed{k}")["timings"]["device"] for k in range(3)}
    assert devices == {"cpu:0", "cpu:1"}


def _custom_seeds():
    return [load_config(None, {**FUSED, "train.seed": seed, "train.epochs": 2}) for seed in (3, 4, 5)]


@pytest.mark.slow
def test_the_custom_experiments_results_name_each_run_whichever_finishes_first(dataset, tmp_path, monkeypatch):
    """On several cores run 3 may finish before run 1: summary.json, predictions.csv and probabilities.csv are
    those of runs reported in order (they used to follow the order of finishing, and label it run-1, run-2...)."""
    from mnist_dnn.experiments import section522
    from mnist_dnn.handwriting.digits import Digits

    images, labels = _separable_digits(5, 7)
    digits = Digits(tuple(Path(f"{k}.csv") for k in range(5)), images.astype(np.float32), labels.astype(np.int64))
    cfg = _custom_seeds()[0]
    in_order = tmp_path / "in-order"
    in_order.mkdir()
    section522.run_custom_experiment(cfg, dataset, digits, in_order, 3, 0, tensorboard=False)
    train_custom_runs = section522.train_custom_runs

    def last_finishes_first(cfgs, run_dirs, dataset, validation, done, **kwargs):
        finished = []
        train_custom_runs(cfgs, run_dirs, dataset, validation, lambda *run: finished.append(run), **kwargs)
        for run in reversed(finished):
            done(*run)

    monkeypatch.setattr(section522, "train_custom_runs", last_finishes_first)
    reversed_dir = tmp_path / "reversed"
    reversed_dir.mkdir()
    section522.run_custom_experiment(cfg, dataset, digits, reversed_dir, 3, 0, tensorboard=False)
    for name in (section522.SUMMARY_FILE, section522.PREDICTIONS_FILE, section522.PROBABILITIES_FILE):
        assert (reversed_dir / name).read_bytes() == (in_order / name).read_bytes(), name


@pytest.mark.slow
def test_the_custom_experiments_runs_on_two_cpu_devices_are_their_lone_runs_exactly(dataset, tmp_path):
    """Section 5.2.2's runs, validated on custom digits, side by side on 2 devices: each `train_model`'s files."""
    from mnist_dnn.experiments.experiment import train_model

    report = _on_devices(2, tmp_path / "together", "custom")
    assert report["mode"] == "devices" and sorted(report["finished"]) == [0, 1, 2]  # as the cores finish them
    for k, cfg in enumerate(_custom_seeds(), start=1):
        alone = tmp_path / f"alone-{k}"
        alone.mkdir()
        train_model(cfg, dataset, alone, 0, validation=_separable_digits(5, 7))
        assert _files(tmp_path / "together" / f"run-{k}") == _files(alone)
        assert lifecycle.read_status(alone)["kind"] == lifecycle.KIND_CUSTOM


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_a_stop_from_on_epoch_ends_every_member_complete_with_the_epochs_it_ran(dataset, tmp_path, mode):
    cfgs = _holdout_seeds(epochs=3)
    dirs = [tmp_path / f"seed{cfg.train.seed}" for cfg in cfgs]
    results, stopped = train_in_step(cfgs, dirs, dataset, lambda epoch, metrics: epoch == 2, mode=mode)
    assert stopped
    for run_dir, metrics in zip(dirs, results, strict=True):
        assert metrics["pruned"] is True and metrics["epochs_completed"] == 2
        assert metrics["timings"]["bundle_mode"] == mode
        assert len(records.read_history(run_dir / runs.HISTORY_FILE)["loss"]) == 2
        assert json.loads((run_dir / runs.STATUS_FILE).read_text())["status"] == "complete"
        assert not (run_dir / runs.CHECKPOINT_FILE).exists()  # a trial is asked again, never resumed
        assert (run_dir / runs.MODEL_FILE).is_file()


@pytest.mark.slow
def test_an_exception_at_a_safe_point_stops_the_trial_between_runs_marked_interrupted(dataset, tmp_path):
    """tune's Ray tasks asked to stop raise at the first safe point: after one member's epoch, not the trial's end."""
    cfgs = _holdout_seeds(epochs=3)
    dirs = [tmp_path / f"seed{cfg.train.seed}" for cfg in cfgs]
    points = []

    def safe_point():
        points.append(sorted(len(records.read_history(d / runs.HISTORY_FILE)["loss"]) for d in dirs if _has_history(d)))
        if len(points) == 3:  # seed 0 set up, seed 1 set up (while seed 0 trains), then seed 0's first epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_in_step(cfgs, dirs, dataset, lambda *_: False, mode="sequential", safe_point=safe_point)
    assert points == [[], [], [1]]  # nothing trained at set-ups; seed 0 had one epoch, seed 1 none, when it stopped
    assert [lifecycle.read_status(d)["status"] for d in dirs] == ["interrupted", "interrupted"]


def _has_history(run_dir):
    return (run_dir / runs.HISTORY_FILE).is_file()


def test_train_in_step_refuses_runs_that_validate_on_the_test_set_or_hold_stray_files(dataset, tmp_path):
    """Runs that cannot share a program are not refused: they train alone in step (test_sharing.py)."""
    seeds = _holdout_seeds()
    paper = [load_config(None, FUSED)]
    with pytest.raises(ValueError, match="holdout"):
        train_in_step(paper, [tmp_path / "c"], dataset, lambda *_: False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "history.csv").write_text("epoch\n")
    with pytest.raises(UserInputError, match="no status.json"):
        train_in_step(seeds, [tmp_path / "d", tmp_path / "e"], dataset, lambda *_: False)

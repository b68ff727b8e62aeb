"""Bundles: which runs of a sweep share one compiled program, and that sharing it changes no run's files."""

import json
from pathlib import Path

import numpy as np
import pytest

from mnist_dnn import runs
from mnist_dnn.bundles import Bundle, plan_bundles, train_bundle
from mnist_dnn.config import load_config
from mnist_dnn.data import Dataset
from mnist_dnn.errors import UserInputError
from mnist_dnn.experiment import train_and_evaluate
from mnist_dnn.sweep import parse_axis, plan_sweep
from tests.test_train import _separable_digits

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


@pytest.fixture(scope="module")
def dataset():
    x_train, y_train = _separable_digits(512, 0)
    x_test, y_test = _separable_digits(128, 1)
    return Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {"train-images": "0" * 64})


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
    """Every file's bytes, with the timings taken out of history.csv and metrics.json and model.keras as weights."""
    import keras

    files = {}
    for path in sorted(run_dir.iterdir()):
        if path.name == runs.HISTORY_FILE:
            files[path.name] = {k: v for k, v in runs.read_history(path).items() if k not in runs.TIMING_COLUMNS}
        elif path.name == runs.METRICS_FILE:
            files[path.name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "timings"}
        elif path.name == runs.MODEL_FILE:
            files[path.name] = [w.tobytes() for w in keras.saving.load_model(path).get_weights()]
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

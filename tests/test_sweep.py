"""`mnist-dnn sweep`: the grid, its checks and its summary (fast; running a sweep: test_executors.py)."""

import json

import pytest

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.experiments.sweep import (
    MAX_RUNS,
    open_sweep_dir,
    parse_axis,
    parse_seeds,
    plan_sweep,
    summarize,
    summary_markdown,
)


def test_an_axis_reads_values_as_toml_and_keeps_lists_whole():
    assert parse_axis("optimizer.learning_rate=1e-4,1e-3").values == (0.0001, 0.001)
    assert parse_axis("model.hidden_units=[64,32],[128]").values == ([64, 32], [128])
    assert parse_axis("optimizer.name=sgd,adam").values == ("sgd", "adam")
    assert parse_axis("train.shuffle=true,false").values == (True, False)


@pytest.mark.parametrize("text", ["optimizer.learning_rate", "=1,2", "optimizer.learning_rate=1,,2", "a.b=1,1"])
def test_a_malformed_axis_is_a_user_error(text):
    with pytest.raises(UserInputError, match="--set"):
        parse_axis(text)


def test_seeds_take_ranges_and_lists():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,0,7") == [0, 3, 7]
    assert parse_seeds("0-1,5") == [0, 1, 5]
    for bad in ("a", "4-2", "-1", ""):
        with pytest.raises(UserInputError, match="--seeds"):
            parse_seeds(bad)


def test_the_plan_is_every_combination_times_seeds_and_folds():
    axes = [parse_axis("optimizer.learning_rate=0.001,0.01"), parse_axis("model.dropout=0,0.5")]
    plan = plan_sweep({"paper": Config()}, axes, [0, 1])
    assert len(plan) == 2 * 2 * 2
    assert plan[0].setting == "optimizer.learning_rate=0.001, model.dropout=0"
    assert plan[0].directory == "learning_rate-0.001_dropout-0__seed0"
    assert plan[1].config.train.seed == 1 and plan[1].config.optimizer.learning_rate == 0.001
    assert len({run.directory for run in plan}) == len(plan)
    folded = plan_sweep({"paper": Config()}, axes[:1], [0], folds=3)
    assert [(run.config.validation.source, run.config.validation.fold) for run in folded[:3]] == [
        ("fold", 1),
        ("fold", 2),
        ("fold", 3),
    ]
    assert folded[0].directory == "learning_rate-0.001__seed0_fold1"


def test_several_configs_become_an_axis():
    plan = plan_sweep({"sgd": load_config(None, {"optimizer.name": "sgd"}), "paper": Config()}, [], [0])
    assert [run.setting for run in plan] == ["config=sgd", "config=paper"]
    assert [run.config.optimizer.name for run in plan] == ["sgd", "adam"]


def test_every_combination_is_checked_before_anything_runs():
    with pytest.raises(UserInputError, match=r"model.activation=sigmod: .*model.activation: expected one of"):
        plan_sweep({"paper": Config()}, [parse_axis("model.activation=relu,sigmod")], [0])
    with pytest.raises(UserInputError, match=f"more than {MAX_RUNS}"):
        plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.1,0.01")], list(range(600)))


def test_a_directory_holding_another_sweep_or_anything_else_is_refused(tmp_path):
    plan = plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.01,0.05")], [0])
    open_sweep_dir(tmp_path / "sweep", plan)
    other = plan_sweep({"paper": Config()}, [parse_axis("optimizer.learning_rate=0.01,0.1")], [0])
    with pytest.raises(UserInputError, match="holds a different sweep"):
        open_sweep_dir(tmp_path / "sweep", other)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.csv").write_text("epoch\n")
    with pytest.raises(UserInputError, match="exists and is not a sweep directory"):
        open_sweep_dir(tmp_path / "run", plan)
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"][1]["seed"] == 0


def test_cross_validation_ranks_by_validation_accuracy(tmp_path):
    plan = plan_sweep({"paper": Config()}, [parse_axis("model.dropout=0,0.5")], [0], folds=2)
    results = [
        {"test_accuracy": t, "test_loss": 0.1, "validation_accuracy": v, "validation_loss": 0.1}
        for t, v in ((0.99, 0.90), (0.99, 0.92), (0.95, 0.97), (0.95, 0.95))
    ]
    rows = summarize(plan, results)
    assert rows[0]["setting"] == "model.dropout=0.5"  # better on validation, worse on test
    assert rows[0]["validation_accuracy_mean"] == pytest.approx(0.96)
    assert "validation accuracy (over folds)" in summary_markdown(rows, folds=True)

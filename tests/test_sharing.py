"""Which runs share a program (sharing.py), walked over every key of the config schema.

The walking test gives each key of config.py a non-default value, trains it as the second
member of a two-seed bundle and asserts that member is exactly its lone `train` run - or
that the key is refused from bundling. Keys added to config.py later are walked too.
"""

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from mnist_dnn.core.config import Config, config_to_toml, load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.experiments import sharing
from mnist_dnn.experiments.bundles import plan_bundles, train_bundle, train_in_step
from mnist_dnn.experiments.experiment import train_and_evaluate
from mnist_dnn.experiments.sweep import PlannedRun, open_sweep_dir, plan_sweep
from mnist_dnn.experiments.tune.study import check_trials
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from tests.test_bundles import _files
from tests.test_train import _separable_digits

BASE = {
    "train.backend": "jax",
    "train.engine": "fused",
    "train.epochs": 1,
    "model.hidden_units": [32],  # small, so that every key's two trainings stay quick
}

# Values the walk cannot derive from a field's type, and the keys a value needs to take effect.
CHOSEN = {
    "data.data_dir": "elsewhere",  # recorded only: the test hands the data in
    "data.train_limit": 300,
    "model.hidden_units": [24, 16],
    "model.activation": "tanh",
    "model.dropout_after": [1],
    "model.conv_filters": [4],
    "model.conv_padding": "same",
    "train.epochs": 2,
    "train.backend": "tensorflow",
    "validation.split_seed": 3,
}
NEEDS = {
    "train.backend": {"train.engine": "fit"},
    "model.init_scale": {"model.kernel_initializer": "uniform"},
    "model.conv_kernel": {"model.conv_filters": [4]},  # the convolution keys act only with a convolution
    "model.conv_padding": {"model.conv_filters": [4]},
    "model.conv_activation": {"model.conv_filters": [4]},
    "model.pool": {"model.conv_filters": [4]},
    "optimizer.momentum": {"optimizer.name": "momentum"},
    "optimizer.nesterov": {"optimizer.name": "momentum"},
    "optimizer.decay_rate": {"optimizer.schedule": "step", "optimizer.decay_epochs": 0.5},
    "optimizer.decay_epochs": {"optimizer.schedule": "exponential"},
    "optimizer.plateau_patience": {"optimizer.schedule": "plateau"},
    "regularization.early_stopping_monitor": {"regularization.early_stopping": True},
    "regularization.early_stopping_patience": {"regularization.early_stopping": True},
    "regularization.early_stopping_restore_best": {"regularization.early_stopping": True},
    "validation.fraction": {"validation.source": "holdout"},
    "validation.folds": {"validation.source": "fold"},
    "validation.fold": {"validation.source": "fold"},
    "validation.split_seed": {"validation.source": "holdout"},
}


def _fields() -> dict[str, tuple[dataclasses.Field, typing.Any]]:
    out = {}
    for section in dataclasses.fields(Config):
        hints = typing.get_type_hints(section.default_factory)
        for f in dataclasses.fields(section.default_factory):
            out[f"{section.name}.{f.name}"] = (f, hints[f.name])
    return out


def _other_value(key: str, base: Config):
    """A valid value of `key` other than the base config's, derived from its type where it can be."""
    if key in CHOSEN:
        return CHOSEN[key]
    f, hint = _fields()[key]
    section, _, name = key.partition(".")
    current = getattr(getattr(base, section), name)
    maximum = f.metadata.get("maximum")
    if hint is bool:
        return not current
    if typing.get_origin(hint) is typing.Literal:
        return next(choice for choice in typing.get_args(hint) if choice != current)
    if hint is int:
        return current + 1 if maximum is None or current < maximum else current - 1
    if hint is float:
        if maximum is not None:
            return (current + maximum) / 2
        return current * 2 if current else 0.001
    raise AssertionError(f"{key}: add a non-default value for it to CHOSEN in tests/test_sharing.py")


def _walked(key: str) -> list[PlannedRun]:
    """The key's two-seed sweep: base + what the key needs + the key's other value, seeds s and s + 1.

    Planned as `sweep` plans it, so a holdout or fold split is drawn from the first seed.
    """
    base = load_config(None, BASE)
    cfg = load_config(None, {**BASE, **NEEDS.get(key, {}), key: _other_value(key, base)})
    assert cfg != load_config(None, {**BASE, **NEEDS.get(key, {})}), f"{key}: the walked value changed nothing"
    return plan_sweep({"walk": cfg}, [], [cfg.train.seed, cfg.train.seed + 1], None)


def test_every_config_key_is_classified_for_sharing():
    assert sharing.unclassified_keys() == []
    assert sharing.MEMBER_KEYS.isdisjoint(sharing.PROGRAM_KEYS)
    known = set(sharing.schema_keys())
    assert (sharing.MEMBER_KEYS | sharing.PROGRAM_KEYS | set(sharing.ALONE_WHEN)) <= known  # no stale names


def test_an_unclassified_key_off_its_default_makes_a_run_train_alone(monkeypatch):
    """Fail safe: a key added to config.py but not to sharing.py can only stop a run from sharing."""
    monkeypatch.setattr(sharing, "PROGRAM_KEYS", sharing.PROGRAM_KEYS - {"model.dropout"})
    assert sharing.can_share(load_config(None, BASE))  # at its default it changes nothing
    cfg = load_config(None, {**BASE, "model.dropout": 0.3})
    assert sharing.alone_reason(cfg) == "model.dropout is not classified in sharing.py"
    assert sharing.program_key(cfg) is None


def test_augmentation_of_any_kind_trains_alone():
    """The four keys bundles.can_share once missed (issue 19) and the two it caught."""
    for key in [k for k in sharing.schema_keys() if k.startswith("regularization.augment_")]:
        planned = _walked(key)
        assert sharing.alone_reason(planned[0].config).startswith(key)
        assert len(plan_bundles(planned)) == 2


def test_seeds_rates_and_initial_weights_still_share_one_program():
    rates = [
        load_config(None, {**BASE, "optimizer.learning_rate": rate, "train.seed": s})
        for rate in (1e-3, 1e-2)
        for s in (0, 1)
    ]
    inits = [
        load_config(None, {**BASE, "model.kernel_initializer": name, "model.init_scale": 0.1})
        for name in ("uniform", "normal")
    ]
    assert sharing.one_program(rates) and sharing.one_program(inits)
    scheduled = [
        dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, schedule="step")) for cfg in rates
    ]
    assert not sharing.one_program(scheduled)  # a schedule bakes the rate into the program


@pytest.fixture(scope="module")
def dataset():
    x_train, y_train = _separable_digits(512, 0)
    x_test, y_test = _separable_digits(128, 1)
    return Dataset(x_train, y_train, x_test, y_test, "bands", "test", Path("."), {"train-images": "0" * 64})


@pytest.mark.slow
@pytest.mark.parametrize("key", sharing.schema_keys())
def test_every_key_in_a_bundle_gives_its_lone_run_or_is_refused(key, dataset, tmp_path):
    planned = _walked(key)
    cfgs = [run.config for run in planned]
    if not sharing.one_program(cfgs):
        assert sharing.alone_reason(cfgs[0]) is not None
        assert [len(bundle.members) for bundle in plan_bundles(planned)] == [1, 1]
        return
    (bundle,) = plan_bundles(planned)
    dirs = [tmp_path / "bundle" / run.directory for run in planned]
    results = train_bundle(bundle, dirs, dataset, mode="sequential")
    assert results[1]["timings"]["bundle_members"] == 2
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    train_and_evaluate(cfgs[1], dataset, alone_dir, 0)
    assert _files(dirs[1]) == _files(alone_dir)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(sharing.MEMBER_KEYS - {"train.seed"}))
def test_members_that_differ_in_a_member_key_each_give_their_lone_run(key, dataset, tmp_path):
    """The walk above gives both members one value; a member key's promise is that they may differ.

    A key put in MEMBER_KEYS that the program bakes in (dropout, l2, ...) passes the walk
    but fails here: the second member would train with the first member's value.
    """
    base = load_config(None, {**BASE, **NEEDS.get(key, {})})
    other = load_config(None, {**BASE, **NEEDS.get(key, {}), key: _other_value(key, load_config(None, BASE))})
    planned = [PlannedRun(name, name, cfg, 0, None) for name, cfg in (("base", base), ("other", other))]
    if key == "validation.split_seed":  # members must validate on the same images: the split seed is in the key
        assert not sharing.one_program([base, other])
        return
    (bundle,) = plan_bundles(planned)
    dirs = [tmp_path / "bundle" / run.directory for run in planned]
    train_bundle(bundle, dirs, dataset, mode="sequential")
    for cfg, bundled in zip((base, other), dirs, strict=True):
        alone_dir = tmp_path / f"alone-{bundled.name}"
        alone_dir.mkdir()
        train_and_evaluate(cfg, dataset, alone_dir, 0)
        assert _files(bundled) == _files(alone_dir)


@pytest.mark.slow
def test_a_trial_whose_seeds_cannot_share_trains_each_as_its_lone_run_in_step(dataset, tmp_path):
    """Augmentation, early stopping, a plateau schedule: each seed is its lone `train`; the pruner sees each epoch."""
    holdout = {
        **BASE,
        "train.epochs": 2,
        "validation.source": "holdout",
        "validation.split_seed": 7,
        "regularization.augment_blur": 1.0,
        "regularization.early_stopping": True,
        "regularization.early_stopping_patience": 1,
        "optimizer.schedule": "plateau",
        "optimizer.plateau_patience": 1,
    }
    cfgs = [load_config(None, {**holdout, "train.seed": seed}) for seed in (0, 1)]
    assert not sharing.one_program(cfgs)
    dirs = [tmp_path / "step" / f"seed{cfg.train.seed}" for cfg in cfgs]
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, [m["val_accuracy"] for m in metrics]))
        return False

    no_test_set = Dataset(dataset.x_train, dataset.y_train, None, None, "bands", "test", Path("."), dataset.checksums)
    results, stopped = train_in_step(cfgs, dirs, no_test_set, on_epoch)
    assert not stopped and [epoch for epoch, _ in seen] == list(range(1, len(seen) + 1))
    for k, (cfg, run_dir, metrics) in enumerate(zip(cfgs, dirs, results, strict=True)):
        alone_dir = tmp_path / "alone" / run_dir.name
        alone_dir.mkdir(parents=True)
        alone = train_and_evaluate(cfg, dataset, alone_dir, 0)
        history = records.read_history(run_dir / runs.HISTORY_FILE)
        assert {k: v for k, v in history.items() if k not in records.TIMING_COLUMNS} == {
            k: v
            for k, v in records.read_history(alone_dir / runs.HISTORY_FILE).items()
            if k not in records.TIMING_COLUMNS
        }
        rows = len(history["val_accuracy"])
        assert [accuracies[k] for _, accuracies in seen[:rows]] == history["val_accuracy"]
        assert _files(run_dir)["model.keras"] == _files(alone_dir)["model.keras"]
        assert (run_dir / runs.STEPS_FILE).read_bytes() == (alone_dir / runs.STEPS_FILE).read_bytes()
        assert metrics["validation_accuracy"] == alone["validation_accuracy"]
        assert "bundle_members" not in metrics["timings"] and metrics["pruned"] is False
        assert not any(name.startswith("test_") for name in metrics)
        assert json.loads((run_dir / runs.STATUS_FILE).read_text())["kind"] == lifecycle.KIND_TRIAL


# --- directories made by the bundling before issue 19's fix are refused, nothing deleted ---

BUNDLED_METRICS = {"timings": {"bundle_members": 2, "bundle_mode": "sequential"}}  # what a member's metrics note


def _old_sweep(tmp_path, finished: bool):
    """A blur sweep's directory as 0.1.0 left it: its seeds bundled (finished), or stopped mid-bundle."""
    blur = load_config(None, {**BASE, "regularization.augment_blur": 1.5})
    plan = plan_sweep({"paper": blur}, [], [0, 1], None)
    sweep_dir = tmp_path / "sweep"
    open_sweep_dir(sweep_dir, plan)
    record = json.loads((sweep_dir / "sweep.json").read_text())
    del record["sharing"]  # 0.1.0 wrote no such field
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    for run in plan:
        run_dir = sweep_dir / run.directory
        run_dir.mkdir()
        (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(run.config))
        if finished:
            records.write_json(
                run_dir / runs.METRICS_FILE, {"timings": {"bundle_members": 2, "bundle_mode": "sequential"}}
            )
        lifecycle.write_status(run_dir, "complete" if finished else "interrupted", kind=lifecycle.KIND_TRAIN)
    return sweep_dir, plan


def _contents(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("finished", [True, False])
def test_a_sweep_bundled_before_the_fix_is_refused_when_continued_and_kept(tmp_path, finished):
    sweep_dir, plan = _old_sweep(tmp_path, finished)
    before = _contents(sweep_dir)
    with pytest.raises(UserInputError, match=r"seed0 went through a program shared .*augment_blur = 1\.5"):
        open_sweep_dir(sweep_dir, plan)
    assert _contents(sweep_dir) == before


def test_a_sweep_made_with_the_fix_continues_its_interrupted_augmenting_runs(tmp_path):
    sweep_dir, plan = _old_sweep(tmp_path, finished=False)
    record = json.loads((sweep_dir / "sweep.json").read_text())
    (sweep_dir / "sweep.json").write_text(json.dumps({**record, "sharing": sharing.SHARING_VERSION}))
    assert open_sweep_dir(sweep_dir, plan) is True


def test_a_tune_directory_whose_trials_were_bundled_before_the_fix_is_refused(tmp_path):
    run_dir = tmp_path / "tuned" / "trials" / "trial-0003" / "seed1"
    run_dir.mkdir(parents=True)
    cfg = load_config(None, {**BASE, "regularization.augment_stroke": 1.0, "validation.source": "holdout"})
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(cfg))
    records.write_json(run_dir / runs.METRICS_FILE, BUNDLED_METRICS)
    before = _contents(tmp_path / "tuned")
    with pytest.raises(UserInputError, match="trials/trial-0003/seed1 went through .*augment_stroke = 1.0"):
        check_trials(tmp_path / "tuned")
    assert _contents(tmp_path / "tuned") == before
    records.write_json(run_dir / runs.METRICS_FILE, {"timings": {}})  # a trial that trained alone is fine
    check_trials(tmp_path / "tuned")

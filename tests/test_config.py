import dataclasses
import tomllib

import pytest

from mnist_dnn.core.config import Config, config_from_dict, config_to_toml, field_docs, load_config
from mnist_dnn.core.errors import UserInputError
from tests.conftest import REPO

PAPER = REPO / "configs" / "paper.toml"


def test_defaults_are_the_papers_settings():
    cfg = Config()
    assert cfg.model.hidden_units == (400, 100)
    assert cfg.model.activation == "relu"
    assert cfg.model.dropout == 0.5
    assert cfg.optimizer.name == "adam" and cfg.optimizer.learning_rate == 0.001
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (10, 64, 0)
    assert cfg.train.loss == "categorical_crossentropy"


def test_paper_toml_spells_out_every_default():
    raw = tomllib.loads(PAPER.read_text())
    assert load_config(PAPER) == Config()
    for section, cls_field in ((f.name, f) for f in dataclasses.fields(Config)):
        for f in dataclasses.fields(cls_field.default_factory):
            if getattr(getattr(Config(), section), f.name) is not None:
                assert f.name in raw[section], f"configs/paper.toml lacks {section}.{f.name}"


def test_overrides_win_over_the_file():
    cfg = load_config(PAPER, {"train.epochs": 3, "optimizer.learning_rate": 0.01})
    assert cfg.train.epochs == 3
    assert cfg.optimizer.learning_rate == 0.01
    assert cfg.train.batch_size == 64


def test_toml_round_trip_gives_an_equal_config():
    cfg = load_config(
        None, {"train.backend": "tensorflow", "model.hidden_units": [32, 16, 8], "data.data_dir": 'odd "dir"\\x'}
    )
    assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg


def test_integer_is_accepted_where_a_float_is_expected():
    assert load_config(None, {"optimizer.learning_rate": 1}).optimizer.learning_rate == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.epochs": 0}, "train.epochs: must be at least 1, got 0"),
        ({"train.batch_size": -1}, "train.batch_size: must be at least 1, got -1"),
        ({"train.epochs": 2.5}, "train.epochs: expected an integer, got 2.5 (number)"),
        ({"train.epochs": "10"}, "train.epochs: expected an integer, got '10' (string)"),
        ({"train.epochs": True}, "train.epochs: expected an integer, got True (boolean)"),
        ({"train.seed": -3}, "train.seed: must be at least 0, got -3"),
        (
            {"train.epoch": 3},
            "unknown key 'train.epoch' (known in [train]: epochs, batch_size, seed, loss, backend, engine, shuffle)",
        ),
        ({"training.epochs": 3}, "unknown section '[training]'"),
        (
            {"optimizer.name": "adamw"},
            "optimizer.name: expected one of 'adam', 'sgd', 'momentum', 'rmsprop', 'adagrad'",
        ),
        ({"optimizer.learning_rate": -0.1}, "optimizer.learning_rate: must be at least 0.0, got -0.1"),
        ({"optimizer.learning_rate": float("nan")}, "optimizer.learning_rate: expected a finite number"),
        ({"model.dropout": 1.0}, "model.dropout: must be at most 0.99, got 1.0"),
        ({"model.hidden_units": []}, "model.hidden_units: expected a non-empty list"),
        ({"model.hidden_units": [400, 0]}, "model.hidden_units: must be at least 1, got 0"),
        ({"model.hidden_units": [400, "x"]}, "model.hidden_units[1]: expected an integer, got 'x' (string)"),
        ({"model.activation": "relu6x"}, "model.activation: expected one of"),
        ({"train.backend": "theano"}, "train.backend: expected one of 'jax', 'tensorflow', 'torch'"),
    ],
)
def test_every_bad_value_names_its_key(overrides, message):
    with pytest.raises(UserInputError) as info:
        load_config(None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nepochs = 0\n", "bad.toml: train.epochs: must be at least 1, got 0"),
        ("[train]\nepochs = \n", "bad.toml: invalid TOML"),
        ("train = 3\n", "bad.toml: 'train' must be a table [train], got 3 (integer)"),
        ("[model]\nlayers = [1]\n", "bad.toml: unknown key 'model.layers'"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserInputError, match="^" + str(tmp_path).replace("\\", "\\\\")) as info:
        load_config(path)
    assert message in str(info.value)


def test_missing_and_binary_config_files(tmp_path):
    with pytest.raises(UserInputError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    junk = tmp_path / "junk.toml"
    junk.write_bytes(b"\x80\x81garbage\xff")
    with pytest.raises(UserInputError, match="junk.toml: not a text file"):
        load_config(junk)
    junk.write_bytes(b"\xff\xfe\x00garbag")  # a UTF-16 byte-order mark, then an odd byte out
    with pytest.raises(UserInputError, match="junk.toml: not readable as UTF-16 .save it as UTF-8"):
        load_config(junk)
    junk.write_bytes("[train]\nepochs = 3\n".encode("utf-16"))  # what a Windows editor may save
    assert load_config(junk).train.epochs == 3
    with pytest.raises(UserInputError, match=r"is a directory \(expected a TOML file\)"):
        load_config(tmp_path)


def test_every_setting_is_documented():
    docs = field_docs()
    assert "train.batch_size" in docs and "model.dropout" in docs
    assert all(text.strip() for text in docs.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.activation": ["relu", "tanh", "relu"]}, "model.activation: 3 activations for 2 hidden layers"),
        ({"model.activation": ["relu", "swish"]}, "model.activation[1]: expected one of"),
        ({"model.dropout_after": [3]}, "model.dropout_after: 3 is not a hidden layer (1..2, or -1 for the last)"),
        ({"model.dropout_after": [0]}, "model.dropout_after: 0 is not a hidden layer"),
        ({"model.kernel_initializer": "xavier"}, "model.kernel_initializer: expected one of"),
        ({"model.init_scale": -0.1}, "model.init_scale: must be at least 0.0, got -0.1"),
        ({"optimizer.schedule": "linear"}, "optimizer.schedule: expected one of 'constant', 'step'"),
        ({"optimizer.decay_rate": 1.5}, "optimizer.decay_rate: must be at most 1.0, got 1.5"),
        ({"optimizer.momentum": -0.5}, "optimizer.momentum: must be at least 0.0"),
        ({"train.loss": "hinge"}, "train.loss: expected one of 'categorical_crossentropy', 'mse'"),
        ({"preprocess.method": "whiten"}, "preprocess.method: expected one of 'scale', 'zero_center'"),
        ({"regularization.l2": -1e-3}, "regularization.l2: must be at least 0.0"),
        ({"regularization.augment_rotation": 200}, "regularization.augment_rotation: must be at most 180.0"),
        ({"regularization.early_stopping_monitor": "val_acc"}, "regularization.early_stopping_monitor: expected"),
        ({"validation.source": "train"}, "validation.source: expected one of 'test', 'holdout', 'fold'"),
        ({"validation.fold": 6}, "validation.fold: 6 exceeds validation.folds = 5"),
        ({"validation.fraction": 0.95}, "validation.fraction: must be at most 0.9"),
        ({"data.train_limit": 0}, "data.train_limit: must be at least 1, got 0"),
    ],
)
def test_every_knob_is_checked_and_names_its_key(overrides, message):
    with pytest.raises(UserInputError) as info:
        load_config(None, overrides)
    assert message in str(info.value)


def test_set_reads_values_as_toml_with_bare_strings():
    from mnist_dnn.core.config import parse_assignment

    assert parse_assignment("model.hidden_units=[64, 32]") == ("model.hidden_units", [64, 32])
    assert parse_assignment("optimizer.learning_rate=1e-3") == ("optimizer.learning_rate", 0.001)
    assert parse_assignment("train.shuffle=false") == ("train.shuffle", False)
    assert parse_assignment("optimizer.name=sgd") == ("optimizer.name", "sgd")
    for bad in ("epochs=3", "train.epochs", "train.epochs="):
        with pytest.raises(UserInputError, match="--set: expected section.key=value"):
            parse_assignment(bad)


def test_every_worked_config_is_valid_and_documented():
    readme = (REPO / "configs" / "README.md").read_text()
    for path in sorted((REPO / "configs").glob("*.toml")):
        load_config(path)
        assert f"\n{path.stem} " in readme, f"configs/README.md lacks {path.name}"  # in config list's output
    for key in field_docs():
        section, name = key.split(".")
        assert f"`[{section}]`" in readme and f"| `{name}` |" in readme, f"configs/README.md lacks {key}"


def test_every_seed_that_passes_the_check_can_seed_a_run(cli_env):
    """2**32 and above cannot seed NumPy; refused at the config check, before any run directory exists."""
    from click.testing import CliRunner

    from mnist_dnn.cli.app import main
    from mnist_dnn.core.backend import seed_everything
    from mnist_dnn.core.config import MAX_SEED
    from mnist_dnn.experiments.section522 import run_configs

    seed_everything(load_config(None, {"train.seed": MAX_SEED}).train.seed)
    with pytest.raises(UserInputError, match=f"train.seed: must be at most {MAX_SEED}, got {MAX_SEED + 1}"):
        load_config(None, {"train.seed": MAX_SEED + 1})
    assert [c.train.seed for c in run_configs(load_config(None, {"train.seed": MAX_SEED - 1}), 2)][-1] == MAX_SEED
    with pytest.raises(UserInputError, match=f"3 runs from seed {MAX_SEED - 1} need seeds up to {MAX_SEED + 1}"):
        run_configs(load_config(None, {"train.seed": MAX_SEED - 1}), 3)
    for args, blamed in (
        (["train", "--seed", str(2**32)], "train.seed"),
        (["sweep", "--seeds", f"0,{2**40}"], "--seeds"),  # the flag the user typed, not the key behind it
        (["eval", "--custom-csv", "d", "--seed", str(MAX_SEED), "--runs", "2"], "train.seed"),
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and blamed in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (cli_env / "runs").exists()


def test_config_show_lists_unset_keys_as_comments_and_the_saved_config_does_not():
    from mnist_dnn.core.config import apply_overrides, config_to_toml, shown_toml

    cfg = load_config(None, {"data.train_limit": 500})
    shown = shown_toml(cfg)
    assert "# data_dir = (unset)\ntrain_limit = 500\n" in shown and "# backend = (unset)" in shown
    saved, read = tomllib.loads(config_to_toml(cfg)), tomllib.loads(shown)
    for section, values in saved.items():  # the same settings, read back ...
        assert read[section].items() >= values.items()
    extra = {f"{s}.{k}": v for s, values in read.items() for k, v in values.items() if k not in saved.get(s, {})}
    assert apply_overrides(cfg, extra) == cfg  # ... plus keys a run saves only when set, at their defaults
    assert "(unset)" not in config_to_toml(cfg)  # a run's config.toml keeps its text
    explained = shown_toml(cfg, explain=True)
    assert "# Directory with the four IDX files" in explained and explained.count("= (unset)") == shown.count("(unset)")

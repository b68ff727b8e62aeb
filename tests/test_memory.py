"""A network too large to train is refused before it is built, in one line naming the key and both numbers."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.core.config import load_config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.memory import (
    activation_count,
    available_bytes,
    check_training_memory,
    parameter_count,
    training_bytes,
)
from mnist_dnn.data.mnist import Dataset
from mnist_dnn.experiments.experiment import train_and_evaluate
from mnist_dnn.runs import directory as runs
from tests.test_train import _separable_digits


def test_the_estimate_counts_weights_gradients_and_the_optimizers_slots():
    cfg = load_config(None)
    assert parameter_count(cfg.model, 784, 10) == 355_110  # 784*400+400 + 400*100+100 + 100*10+10: the paper's
    assert training_bytes(cfg.model, cfg.optimizer, 784, 10) == 355_110 * 4 * 4  # adam: m and v
    sgd = load_config(None, {"optimizer.name": "sgd"})
    assert training_bytes(sgd.model, sgd.optimizer, 784, 10, runs=6) == 355_110 * 4 * 2 * 6
    assert available_bytes() > 0


def test_the_estimate_counts_a_batchs_activations_and_their_gradients():
    cfg = load_config(None)
    assert activation_count(cfg.model, 784, 10) == 784 + 400 + 100 + 10
    assert training_bytes(cfg.model, cfg.optimizer, 784, 10, batch_size=64) == (355_110 * 4 + 1294 * 64 * 2) * 4


def test_a_convolutional_network_counts_its_feature_maps():
    lenet = load_config(Path(__file__).parent.parent / "configs" / "lenet.toml").model
    assert parameter_count(lenet, 784, 10) == 61_706  # LeNet-5 on 28x28 digits, as Keras counts it (test_convolutions)
    # input, conv_1 28x28x6 and pooled 14x14x6, conv_2 10x10x16 and pooled 5x5x16, then 120, 84, 10
    assert activation_count(lenet, 784, 10) == 784 + 6 * (784 + 196) + 16 * (100 + 25) + 120 + 84 + 10


def test_a_too_large_convolutional_network_is_refused_naming_conv_filters():
    cfg = load_config(None, {"model.conv_filters": [100_000], "model.conv_padding": "same"})
    with pytest.raises(
        UserInputError, match=r"^model.conv_filters: training \[100000\] needs at least .* activations x 64"
    ):
        check_training_memory(cfg.model, cfg.optimizer, 784, 10, available=8 * 10**9, batch_size=64)


def test_a_model_too_large_for_memory_is_refused_naming_the_key_and_both_numbers():
    cfg = load_config(None, {"model.hidden_units": [100_000_000]})
    message = (
        r"^model.hidden_units: training \[100000000\] needs at least 1.3 TB \(79,500,000,010 parameters x 4 bytes "
        r"x 4: weights, gradients and adam's 2 slot\(s\)\), more than the 8.0 GB of memory available$"
    )
    with pytest.raises(UserInputError, match=message):
        check_training_memory(cfg.model, cfg.optimizer, 784, 10, available=8 * 10**9)
    check_training_memory(load_config(None).model, cfg.optimizer, 784, 10, available=8 * 10**9)  # the paper's fits
    with pytest.raises(UserInputError, match=r"x 6 runs trained together\), more than"):
        small = load_config(None, {"model.hidden_units": [200_000]})
        check_training_memory(small.model, small.optimizer, 784, 10, runs_together=6, available=8 * 10**9)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("command", [["train"], ["sweep", "--out", "s"], ["eval", "--custom-csv", "custom_digits"]])
def test_the_cli_refuses_it_before_any_directory_exists(cli_env, command):
    if command[0] == "eval":
        (cli_env / "custom_digits").symlink_to(Path(__file__).parent.parent / "custom_digits")
    flags = ["--config", str(cli_env / "huge.toml")]
    (cli_env / "huge.toml").write_text("[model]\nhidden_units = [100000000]\n")
    result = CliRunner().invoke(main, [*command, *flags])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: model.hidden_units: training [100000000] needs at least ")
    assert "TB (79,500,000,010 parameters x 4 bytes x 4" in result.stderr and "GB of memory available" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (cli_env / "runs").exists() and not (cli_env / "s").exists()


@pytest.mark.slow
def test_an_allocation_that_fails_anyway_is_one_line_and_marks_the_run_failed(tmp_path):
    x, y = _separable_digits(256, 0)
    dataset = Dataset(x, y, x[:64], y[:64], "bands", "test", Path("."), {})

    def exhausted(epoch, metrics):
        raise MemoryError("Unable to allocate 1.3 TiB for an array")

    (tmp_path / "run").mkdir()
    cfg = load_config(None, {"train.epochs": 1, "train.backend": "jax", "train.engine": "fused"})
    with pytest.raises(UserInputError, match=r"^out of memory while training \(Unable to allocate 1.3 TiB"):
        train_and_evaluate(cfg, dataset, tmp_path / "run", 0, (exhausted,))
    assert runs.read_status(tmp_path / "run")["status"] == "failed"

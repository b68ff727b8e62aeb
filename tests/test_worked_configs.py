"""Every config in configs/ trains one short epoch on real MNIST, and the deep-sigmoid one shows what it claims."""

import json
import tomllib

import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import records
from tests.conftest import REPO

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.toml"))
SUBSET = 3000  # training images: enough to learn something in one epoch, quick to train


def _train(config, out, *extra):
    args = ["train", "--config", str(REPO / "configs" / config), "--out", str(out), "-q", "--no-plots", *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / runs.METRICS_FILE).read_text()), records.read_history(out / runs.HISTORY_FILE)


@pytest.mark.parametrize("config", CONFIGS)
def test_each_worked_config_trains_one_epoch_on_a_subset(config, tmp_path):
    limit = min(SUBSET, 1250) if config.startswith("overfit") else SUBSET  # theirs is the point: keep it
    if tomllib.loads((REPO / "configs" / config).read_text()).get("model", {}).get("batch_norm"):
        # Batch norm's moving statistics (momentum 0.99) trail the layers for a few hundred steps: after
        # 47 (3,000 images) or even 188 the network scores chance in inference mode while its training
        # accuracy is 0.84. One full epoch (938 steps) gives them time, as a user's first epoch does.
        limit = 60000
    metrics, history = _train(config, tmp_path / "run", "--epochs", "1", "--set", f"data.train_limit={limit}")
    assert metrics["epochs_completed"] == 1
    assert 0 < history["loss"][0] < 10
    # the saved model, scored again, gives exactly what its last epoch's validation gave (same images, same batch)
    assert metrics["validation_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)
    assert metrics["validation_accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-4)  # <= 1 image
    if config == "deep_sigmoid.toml":  # its point is that it barely learns: see the next test
        assert len([name for name in history if name.startswith(records.GRAD_NORM_PREFIX)]) == 9
    else:
        assert metrics["test_accuracy"] > 0.5, config  # the others learn in one short epoch (chance is 0.1)


def test_deep_sigmoid_network_shows_vanishing_gradients_and_relu_cures_them(tmp_path):
    _, sigmoid = _train("deep_sigmoid.toml", tmp_path / "sigmoid", "--epochs", "1")
    _, relu = _train("deep_relu.toml", tmp_path / "relu", "--epochs", "1")

    def ratio(history):
        return history["grad_norm_digits"][0] / history["grad_norm_hidden_1"][0]

    assert ratio(sigmoid) >= 10  # the first layer gets a tenth of the last layer's gradient, or less
    assert ratio(relu) < ratio(sigmoid) / 10

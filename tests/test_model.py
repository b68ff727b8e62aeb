import numpy as np
import pytest

from mnist_dnn.core.backend import seed_everything
from mnist_dnn.core.config import load_config
from mnist_dnn.training.compile import compile_model
from mnist_dnn.training.model import build_model

PAPER_PARAMETERS = 784 * 400 + 400 + 400 * 100 + 100 + 100 * 10 + 10  # 355,110


@pytest.mark.slow
def test_the_papers_network_layer_by_layer():
    import keras

    model = build_model(load_config().model)
    kinds = [
        (type(layer).__name__, getattr(layer, "units", None), getattr(layer, "rate", None)) for layer in model.layers
    ]
    assert kinds == [("Dense", 400, None), ("Dense", 100, None), ("Dropout", None, 0.5), ("Dense", 10, None)]
    activations = [layer.activation for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert activations == [keras.activations.relu, keras.activations.relu, keras.activations.softmax]
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 10)
    assert model.count_params() == PAPER_PARAMETERS == 355_110


@pytest.mark.slow
def test_layer_sizes_activation_and_dropout_come_from_config():
    import keras

    cfg = load_config(None, {"model.hidden_units": [32, 16, 8], "model.activation": "tanh", "model.dropout": 0})
    model = build_model(cfg.model)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 16, 8, 10]
    assert all(layer.activation is keras.activations.tanh for layer in dense[:-1])
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


@pytest.mark.slow
def test_glorot_uniform_start_and_zero_biases():
    model = build_model(load_config().model)
    kernel, bias = model.layers[0].get_weights()
    limit = np.sqrt(6 / (784 + 400))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.9 * limit  # spread over the whole range, not a narrower init
    assert not bias.any()


@pytest.mark.slow
def test_same_seed_gives_the_same_initial_weights():
    seed_everything(7)
    first = build_model(load_config().model).get_weights()
    seed_everything(7)
    second = build_model(load_config().model).get_weights()
    seed_everything(8)
    other = build_model(load_config().model).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adagrad"])
def test_compile_uses_the_configured_optimizer_and_rate(name):
    cfg = load_config(None, {"optimizer.name": name, "optimizer.learning_rate": 0.05})
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    assert type(model.optimizer).__name__.lower() == name
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


@pytest.mark.slow
def test_compiled_loss_is_categorical_crossentropy_on_one_hot_targets():
    cfg = load_config()
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    x = np.random.default_rng(0).random((8, 784), dtype=np.float32)
    targets = np.eye(10, dtype=np.float32)[np.arange(8)]
    probabilities = model.predict(x, verbose=0)
    expected = -np.mean(np.log(probabilities[np.arange(8), np.arange(8)]))
    result = model.evaluate(x, targets, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_uniform_and_normal_initialisers_use_the_configured_scale():
    seed_everything(0)
    uniform = build_model(load_config(None, {"model.kernel_initializer": "uniform", "model.init_scale": 0.05}).model)
    kernel = uniform.layers[0].get_weights()[0]
    assert np.abs(kernel).max() <= 0.05 and np.abs(kernel).max() > 0.049
    normal = build_model(load_config(None, {"model.kernel_initializer": "normal", "model.init_scale": 0.02}).model)
    assert normal.layers[0].get_weights()[0].std() == pytest.approx(0.02, rel=0.02)
    biased = build_model(load_config(None, {"model.bias_initializer": "ones"}).model)
    assert (biased.layers[0].get_weights()[1] == 1).all()


@pytest.mark.slow
def test_activation_per_layer_and_dropout_positions():
    cfg = load_config(
        None,
        {
            "model.hidden_units": [32, 16, 8],
            "model.activation": ["tanh", "sigmoid", "relu"],
            "model.dropout": 0.2,
            "model.dropout_after": [1, -1],
        },
    )
    model = build_model(cfg.model)
    kinds = [(type(layer).__name__, getattr(layer, "activation", None)) for layer in model.layers]
    assert [name for name, _ in kinds] == ["Dense", "Dropout", "Dense", "Dense", "Dropout", "Dense"]
    assert [fn.__name__ for _, fn in kinds if fn is not None] == ["tanh", "sigmoid", "relu", "softmax"]
    assert build_model(load_config(None, {"model.dropout": 0}).model).layers[2].name == "digits"


@pytest.mark.slow
def test_l2_adds_exactly_lambda_times_the_squared_weights_to_the_loss():
    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    targets = np.eye(10, dtype=np.float32)[np.arange(16) % 10]
    cfg = load_config(None, {"model.dropout": 0})
    seed_everything(0)
    plain = build_model(cfg.model)
    penalised = build_model(cfg.model, l2=0.01)
    penalised.set_weights(plain.get_weights())
    for model in (plain, penalised):
        compile_model(model, cfg.optimizer, cfg.train.loss)
    squares = sum(float(np.sum(layer.get_weights()[0] ** 2)) for layer in plain.layers)
    loss = plain.evaluate(x, targets, verbose=0, batch_size=16)[0]
    assert penalised.evaluate(x, targets, verbose=0, batch_size=16)[0] == pytest.approx(loss + 0.01 * squares, rel=1e-5)


@pytest.mark.slow
def test_momentum_nesterov_and_mse_compile_as_configured():
    cfg = load_config(
        None, {"optimizer.name": "momentum", "optimizer.nesterov": True, "train.loss": "mse", "model.dropout": 0}
    )
    model = build_model(cfg.model)
    compile_model(model, cfg.optimizer, cfg.train.loss)
    assert type(model.optimizer).__name__ == "SGD"
    assert model.optimizer.momentum == 0.9 and model.optimizer.nesterov
    x = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    targets = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]
    expected = np.mean((model.predict(x, verbose=0) - targets) ** 2)
    assert model.evaluate(x, targets, verbose=0)[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("step", 199, 0.1),  # 100 steps per epoch, decay every 2 epochs: unchanged before step 200
        ("step", 200, 0.05),
        ("exponential", 100, 0.1 * 0.5**0.5),
        ("cosine", 500, 0.05),  # halfway through 10 epochs of 100 steps
    ],
)
def test_learning_rate_schedules_decay_as_documented(schedule, step, expected):
    from mnist_dnn.training.compile import learning_rate

    cfg = load_config(None, {"optimizer.learning_rate": 0.1, "optimizer.schedule": schedule}).optimizer
    rate = learning_rate(cfg, steps_per_epoch=100, epochs=10)
    assert float(rate(step)) == pytest.approx(expected, rel=1e-5)

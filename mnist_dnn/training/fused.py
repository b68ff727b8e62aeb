"""The `fused` training engine: one compiled JAX call per epoch instead of one per batch.

Keras' `fit` on the JAX backend runs a Python loop that dispatches one jitted step per
batch; for a model this small the dispatch costs as much as the arithmetic. Here the
whole epoch — shuffle, 937 full batches under `jax.lax.scan`, the 32-image remainder,
and the validation pass — is a single XLA program over data that stays on the device.

It is the same training as `fit` because it runs Keras' own pure `train_step` and
`test_step` (loss, regularisation, optimizer update and running-mean metrics exactly as
`fit` computes them) on the same state; only the loop around them differs, and the
order of the batches, which comes from the run's seed.

Several models of one architecture (the paper's six custom-digit runs) train together:
the same epoch program is `jax.vmap`-ed over their stacked states and seeds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mnist_dnn.core.interrupts import poll
from mnist_dnn.training.loop import (
    ORDER_STREAM,
    EpochCallback,
    EpochInputs,
    StepLossCallback,
    TrainingControl,
    TrainingData,
    apply_control,
    batch_losses,
    build_for_training,
)


def train_fused(
    model,
    data: TrainingData,
    epochs: int,
    batch_size: int,
    seed: int,
    shuffle: bool,
    callbacks: Sequence[EpochCallback] = (),
    control: TrainingControl | None = None,
    epoch_inputs: EpochInputs | None = None,
    start_epoch: int = 0,
    step_callbacks: Sequence[StepLossCallback] = (),
    program: EpochProgram | None = None,
) -> dict[str, list[float]]:
    """Train a compiled Keras model (JAX backend) and return the same history `fit` would.

    The other arguments are train.train's: the loop stops or changes the learning rate
    between epochs when asked, with `epoch_inputs` uploads each epoch's (augmented)
    training inputs in place of data.x_train - same shape, so no recompile - and starts
    at `start_epoch` after a restored checkpoint. `program` is one already compiled for
    this architecture over `data` (runs of a bundle share it); by default, a new one.
    """
    together = train_fused_together(
        [model],
        data,
        epochs,
        batch_size,
        [seed],
        shuffle,
        [callbacks],
        control,
        epoch_inputs,
        start_epoch,
        [step_callbacks],
        program,
    )
    return together[0]


class EpochProgram:
    """The epoch program of one architecture, traced and compiled once, over training data uploaded once.

    Any compiled model of that architecture (same layers, loss, optimizer class and
    constants) trains through it: its state - weights, optimizer variables including a
    constant learning rate, dropout's seed - goes in as arguments. `single` trains one
    model; `vmapped` advances several stacked states at once.
    """

    def __init__(self, template, data: TrainingData, batch_size: int, shuffle: bool):
        import jax
        import jax.numpy as jnp

        self.batch_size, self.shuffle = batch_size, shuffle
        self.arrays = tuple(jnp.asarray(a) for a in (data.x_train, data.y_train, data.x_val, data.y_val))
        self._copies: dict = {}  # device -> the arrays copied onto it (another CPU device of this process)
        self._traced: dict = {}  # device -> the epoch program traced and lowered for it (trace_on)
        self._compiled: dict = {}  # device -> that compiled, by the first epoch_on there
        run_epoch = _epoch_program(template, batch_size, shuffle)
        self.single = jax.jit(run_epoch)
        self.vmapped = jax.jit(jax.vmap(run_epoch, in_axes=(0, 0, None, 0, None, None, None, None)))
        self._score = jax.jit(_score_program(template, batch_size))
        self._validation = (data.x_val, self.arrays[2:])

    def arrays_on(self, device) -> tuple:
        """The training and validation data on `device`: the upload itself there, else one copy kept per device."""
        import jax

        if device in self.arrays[0].devices():
            return self.arrays
        if device not in self._copies:
            self._copies[device] = jax.device_put(self.arrays, device)
        return self._copies[device]

    def trace_on(self, device, state, fresh) -> None:
        """Trace and lower the epoch program for `device`, in this thread, once; epoch_on runs it there.

        Tracing runs Keras' Python train_step, and Keras is not thread-safe: traced in a
        lane's thread while this one set up the next run's model, the program of a later
        bundle in the same process validated on the wrong numbers. So lanes trace here,
        in the one thread that builds models, and only XLA's compiling and running go to
        the device's thread. `state, fresh` (epoch_state's pair) give the shapes.
        """
        import jax

        if device not in self._traced:
            state, fresh, key = jax.device_put((state, fresh, jax.random.key(0)), device)
            self._traced[device] = self.single.lower(state, fresh, 0, key, *self.arrays_on(device))

    def epoch_on(self, device, epoch: int, seed: int, state, fresh) -> tuple:
        """Run epoch `epoch` (0-based) of a model with `seed` from `state` on `device`; (its results, seconds).

        `state, fresh` is epoch_state's pair for the model, and the program was traced for
        `device` (trace_on). The program, batch-order key and data are the model's lone
        run's, and each CPU device runs on one thread, so are the numbers (record_epoch
        takes them in). Blocks until the device is done: lanes call it from a thread per
        device, one epoch at a time on each.
        """
        import jax

        started = time.perf_counter()
        if device not in self._compiled:
            self._compiled[device] = self._traced[device].compile()
        order_key = jax.random.fold_in(jax.random.key(seed), ORDER_STREAM)
        state, fresh, order_key = jax.device_put((state, fresh, order_key), device)
        result = self._compiled[device](state, fresh, epoch, order_key, *self.arrays_on(device))
        return jax.block_until_ready(result), time.perf_counter() - started

    def evaluate(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        """evaluate.evaluate's loss and accuracy, through a program compiled once for every model of the bundle."""
        import jax.numpy as jnp

        if batch_size != self.batch_size:
            raise ValueError(f"this program scores in batches of {self.batch_size}, not {batch_size}")
        x_val, uploaded = self._validation
        arrays = uploaded if x is x_val else (jnp.asarray(x), jnp.asarray(y))  # the paper validates on the test set
        model.reset_metrics()
        values = self._score(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.metrics_variables],
            *arrays,
        )
        scores = _results(model, values)
        return {"loss": scores["loss"], "accuracy": scores["accuracy"]}


def train_fused_together(
    models: Sequence,
    data: TrainingData,
    epochs: int,
    batch_size: int,
    seeds: Sequence[int],
    shuffle: bool,
    callbacks: Sequence[Sequence[EpochCallback]],
    control: TrainingControl | None = None,
    epoch_inputs: EpochInputs | None = None,
    start_epoch: int = 0,
    step_callbacks: Sequence[Sequence[StepLossCallback]] | None = None,
    program: EpochProgram | None = None,
) -> list[dict[str, list[float]]]:
    """Train compiled models of one architecture on the same data, each with its own seed.

    With one model this is the plain fused loop; with several, one vmapped program per
    epoch advances them all, so they share the compile and each step's dispatch.
    Model k's history and callbacks are its own, as if it had trained alone.
    `program` is an EpochProgram already made for this architecture, data and batching.
    """
    import jax
    import jax.numpy as jnp

    if control is not None and len(models) > 1:
        raise ValueError("a TrainingControl steers one model; train models that may stop early one at a time")
    for model in models:
        build_for_training(model, data.x_train[:1], data.y_train[:1])
    if program is None:  # models[0]'s pure train_step/test_step serve every model's state
        program = EpochProgram(models[0], data, batch_size, shuffle)
    elif (program.batch_size, program.shuffle) != (batch_size, shuffle):
        raise ValueError("the shared epoch program was made for another batch size or shuffle setting")
    arrays = program.arrays
    order_keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), ORDER_STREAM) for seed in seeds])
    together = len(models) > 1
    run_epoch = program.vmapped if together else program.single

    step_callbacks = step_callbacks or [() for _ in models]
    histories: list[dict[str, list[float]]] = [{} for _ in models]
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        if epoch_inputs is not None:
            arrays = (jnp.asarray(epoch_inputs(epoch + 1)), *arrays[1:])
        states, fresh_metrics = zip(*(epoch_state(model) for model in models), strict=True)
        if together:
            state, val_metrics, losses = run_epoch(_stack(states), _stack(fresh_metrics), epoch, order_keys, *arrays)
            results = zip(_unstack(state, len(models)), _unstack(val_metrics, len(models)), losses, strict=True)
        else:
            results = [run_epoch(states[0], fresh_metrics[0], epoch, order_keys[0], *arrays)]
        results = jax.block_until_ready(list(results))  # dispatch is asynchronous: time the work, not the call
        elapsed = time.perf_counter() - started
        for model, result, history, model_callbacks, model_step_callbacks in zip(
            models, results, histories, callbacks, step_callbacks, strict=True
        ):
            metrics = record_epoch(
                model, result, epoch, elapsed, batch_size, len(data.x_train), model_callbacks, model_step_callbacks
            )
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
        poll()  # the compiled epoch is where a Ctrl-C usually lands: it takes effect here, after it
        if apply_control(models[0], control):
            break
    return histories


def epoch_state(model) -> tuple:
    """(train state, fresh metric values): what the epoch program takes for `model`, its metrics reset."""
    model.reset_metrics()
    fresh = [v.value for v in model.metrics_variables]
    trainable = [v.value for v in model.trainable_variables]
    return (
        trainable,
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        fresh,
    ), fresh


def record_epoch(
    model,
    result,
    epoch: int,
    elapsed: float,
    batch_size: int,
    train_size: int,
    callbacks: Sequence[EpochCallback] = (),
    step_callbacks: Sequence[StepLossCallback] = (),
) -> dict[str, float]:
    """Take epoch `epoch`'s (0-based) results into `model` and call its callbacks; its metrics, as `fit` logs them."""
    (trainable, non_trainable, optimizer_state, train_metrics), val, running_loss = result
    metrics = _results(model, train_metrics)
    metrics.update({f"val_{name}": value for name, value in _results(model, val).items()})
    _assign(model.trainable_variables, trainable)
    _assign(model.non_trainable_variables, non_trainable)
    _assign(model.optimizer.variables, optimizer_state)
    metrics["epoch_time_s"] = elapsed
    for step_callback in step_callbacks:
        step_callback(epoch + 1, batch_losses(np.asarray(running_loss), batch_size, train_size))
    for callback in callbacks:
        callback(epoch + 1, metrics)
    return metrics


def _run_batches(step, state, x, y, order, batch_size: int):
    """Keras' step over `order` in batches: a scan over the full ones, then the remainder.

    Also returns the running mean loss after every batch, as `fit` reports it to callbacks.
    """
    import jax
    import jax.numpy as jnp

    full, rest = divmod(order.shape[0], batch_size)

    def one_batch(state, indices):
        logs, state = step(state, (x[indices], y[indices]))
        return state, logs["loss"]

    state, losses = jax.lax.scan(one_batch, state, order[: full * batch_size].reshape(full, batch_size))
    if rest:
        state, last = one_batch(state, order[full * batch_size :])
        losses = jnp.append(losses, last)
    return state, losses


def _epoch_program(model, batch_size: int, shuffle: bool):
    """A pure function: one epoch of Keras' train_step over shuffled batches, then validation."""
    import jax
    import jax.numpy as jnp

    # The data are arguments, not closed-over constants: constants would be baked into the
    # compiled program (188 MB of pixels) and make compiling take seconds.
    def run_epoch(train_state, val_metrics, epoch, order_key, x_train, y_train, x_val, y_val):
        if shuffle:
            order = jax.random.permutation(jax.random.fold_in(order_key, epoch), x_train.shape[0])
        else:
            order = jnp.arange(x_train.shape[0])
        train_state, losses = _run_batches(model.train_step, train_state, x_train, y_train, order, batch_size)
        trainable, non_trainable, _, _ = train_state
        val_metrics = _score_program(model, batch_size)(trainable, non_trainable, val_metrics, x_val, y_val)
        return train_state, val_metrics, losses

    return run_epoch


def _score_program(model, batch_size: int):
    """A pure function: Keras' test_step over x in order, batch by batch, as `evaluate` runs it -> metric values."""
    import jax.numpy as jnp

    def score(trainable, non_trainable, metrics, x, y):
        (_, _, metrics), _ = _run_batches(
            model.test_step, (trainable, non_trainable, metrics), x, y, jnp.arange(x.shape[0]), batch_size
        )
        return metrics

    return score


def _stack(trees):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree, count: int):
    import jax

    return [jax.tree.map(lambda leaf, k=k: leaf[k], tree) for k in range(count)]


def _results(model, metric_values) -> dict[str, float]:
    """Metric results (loss, accuracy) from a list of metric-variable values."""
    _assign(model.metrics_variables, metric_values)
    return {name: float(np.asarray(value)) for name, value in model.get_metrics_result().items()}


def _assign(variables, values) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)

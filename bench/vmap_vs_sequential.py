"""Seconds per epoch of K models of one bundle: vmapped together, or one after another through one program.

    python bench/vmap_vs_sequential.py --models 4 --epochs 3

What `bundles.execution_mode` chooses between: the same EpochProgram, compiled once,
run as `.vmapped` over the K stacked states or as `.single` K times. The first epoch of
each carries the compile and is reported apart.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from mnist_dnn.core.backend import activate_backend, seed_everything

    activate_backend("jax")
    import jax
    import jax.numpy as jnp

    from mnist_dnn.core.config import load_config
    from mnist_dnn.data.mnist import load_mnist
    from mnist_dnn.experiments.experiment import _compiled_model, prepare_data
    from mnist_dnn.training.fused import EpochProgram, _stack
    from mnist_dnn.training.loop import ORDER_STREAM, build_for_training

    cfg = load_config(None, {"train.backend": "jax", "train.engine": "fused"})
    data = prepare_data(cfg, load_mnist())
    models = []
    for seed in range(args.models):
        seed_everything(seed)
        model = _compiled_model(cfg, data)
        build_for_training(model, data.training.x_train[:1], data.training.y_train[:1])
        models.append(model)
    program = EpochProgram(models[0], data.training, cfg.train.batch_size, cfg.train.shuffle)
    keys = [jax.random.fold_in(jax.random.key(seed), ORDER_STREAM) for seed in range(args.models)]

    def state(model):
        metrics = [v.value for v in model.metrics_variables]
        variables = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)
        return tuple([v.value for v in group] for group in variables) + (metrics,), metrics

    states = [state(model) for model in models]
    stacked = (_stack([s for s, _ in states]), _stack([m for _, m in states]), jnp.stack(keys))
    times: dict[str, list[float]] = {"sequential": [], "vmap": []}
    for epoch in range(args.epochs):
        for mode in times:
            started = time.perf_counter()
            if mode == "vmap":
                jax.block_until_ready(program.vmapped(stacked[0], stacked[1], epoch, stacked[2], *program.arrays))
            else:
                for (train_state, metrics), key in zip(states, keys, strict=True):
                    jax.block_until_ready(program.single(train_state, metrics, epoch, key, *program.arrays))
            times[mode].append(time.perf_counter() - started)
    for mode, seconds in times.items():
        later = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
        print(f"{mode}: {args.models} models, first epoch {seconds[0]:.2f} s, then median {later:.2f} s per epoch")


if __name__ == "__main__":
    main()

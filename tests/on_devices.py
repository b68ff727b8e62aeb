"""A bundle, or a trial's runs in step, trained in a process of its own with N JAX CPU devices.

    python -m tests.on_devices N OUT {bundle|diverging|in_step|custom} [RUN_NAME EPOCH]

XLA fixes the number of CPU devices when JAX starts, so each count needs its own process.
RUN_NAME EPOCH: a Ctrl-C right after that member's checkpoint of that epoch (the bundle
stops there, as `sweep` does). OUT/report.json says what ran where.
"""

import json
import sys
from pathlib import Path


def main(devices: int, out: Path, what: str, interrupt: tuple[str, int] | None) -> None:
    from mnist_dnn.core.backend import activate_backend

    activate_backend("jax", cpu_devices=devices)
    import jax

    from mnist_dnn.experiments.bundles import execution_mode, train_bundle, train_custom_runs, train_in_step
    from mnist_dnn.training.checkpoint import Checkpointer
    from tests.test_bundles import _custom_seeds, _holdout_seeds, _lr_seed_bundle, synthetic_dataset
    from tests.test_train import _separable_digits

    report = {"devices": len(jax.devices()), "mode": execution_mode(), "finished": [], "interrupted": False}
    if interrupt is not None:
        original = Checkpointer.__call__

        def interrupt_after(self, epoch, metrics):
            original(self, epoch, metrics)
            if (self.run_dir.name, epoch) == interrupt:
                raise KeyboardInterrupt

        Checkpointer.__call__ = interrupt_after
    try:
        if what == "in_step":
            cfgs = _holdout_seeds(seeds=(0, 1, 2))
            dirs = [out / f"seed{cfg.train.seed}" for cfg in cfgs]
            seen = report.setdefault("seen", [])

            def on_epoch(epoch, rows):
                seen.append([row["val_accuracy"] for row in rows])
                return False

            train_in_step(cfgs, dirs, synthetic_dataset(), on_epoch)
        elif what == "custom":
            cfgs = _custom_seeds()
            dirs = [out / f"run-{k}" for k in range(1, len(cfgs) + 1)]
            digits = _separable_digits(5, 7)
            done = report["finished"]
            train_custom_runs(cfgs, dirs, synthetic_dataset(), digits, lambda k, model, metrics: done.append(k))
        else:
            bundle = _lr_seed_bundle(rates="0.001,1e30", epochs=3) if what == "diverging" else _lr_seed_bundle()
            dirs = [out / run.directory for run in bundle.members]
            train_bundle(bundle, dirs, synthetic_dataset(), lambda k, m: report["finished"].append(k))
    except KeyboardInterrupt:
        report["interrupted"] = True
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    name, epoch = (sys.argv[4], int(sys.argv[5])) if len(sys.argv) > 5 else (None, 0)
    main(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], None if name is None else (name, epoch))

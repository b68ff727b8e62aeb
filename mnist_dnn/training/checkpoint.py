"""Checkpoints that let an interrupted run continue to exactly the result it would have had.

    saver = Checkpointer(run_dir, cfg, dataset.checksums, every=1, resume=False)
    start = saver.restore(model, x_train[:1], y_train[:1])   # 0, or the checkpoint's epoch on resume
    train(model, data, cfg.train, callbacks=(saver,), start_epoch=start)
    history = saver.full_history()

`checkpoint.npz` holds everything the next epoch depends on: the weights, the optimizer's
variables (step count, learning rate, moments), the non-trainable variables (Dropout's
SeedGenerator state), the global random states (Python's, NumPy's, Keras' global
SeedGenerator), the state of the monitors that steer training (early stopping's best
epoch and weights, the plateau schedule's patience) and the history rows so far. Batch
order and augmentation need none of these: both engines draw them from the seed and the
epoch number.

The file is a plain .npz (read with allow_pickle=False), written atomically, and only
the newest one is kept. The epoch callback writes history.csv every epoch and the
checkpoint every `every` epochs (and after the last), both inside one `deferred` block,
so a Ctrl-C never separates a history row from its checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.config import Config, config_to_toml
from mnist_dnn.core.errors import UserInputError, open_regular
from mnist_dnn.core.interrupts import deferred
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs.directory import CHECKPOINT_FILE
from mnist_dnn.training.loop import build_for_training

_GROUPS = ("trainable", "non_trainable", "optimizer")  # the model's variable lists, in this order
_KERAS_GLOBAL_SEED = "global_seed_generator"  # keras.src.random.seed_generator's global attribute


class Stateful(Protocol):
    """A training monitor whose memory must survive an interrupt (early stopping, reduce-on-plateau)."""

    def get_state(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        """JSON-ready values and arrays."""

    def set_state(self, values: dict[str, Any], arrays: list[np.ndarray]) -> None: ...


class Checkpointer:
    """The epoch callback that keeps history.csv and checkpoint.npz; also restores a run from them."""

    def __init__(
        self,
        run_dir: Path,
        cfg: Config,
        data_checksums: Mapping[str, str],
        every: int = 1,
        resume: bool = False,
        monitors: Mapping[str, Stateful] | None = None,
    ):
        """`every` = 0 writes history.csv only (no checkpoints); `resume` continues from run_dir's checkpoint.

        `monitors` are saved and restored with the model, under their names.
        """
        if every < 0:
            raise ValueError(f"checkpoint interval must be >= 0, got {every}")
        self.run_dir = run_dir
        self.epochs = cfg.train.epochs
        self.every = every
        self.resume = resume
        self.monitors = dict(monitors or {})
        self.identity = {
            "config_sha256": hashlib.sha256(config_to_toml(cfg).encode()).hexdigest(),
            "data_checksums": dict(sorted(data_checksums.items())),
        }
        self.history = runs.HistoryWriter(run_dir / runs.HISTORY_FILE)
        self.model = None

    @property
    def path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def restore(self, model, x_sample: np.ndarray, y_sample: np.ndarray) -> int:
        """Attach to a compiled model; when resuming, load the checkpoint into it and return its epoch.

        The model's optimizer and metric variables are created first (from one sample batch,
        as fit would), so every variable the checkpoint holds has a place to go.
        """
        self.model = model
        if not self.resume or not self.path.exists():  # interrupted before the first checkpoint: start over
            return 0
        build_for_training(model, x_sample, y_sample)
        meta, arrays = read_checkpoint(self.path)
        for key, expected in self.identity.items():
            if meta.get(key) != expected:
                what = "config.toml" if key == "config_sha256" else "the training data (checksums)"
                raise UserInputError(f"{self.path}: {what} changed since this checkpoint was written; cannot resume")
        _assign_groups(model, meta, arrays, self.path)
        _set_random_states(meta, arrays, self.path)
        _set_monitor_states(self.monitors, meta, arrays, self.path)
        previous = [dict(row) for row in meta["history"]]
        self.history = runs.HistoryWriter(self.run_dir / runs.HISTORY_FILE, previous)
        runs.atomic_write_text(self.history.path, runs.history_to_csv(previous))
        return int(meta["epoch"])

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        rows = [*self.history.rows, {"epoch": epoch, **metrics}]
        with deferred():  # the history row and its checkpoint, both or neither
            if self.every and self.model is not None and (epoch % self.every == 0 or epoch == self.epochs):
                content = checkpoint_bytes(self.model, epoch, rows, self.identity, self.monitors)
                atomic_write_bytes(self.path, content)
            self.history(epoch, metrics)

    def full_history(self) -> dict[str, list[float]]:
        """The history from epoch 1, as history.csv holds it: a checkpoint's rows, then this process's epochs."""
        return self.history.columns()


def checkpoint_bytes(
    model,
    epoch: int,
    rows: Sequence[Mapping[str, float]],
    identity: Mapping[str, Any],
    monitors: Mapping[str, Stateful] | None = None,
) -> bytes:
    """The .npz content of a checkpoint after `epoch` (1-based) of `model`."""
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, list[list]] = {}
    for group, variables in zip(_GROUPS, _variable_groups(model), strict=True):
        shapes[group] = []
        for index, variable in enumerate(variables):
            value = np.asarray(variable.numpy())
            arrays[f"{group}_{index}"] = value
            shapes[group].append([variable.path, list(value.shape), str(value.dtype)])
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    arrays["numpy_rng_keys"] = np.asarray(keys, dtype=np.uint32)
    version, python_state, gauss_next = random.getstate()
    arrays["python_rng_state"] = np.asarray(python_state, dtype=np.uint64)
    keras_seed = _keras_global_seed_state()
    if keras_seed is not None:
        arrays["keras_global_seed"] = keras_seed
    monitor_values = {}
    for name, monitor in (monitors or {}).items():
        values, monitor_arrays = monitor.get_state()
        monitor_values[name] = {"values": values, "arrays": len(monitor_arrays)}
        arrays.update({f"monitor_{name}_{k}": value for k, value in enumerate(monitor_arrays)})
    meta = {
        "format_version": runs.FORMAT_VERSION,
        "epoch": epoch,
        **identity,
        "variables": shapes,
        "numpy_rng": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": cached_gaussian},
        "python_rng": {"version": version, "gauss_next": gauss_next},
        "monitors": monitor_values,
        "history": [dict(row) for row in rows],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A checkpoint's metadata and arrays; anything but a checkpoint this version can read is refused."""
    try:
        with open_regular(path, "a checkpoint") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except UserInputError:
        raise
    except FileNotFoundError:
        raise UserInputError(f"{path}: no checkpoint here") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UserInputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise UserInputError(f"{path}: not a checkpoint of mnist-dnn (no readable 'meta' entry)") from None
    if not isinstance(meta, dict):
        raise UserInputError(f"{path}: not a checkpoint of mnist-dnn ('meta' is not a JSON object)")
    runs.check_format_version(meta.get("format_version"), path)
    _check_meta(meta, path)
    return meta, arrays


def saved_epoch(run_dir: Path) -> int | None:
    """The epoch of run_dir's checkpoint, or None when it has none (or an unreadable one)."""
    try:
        return int(read_checkpoint(run_dir / CHECKPOINT_FILE)[0]["epoch"])
    except UserInputError:
        return None


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    def bad(what: str) -> UserInputError:
        return UserInputError(f"{path}: damaged checkpoint metadata ({what})")

    if not isinstance(meta.get("epoch"), int) or meta["epoch"] < 1:
        raise bad("epoch")
    history = meta.get("history")
    if not isinstance(history, list) or len(history) != meta["epoch"]:
        raise bad("history rows do not match the epoch")
    for row in history:
        if not isinstance(row, dict) or not all(isinstance(v, (int, float)) for v in row.values()):
            raise bad("history row")
    variables = meta.get("variables")
    if not isinstance(variables, dict) or not all(isinstance(variables.get(g), list) for g in _GROUPS):
        raise bad("variables")
    for key in ("numpy_rng", "python_rng"):
        if not isinstance(meta.get(key), dict):
            raise bad(key)


def _variable_groups(model) -> tuple[list, list, list]:
    return list(model.trainable_variables), list(model.non_trainable_variables), list(model.optimizer.variables)


def _assign_groups(model, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    """Check every saved array against the model's variable of that place, then assign them all."""
    pending = []
    for group, variables in zip(_GROUPS, _variable_groups(model), strict=True):
        saved = meta["variables"][group]
        if len(saved) != len(variables):
            raise UserInputError(
                f"{path}: {len(saved)} {group} variables saved, the model of config.toml has {len(variables)}"
            )
        for index, variable in enumerate(variables):
            value = arrays.get(f"{group}_{index}")
            if value is None:
                raise UserInputError(f"{path}: {group}_{index} is missing")
            if tuple(value.shape) != tuple(variable.shape) or np.dtype(value.dtype) != np.dtype(variable.dtype):
                raise UserInputError(
                    f"{path}: {group}_{index} is {value.dtype}{list(value.shape)}, "
                    f"the model's {variable.path} is {variable.dtype}{list(variable.shape)}"
                )
            pending.append((variable, value))
    for variable, value in pending:
        variable.assign(value)


def _set_random_states(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    numpy_rng, python_rng = meta["numpy_rng"], meta["python_rng"]
    keys, state = arrays.get("numpy_rng_keys"), arrays.get("python_rng_state")
    damaged = UserInputError(f"{path}: damaged checkpoint (random-number state)")
    if keys is None or keys.shape != (624,) or state is None or state.shape != (625,):
        raise damaged
    try:
        numpy_state = (numpy_rng["kind"], keys.astype(np.uint32), numpy_rng["pos"], numpy_rng["has_gauss"])
        np.random.set_state((*numpy_state, numpy_rng["cached_gaussian"]))
        random.setstate((python_rng["version"], tuple(int(v) for v in state), python_rng["gauss_next"]))
    except (KeyError, TypeError, ValueError):
        raise damaged from None
    if "keras_global_seed" in arrays:
        from keras.src.random.seed_generator import global_seed_generator

        generator = global_seed_generator()
        if arrays["keras_global_seed"].shape != tuple(generator.state.shape):
            raise damaged
        generator.state.assign(arrays["keras_global_seed"])


def _set_monitor_states(
    monitors: Mapping[str, Stateful], meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path
) -> None:
    saved = meta.get("monitors", {})
    if not isinstance(saved, dict) or set(saved) != set(monitors):
        raise UserInputError(f"{path}: damaged checkpoint (its monitors do not match config.toml's)")
    for name, monitor in monitors.items():
        entry = saved[name]
        try:
            monitor_arrays = [arrays[f"monitor_{name}_{k}"] for k in range(int(entry["arrays"]))]
            monitor.set_state(dict(entry["values"]), monitor_arrays)
        except (KeyError, TypeError, ValueError):
            raise UserInputError(f"{path}: damaged checkpoint (state of {name})") from None


def _keras_global_seed_state() -> np.ndarray | None:
    """Keras' global SeedGenerator's state, if something created it (unseeded keras.random calls do)."""
    from keras.src.backend.common import global_state

    generator = global_state.get_global_attribute(_KERAS_GLOBAL_SEED)
    return None if generator is None else np.asarray(generator.state.numpy())


def interrupted_message(run_dir: Path) -> str:
    """What survived an interrupt, and the command that continues it."""
    epoch = saved_epoch(run_dir)
    if epoch is None:
        return f"Interrupted with no checkpoint saved; --resume {run_dir} starts it again from epoch 1"
    saved = "epoch 1 is" if epoch == 1 else f"epochs 1-{epoch} are"
    return (
        f"Interrupted: {saved} saved in {run_dir} (history.csv, checkpoint.npz). "
        f"Resume: mnist-dnn train --resume {run_dir}"
    )

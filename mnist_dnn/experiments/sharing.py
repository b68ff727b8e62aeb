"""Which runs may share one compiled epoch program, and what each member carries: the one answer.

    key = program_key(cfg)              # None: the run trains alone
    together = one_program(cfgs)        # True: these runs can go through one program

Every key of the config schema is classified here (a test checks that none is missing):

- MEMBER_KEYS: what each member of a shared program carries as its own state - the seed
  (initial weights, dropout, batch order), the initial-weight distribution, and the
  learning rate when the schedule is constant (Keras' optimizers keep it in a variable;
  a schedule is a Python object baked into the program, so with one the rate must be equal).
- ALONE_WHEN: keys whose value, when it holds, means the run is steered or fed on its own
  (early stopping, a plateau schedule, augmentation, Keras' fit): it never shares.
- PROGRAM_KEYS: everything else shapes the program or its data and must be equal.

A key added to config.py but to none of these makes every run that sets it to anything
but its default train alone, so a new key can slow a sweep down but never silently drop
out of it. Sweep, tune and section 5.2.2's runs all ask here.

Before this module (mnist-dnn 0.1.0 up to issue 19), sweeps and tune bundled runs that
augment with only the MISSED_KEYS, and the shared program never augmented them:
`misbundled` recognises such runs so that their directories are refused when continued.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_dnn.core.config import Config, load_config
from mnist_dnn.data.splits import split_seed
from mnist_dnn.runs import directory as runs

MEMBER_KEYS = frozenset(
    {
        "train.seed",
        "model.kernel_initializer",
        "model.init_scale",
        "model.bias_initializer",
        "optimizer.learning_rate",  # per member with a constant schedule only (program_key)
        "validation.split_seed",  # resolved with the seed: members must validate on the same images
    }
)

_ON: Callable[[Any], bool] = bool
ALONE_WHEN: dict[str, Callable[[Any], bool]] = {
    "train.engine": lambda engine: engine != "fused",  # Keras' fit has no shared program
    "regularization.early_stopping": _ON,
    "optimizer.schedule": lambda schedule: schedule == "plateau",  # steered by the run's own val_loss
    "regularization.augment_shift": _ON,  # augmentation: each run's own fresh inputs every epoch
    "regularization.augment_rotation": _ON,
    "regularization.augment_scale": _ON,
    "regularization.augment_stroke": _ON,
    "regularization.augment_blur": _ON,
    "regularization.augment_elastic": _ON,
}

PROGRAM_KEYS = frozenset(
    {
        "data.data_dir",
        "data.train_limit",
        "preprocess.method",
        "model.hidden_units",
        "model.activation",
        "model.dropout",
        "model.dropout_after",
        "model.batch_norm",  # layers and non-trainable moving statistics: the program's shape
        "model.conv_filters",
        "model.conv_kernel",
        "model.conv_padding",
        "model.conv_activation",
        "model.pool",
        "optimizer.name",
        "optimizer.momentum",
        "optimizer.nesterov",
        "optimizer.schedule",
        "optimizer.decay_rate",
        "optimizer.decay_epochs",
        "optimizer.plateau_patience",
        "train.epochs",
        "train.batch_size",
        "train.loss",
        "train.backend",
        "train.engine",
        "train.shuffle",
        "regularization.l1",
        "regularization.l2",
        "regularization.early_stopping",
        "regularization.early_stopping_monitor",
        "regularization.early_stopping_patience",
        "regularization.early_stopping_restore_best",
        "regularization.augment_shift",
        "regularization.augment_rotation",
        "regularization.augment_scale",
        "regularization.augment_stroke",
        "regularization.augment_blur",
        "regularization.augment_elastic",
        "validation.source",
        "validation.fraction",
        "validation.folds",
        "validation.fold",
    }
)


def schema_keys() -> list[str]:
    """Every dotted key of the config schema, walked from config.Config's dataclasses."""
    return [
        f"{section.name}.{key.name}"
        for section in dataclasses.fields(Config)
        for key in dataclasses.fields(section.default_factory)
    ]


def unclassified_keys() -> list[str]:
    """Schema keys this module does not know: any run setting one of them off its default trains alone."""
    return [key for key in schema_keys() if key not in MEMBER_KEYS | PROGRAM_KEYS]


def _value(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def alone_reason(cfg: Config) -> str | None:
    """Why a run cannot share a program ('regularization.augment_blur = 1.5'), or None if it can."""
    for key, alone in ALONE_WHEN.items():
        if alone(_value(cfg, key)):
            return f"{key} = {_value(cfg, key)!r}"
    default = Config()
    for key in unclassified_keys():
        if _value(cfg, key) != _value(default, key):
            return f"{key} is not classified in sharing.py"
    return None


def can_share(cfg: Config) -> bool:
    """Whether a run may share its program with others (alone_reason gives why not)."""
    return alone_reason(cfg) is None


def program_key(cfg: Config) -> tuple | None:
    """What must be equal for runs to share one program; None if the run cannot share at all.

    Two runs with equal keys train on the same images through the same program and differ
    only in MEMBER_KEYS. The split seed stands in for the seed where the validation images
    are drawn from it; with a schedule other than constant the learning rate is part of
    the program.
    """
    if not can_share(cfg):
        return None
    key = [(name, _value(cfg, name)) for name in schema_keys() if name not in MEMBER_KEYS]
    key.append(("validation.split_seed", split_seed(cfg.validation, cfg.train.seed)))
    if cfg.optimizer.schedule != "constant":
        key.append(("optimizer.learning_rate", cfg.optimizer.learning_rate))
    return tuple(key)


def one_program(cfgs: Sequence[Config]) -> bool:
    """Whether all these runs can go through one shared program (each can share, and all alike)."""
    keys = {program_key(cfg) for cfg in cfgs}
    return None not in keys and len(keys) == 1


MISSED_KEYS = (
    "regularization.augment_scale",
    "regularization.augment_stroke",
    "regularization.augment_blur",
    "regularization.augment_elastic",
)
"""The augmentation keys that bundles.can_share once let through (issue 19): its shared program dropped them."""

SHARING_VERSION = 2
"""Recorded in a sweep's sweep.json: 2 = made with this module; absent = made before it (issue 19)."""


def misbundled(run_dir: Path) -> str | None:
    """Why a finished run's files are not what its config says, or None.

    Such a run went through a shared program (metrics.json's `bundle_members`) although its
    config cannot share one: the reason names the key that program did not honour.
    """
    metrics = runs.read_json(run_dir / runs.METRICS_FILE)
    if not metrics or "bundle_members" not in metrics.get("timings", {}):
        return None
    return alone_reason(load_config(run_dir / runs.CONFIG_FILE))


def as_once_shared(cfg: Config) -> Config:
    """The config as the bundling before issue 19 saw it: the MISSED_KEYS off (to tell which runs it bundled)."""
    missed = {key.partition(".")[2]: 0.0 for key in MISSED_KEYS}
    return dataclasses.replace(cfg, regularization=dataclasses.replace(cfg.regularization, **missed))


def refusal(directory: Path, run: str, reason: str) -> str:
    """The one line that refuses to continue a sweep or tune directory holding a misbundled run."""
    return (
        f"--out {directory}: {run} went through a program shared with other runs, which ignored {reason} "
        "(mnist-dnn 0.1.0 before issue 19's fix), so its files are not what its config says; "
        "nothing was deleted: run it again into a new --out (docs/sharing.md)"
    )

"""Bundles: the runs of a sweep that can share one compiled epoch program of the fused engine.

    bundles = plan_bundles(plan)                       # plan: sweep.plan_sweep's PlannedRuns
    for bundle in bundles:
        dirs = [sweep_dir / run.directory for run in bundle.members]
        metrics = train_bundle(bundle, dirs, dataset, on_run_done=lambda k, m: print(k, m["test_accuracy"]))

`plan_bundles(plan) -> list[Bundle]` groups runs whose epoch program is the same: the
seeds of one setting, and settings that differ only in what the program carries as
state (a constant learning rate is a variable of Keras' optimizers; initial weights).
Everything else that shapes the program or the data splits them; runs that cannot share
at all (the `fit` engine, early stopping, a plateau schedule, augmentation) are bundles
of one. Bundles come in the order of their first run in the plan, members in plan order.

`train_bundle(bundle, run_dirs, data, on_run_done=None) -> list[dict]` trains the members
into `run_dirs` (one per member, each missing, empty, interrupted or finished) and
returns each member's metrics.json content in member order. A finished run is read, not
trained again; an interrupted one continues from its checkpoint. `data` is the
`data.Dataset` the members' config names (plain numpy arrays and strings: picklable).
`on_run_done(member_index, metrics)` is called as each member finishes.

Each run directory is exactly what `mnist-dnn train` writes for that config: an ordinary,
resumable run.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_dnn import runs
from mnist_dnn.config import Config, ModelConfig
from mnist_dnn.errors import UserInputError
from mnist_dnn.splits import split_seed

if TYPE_CHECKING:  # sweep.py drives bundles, so it is imported for the type only
    from mnist_dnn.sweep import PlannedRun

RunDone = Callable[[int, dict[str, Any]], None]
"""(member index, metrics) after each member of a bundle finishes."""


@dataclass(frozen=True)
class Bundle:
    """Planned runs that one compiled epoch program can train (a single run when nothing can share)."""

    members: tuple[PlannedRun, ...]


def can_share(cfg: Config) -> bool:
    """Whether a run may share its program: fused engine, and nothing that steers or feeds one run alone."""
    reg = cfg.regularization
    return (
        cfg.train.engine == "fused"
        and not reg.early_stopping
        and cfg.optimizer.schedule != "plateau"
        and not (reg.augment_shift or reg.augment_rotation)
    )


def program_key(cfg: Config) -> Config | None:
    """The config with what the epoch program carries as state blanked out; None if the run cannot share.

    Two runs with equal keys train on the same images through the same program: they
    differ in the seed (initial weights, dropout, batch order), the initial-weight
    distribution, and - when the schedule is constant - the learning rate, which Keras'
    optimizers keep in a variable. A schedule is a Python object baked into the program,
    so with one its rate stays in the key. The split seed stands in for the seed where
    the validation images are drawn from it.
    """
    if not can_share(cfg):
        return None
    opt = cfg.optimizer
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, seed=0),
        optimizer=dataclasses.replace(opt, learning_rate=0.0) if opt.schedule == "constant" else opt,
        model=dataclasses.replace(
            cfg.model,
            kernel_initializer=ModelConfig.kernel_initializer,
            init_scale=ModelConfig.init_scale,
            bias_initializer=ModelConfig.bias_initializer,
        ),
        validation=dataclasses.replace(cfg.validation, split_seed=split_seed(cfg.validation, cfg.train.seed)),
    )


def plan_bundles(plan: Sequence[PlannedRun], *, max_members: int | None = None) -> list[Bundle]:
    """Group a sweep's runs into bundles that share a program; deterministic for a given plan.

    `max_members` caps a bundle's size (an executor that spreads bundles over workers
    splits large ones) into pieces as even as can be, in plan order.
    """
    if max_members is not None and max_members < 1:
        raise ValueError(f"max_members must be at least 1, got {max_members}")
    groups: dict[Any, list[PlannedRun]] = {}
    for index, run in enumerate(plan):
        key = program_key(run.config)
        groups.setdefault(index if key is None else key, []).append(run)
    bundles = []
    for members in groups.values():  # dicts keep insertion order: the order of each group's first run
        pieces = -(-len(members) // (max_members or len(members)))
        cuts = [len(members) * k // pieces for k in range(pieces + 1)]
        bundles += [Bundle(tuple(members[start:end])) for start, end in itertools.pairwise(cuts)]
    return bundles


def train_bundle(
    bundle: Bundle, run_dirs: Sequence[Path], data, on_run_done: RunDone | None = None
) -> list[dict[str, Any]]:
    """Train a bundle's members into `run_dirs`; return their metrics in member order (see the module docstring)."""
    from mnist_dnn.experiment import train_and_evaluate

    if len(run_dirs) != len(bundle.members):
        raise ValueError(f"{len(bundle.members)} members but {len(run_dirs)} run directories")
    results = []
    for index, (run, run_dir) in enumerate(zip(bundle.members, run_dirs, strict=True)):
        state = member_state(run_dir)
        if state == "complete":
            metrics = runs.read_metrics(run_dir)
        else:
            metrics = train_and_evaluate(run.config, data, run_dir, 0, resume=state == "resumable")
        results.append(metrics)
        if on_run_done is not None:
            on_run_done(index, metrics)
    return results


def member_state(run_dir: Path) -> str:
    """'complete', 'resumable' or 'new' (made ready: created, or found empty).

    A directory that holds files but no status.json, or a run another live process is
    training, is refused with one line.
    """
    status = runs.read_status(run_dir) if run_dir.is_dir() else None
    if status is not None and status["status"] == "complete":
        return "complete"
    if status is not None:
        runs.check_not_running(run_dir, status)
        return "resumable"
    if run_dir.exists():  # created, then stopped before it wrote anything: nothing to keep
        leftovers = sorted(p.name for p in run_dir.iterdir())
        if leftovers:
            raise UserInputError(f"{run_dir}: holds {', '.join(leftovers)} but no status.json; move it away")
        return "new"
    run_dir.mkdir(parents=True)
    return "new"

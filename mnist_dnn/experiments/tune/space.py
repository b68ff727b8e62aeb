"""A search's space and plan: `--space` parsed and checked against the base config before anything trains,
and what each trial trains (its config, seeds and sampler seed).

    space = check_space([parse_dimension(t) for t in texts], base)
    plan = TunePlan(base, space, seeds=(0, 1), trials=12, study_seed=0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.config import (
    Config,
    ValidationConfig,
    apply_overrides,
    config_to_toml,
    parse_assignment,
    resolve_config,
)
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES
from mnist_dnn.experiments.sweep import parse_seeds, split_top_level
from mnist_dnn.training.model import INPUT_SIZE

KINDS = ("log", "float", "int", "choice")
FORBIDDEN_PREFIXES = ("train.seed", "validation.", "train.backend", "train.engine")  # fixed by the study itself
MAX_SEEDS = 64  # a trial's seeds are one bundle, vmapped on a GPU: a typo such as --seeds 0-9999 would not fit


@dataclass(frozen=True)
class Dimension:
    """One --space: a config key and where Optuna may look (a range, or choices as TOML texts)."""

    key: str
    kind: str  # one of KINDS
    low: float = 0.0
    high: float = 0.0
    integer: bool = False  # the key holds integers: log and int ranges suggest integers
    choices: tuple[str, ...] = ()  # TOML texts, Optuna's categories (it cannot hold lists)
    values: tuple[Any, ...] = ()  # the parsed choices

    @property
    def extremes(self) -> tuple[Any, ...]:
        """Every choice, or a range's two ends as the config takes them: what any drawn value can differ in."""
        return self.values if self.kind == "choice" else (_value(self, self.low), _value(self, self.high))

    @property
    def text(self) -> str:
        if self.kind == "choice":
            return f"{self.key}=choice:{','.join(self.choices)}"
        return f"{self.key}={self.kind}:{_number(self.low)}..{_number(self.high)}"


@dataclass(frozen=True)
class TunePlan:
    """What defines a study: the base config, the space, the seeds; `trials` is how far to take it."""

    base: Config
    space: tuple[Dimension, ...]
    seeds: tuple[int, ...]
    trials: int
    study_seed: int = 0
    tensorboard: bool = True  # event files for every trial run and the retrained best (not part of the study)

    def __post_init__(self):
        if len(self.seeds) > MAX_SEEDS:
            raise UserInputError(f"--seeds: {len(self.seeds)} seeds per trial, more than {MAX_SEEDS}")

    def definition(self, sampler: str, pruner: str, startup: int, warmup: int) -> dict[str, Any]:
        """What the storage remembers, so a different command is not mistaken for the same study."""
        return {
            "space": [dim.text for dim in self.space],
            "seeds": list(self.seeds),
            "study_seed": self.study_seed,
            "base_config": hashlib.sha256(config_to_toml(self.base).encode()).hexdigest(),
            "sampler": sampler,
            "pruner": [pruner, startup, warmup],
        }


def plan_from_flags(
    config_path: Path | None,
    flags: dict[str, Any],
    *,
    assignments: Sequence[str],
    space_texts: Sequence[str],
    seeds: str,
    trials: int,
    study_seed: int,
    tensorboard: bool = True,
) -> TunePlan:
    """`tune`'s plan from the command's flags: the base config, the space checked against it, the seeds.

    A key both searched and fixed on the command line (`--epochs 3 --space train.epochs=...`)
    is refused: either would silently lose to the other.
    """
    base = resolve_config(config_path, flags, assignments)
    space = check_space([parse_dimension(text) for text in space_texts], base)
    fixed = {key: f"--{key.partition('.')[2].replace('_', '-')}" for key, value in flags.items() if value is not None}
    fixed.update({parse_assignment(text)[0]: f"--set {text}" for text in assignments})
    for dim in space:
        if dim.key in fixed:
            raise UserInputError(f"--space {dim.key}: also fixed by {fixed[dim.key]}; search it or fix it, not both")
    return TunePlan(base, space, tuple(parse_seeds(seeds)), trials, study_seed, tensorboard)


def parse_dimension(text: str) -> Dimension:
    """'key=log:1e-4..1e-1' / 'float:0..0.7' / 'int:32..512' / 'choice:a,b,[1,2]' -> Dimension (shape only)."""
    key, eq, spec = text.partition("=")
    kind, colon, body = spec.partition(":")
    key, kind, body = key.strip(), kind.strip(), body.strip()
    if not eq or not colon or "." not in key or kind not in KINDS:
        raise UserInputError(
            f"--space: expected section.key=KIND:RANGE with KIND one of {', '.join(KINDS)}, got {text!r}"
        )
    if kind == "choice":
        pieces = [piece.strip() for piece in split_top_level(body)]
        if not body or not all(pieces):
            raise UserInputError(f"--space {key}: choice needs values separated by commas, got {body!r}")
        if len(set(pieces)) < len(pieces):
            raise UserInputError(f"--space {key}: a choice is listed twice in {body!r}")
        values = tuple(parse_assignment(f"{key}={piece}")[1] for piece in pieces)
        return Dimension(key, kind, choices=tuple(pieces), values=values)
    low_text, dots, high_text = body.partition("..")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = float("nan")
    if not dots or not (np.isfinite(low) and np.isfinite(high)):
        raise UserInputError(f"--space {key}: {kind} needs a range LOW..HIGH of numbers, got {body!r}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise UserInputError(f"--space {key}: int needs whole numbers, got {body!r}")
    if kind == "log" and low <= 0:
        raise UserInputError(f"--space {key}: log needs a range above 0, got {body!r}")
    if high < low or (high == low and kind != "int"):
        raise UserInputError(f"--space {key}: the range {body!r} is empty (LOW must be below HIGH)")
    return Dimension(key, kind, low, high)


def check_space(space: Sequence[Dimension], base: Config) -> tuple[Dimension, ...]:
    """Every key known and free to search, every range end and choice a valid config; -> the space, typed.

    A key holding integers (train.batch_size) gets integers from log and int ranges. Range
    ends and every choice are checked as configs, and a network too large for memory is
    refused at each, as `train` refuses it, before a study or trial folder is written. Any
    key may be searched: a trial whose seeds cannot share a program (augmentation, early
    stopping, a plateau schedule; see sharing.py) trains them as lone runs in step
    (bundles.train_in_step).
    """
    if not space:
        raise UserInputError("--space: give at least one KEY=SPEC to search")
    keys = [dim.key for dim in space]
    for key in keys:
        if keys.count(key) > 1:
            raise UserInputError(f"--space {key}: given twice")
        if key.startswith(FORBIDDEN_PREFIXES):
            raise UserInputError(f"--space {key}: fixed by the study (seeds: --seeds; validation: a holdout)")
    typed = []
    for dim in space:
        integer = _holds_integers(dim.key)
        if dim.kind == "int" and not integer:
            raise UserInputError(f"--space {dim.key}: int needs an integer key; use float or log")
        if integer and dim.kind == "float":
            raise UserInputError(f"--space {dim.key}: holds integers; use int or log")
        dim = dataclasses.replace(dim, integer=integer and dim.kind != "choice")
        if dim.integer and _value(dim, dim.low) > _value(dim, dim.high):
            raise UserInputError(f"--space {dim.key}: no integer lies in {_number(dim.low)}..{_number(dim.high)}")
        for value in dim.extremes:
            try:
                cfg = apply_overrides(base, {dim.key: value})
                check_training_memory(cfg.model, cfg.optimizer, INPUT_SIZE, NUM_CLASSES)  # as train checks it
            except UserInputError as exc:
                raise UserInputError(f"--space {dim.text}: {exc}") from None
        typed.append(dim)
    return tuple(typed)


def _holds_integers(key: str) -> bool:
    section, _, name = key.partition(".")
    cls = {f.name: f.default_factory for f in dataclasses.fields(Config)}.get(section)
    if cls is None:
        return False  # apply_overrides names the unknown section
    hint = typing.get_type_hints(cls).get(name)
    return hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType) and int in typing.get_args(hint))


def _value(dim: Dimension, number: float) -> Any:
    if not dim.integer:
        return float(number)
    return int(np.ceil(number)) if number == dim.low else int(np.floor(number))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else repr(float(value))


def suggest(trial, dim: Dimension) -> Any:
    """Ask an Optuna trial for this dimension's value, as the config takes it."""
    if dim.kind == "choice":
        return dim.values[dim.choices.index(trial.suggest_categorical(dim.key, list(dim.choices)))]
    low, high = _value(dim, dim.low), _value(dim, dim.high)
    if dim.integer:
        return trial.suggest_int(dim.key, low, high, log=dim.kind == "log")
    return trial.suggest_float(dim.key, low, high, log=dim.kind == "log")


def setting_of(space: Sequence[Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params -> config overrides (a choice's TOML text becomes its value)."""
    out = {}
    for dim in space:
        value = params[dim.key]
        out[dim.key] = dim.values[dim.choices.index(value)] if dim.kind == "choice" else value
    return out


def search_config(base: Config, study_seed: int) -> Config:
    """The base config as every trial validates: a holdout of the training set drawn from the study seed.

    A config that already validates on a holdout or a fold keeps its fraction or fold; the
    draw is the study's unless the config names validation.split_seed.
    """
    val = base.validation
    if val.source == "test":
        val = dataclasses.replace(val, source="holdout")
    if val.split_seed is None:
        val = dataclasses.replace(val, split_seed=study_seed)
    return dataclasses.replace(base, validation=val)


def trial_seeds(study_seed: int, number: int, seeds: Sequence[int]) -> list[int]:
    """train.seed of each of trial `number`'s runs: drawn from (study seed, trial number, seed)."""
    return [int(np.random.SeedSequence([study_seed, number, seed]).generate_state(1)[0] >> 1) for seed in seeds]


def sampler_seed(study_seed: int, number: int) -> int:
    """The seed of the sampler that draws trial `number`'s setting."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def full_training_config(cfg: Config) -> Config:
    """The setting as `train --config` takes it: the whole training set, validating as the paper does."""
    return dataclasses.replace(cfg, validation=ValidationConfig())

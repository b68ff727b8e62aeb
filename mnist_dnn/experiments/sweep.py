"""`mnist-dnn sweep`: every combination of some settings, times seeds (and folds), as ordinary runs.

    axes = [parse_axis("optimizer.learning_rate=1e-4,1e-3,1e-2")]
    plan = plan_sweep({"paper": load_config(None)}, axes, seeds=[0, 1, 2])
    open_sweep_dir(sweep_dir, plan)
    results = execute_sweep(plan, sweep_dir, load_datasets(plan), LocalExecutor())   # executors.py
    print(summary_markdown(summarize(plan, results)))

A sweep directory holds one run directory per (setting, seed[, fold]), each exactly what
`mnist-dnn train` writes, plus sweep.json (the plan) and summary.csv (mean ± std per
setting, ranked). The runs train in bundles that share one compiled program
(bundles.plan_bundles), here or on other processes and machines (executors.py). Running
the same sweep into the same directory again skips the runs that finished and resumes
the ones that were interrupted, so a long sweep survives Ctrl-C.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import logging
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dnn.core.config import (
    MAX_SEED,
    Config,
    apply_overrides,
    config_to_toml,
    format_value,
    parse_assignment,
    resolve_config,
)
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES, Dataset, load_configured
from mnist_dnn.experiments.bundles import plan_bundles
from mnist_dnn.experiments.sharing import (
    SHARING_VERSION,
    alone_reason,
    as_once_shared,
    misbundled,
    program_key,
    refusal,
)
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.model import INPUT_SIZE

log = logging.getLogger(__name__)

PLAN_FILE = runs.SWEEP_PLAN_FILE
SUMMARY_FILE = "summary.csv"
SUMMARY_METRICS = ("test_accuracy", "test_loss", "validation_accuracy", "validation_loss")  # from metrics.json
MAX_RUNS = 1000  # a typo such as --seeds 0-9999 should not start a week of training
MAX_SEEDS_LISTED = 10_000  # more than a sweep or a trial takes; a typo such as 0-4294967295 must not fill memory


@dataclass(frozen=True)
class Axis:
    """One --set: a dotted config key and the values it takes."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class PlannedRun:
    setting: str  # what distinguishes its setting, e.g. "optimizer.learning_rate=0.01"
    directory: str  # its run directory's name inside the sweep directory
    config: Config
    seed: int
    fold: int | None


def resolve_configs(config_paths: Sequence[Path], flags: Mapping[str, Any]) -> dict[str, Config]:
    """Each --config file (else the paper's defaults) resolved with the sweep's flags, by label: the file's name."""
    configs = {}
    for path in config_paths or (None,):
        label = path.stem if path else "paper"
        if label in configs:
            raise UserInputError(f"--config: two files named {label!r}; rename one")
        configs[label] = resolve_config(path, flags)
    return configs


def plan_from_flags(
    config_paths: Sequence[Path],
    flags: Mapping[str, Any],
    axes: Sequence[str | Axis],
    seeds: str,
    folds: int | None,
) -> tuple[dict[str, Config], list[PlannedRun]]:
    """`sweep`'s configs (resolve_configs) and every run of them (plan_sweep), from the command's flags.

    `axes` are --set texts ('key=v1,v2') or Axis values the Python API made from typed values.
    """
    configs = resolve_configs(config_paths, flags)
    parsed = [axis if isinstance(axis, Axis) else parse_axis(axis) for axis in axes]
    return configs, plan_sweep(configs, parsed, parse_seeds(seeds), folds)


def parse_axis(text: str) -> Axis:
    """'section.key=v1,v2,...' -> Axis; values are TOML (so lists need brackets: [64,32],[128,64])."""
    key, _, values_text = text.partition("=")
    pieces = _split_top_level(values_text)
    if not key.strip() or not all(piece.strip() for piece in pieces):
        raise UserInputError(f"--set: expected section.key=value1,value2,..., got {text!r}")
    return make_axis(key.strip(), [parse_assignment(f"{key.strip()}={piece}")[1] for piece in pieces], values_text)


def make_axis(key: str, values: Sequence[Any], given: str | None = None) -> Axis:
    """An axis of values already typed (the Python API's {"optimizer.learning_rate": [1e-3, 1e-2]}); none twice.

    `given` is how the user wrote the values, for the message (default: the list).
    """
    values = tuple(values)
    if len(set(map(repr, values))) < len(values):
        shown = given if given is not None else str(list(values))
        raise UserInputError(f"--set {key}: a value is listed twice in {shown!r}")
    return Axis(key, values)


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: '[1,2],[3]' -> ['[1,2]', '[3]']."""
    pieces, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,3,7' (or both: '0-2,9') -> sorted distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise UserInputError(f"--seeds: expected numbers like 0-4 or 0,3,7, got {text!r}") from None
        if low < 0 or high < low:
            raise UserInputError(f"--seeds: expected a range low-high of seeds >= 0, got {part.strip()!r}")
        if high > MAX_SEED:
            raise UserInputError(f"--seeds: a seed is at most {MAX_SEED}, got {part.strip()!r}")
        if high - low >= MAX_SEEDS_LISTED:
            raise UserInputError(f"--seeds: {part.strip()!r} lists more than {MAX_SEEDS_LISTED} seeds")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def plan_sweep(
    configs: Mapping[str, Config], axes: Sequence[Axis], seeds: Sequence[int], folds: int | None = None
) -> list[PlannedRun]:
    """Every combination of configs and axis values, times seeds and folds; each combination validated now.

    `configs` maps a name (the config file's stem) to its config; with more than one, the
    config file is an axis of its own.
    """
    for axis in axes:
        if axis.key == "train.seed":
            raise UserInputError("--set train.seed: use --seeds")
        if folds and axis.key.startswith("validation."):
            raise UserInputError(f"--set {axis.key}: --folds sets the validation split")
    combos = list(itertools.product(configs.items(), *(axis.values for axis in axes)))
    count = len(combos) * len(seeds) * (folds or 1)
    if count > MAX_RUNS:
        raise UserInputError(f"sweep: {count} runs planned, more than {MAX_RUNS}; narrow --set, --seeds or --folds")
    planned = []
    for (config_name, base), *values in combos:
        overrides = {axis.key: value for axis, value in zip(axes, values, strict=True)}
        parts = [f"config={config_name}"] if len(configs) > 1 else []
        parts += [f"{key}={format_value(value, ',')}" for key, value in overrides.items()]
        setting = ", ".join(parts) or config_name
        slug = "_".join(_slug(part) for part in parts) or _slug(config_name)
        for seed in seeds:
            for fold in range(1, folds + 1) if folds else [None]:
                run_overrides = {**overrides, "train.seed": seed}
                if fold is not None:
                    run_overrides.update(
                        {"validation.source": "fold", "validation.folds": folds, "validation.fold": fold}
                    )
                try:
                    config = apply_overrides(base, run_overrides)
                except UserInputError as exc:
                    raise UserInputError(f"--set {', '.join(parts)}: {exc}") from None
                config = _with_sweep_split(config, seeds[0])
                directory = f"{slug}__seed{seed}" + (f"_fold{fold}" if fold else "")
                planned.append(PlannedRun(setting, directory, config, seed, fold))
    for run in planned:  # a network too large for memory is refused before the sweep directory exists
        model, train = run.config.model, run.config.train
        check_training_memory(model, run.config.optimizer, INPUT_SIZE, NUM_CLASSES, batch_size=train.batch_size)
    directories = [run.directory for run in planned]
    if len(set(directories)) < len(directories):
        clash = next(name for name in directories if directories.count(name) > 1)
        raise UserInputError(f"sweep: two settings would share the run directory {clash!r}; rename a config file")
    return planned


def _with_sweep_split(config: Config, split_seed: int) -> Config:
    """Draw a holdout or fold split from the sweep's first seed, not each run's own.

    Then every seed of a setting trains and validates on the same images, which lets them
    share one compiled program (bundles.py); seeds vary the initial weights, dropout and
    batch order. A config or --set that names validation.split_seed keeps its own.
    """
    if config.validation.source == "test" or config.validation.split_seed is not None:
        return config
    return dataclasses.replace(config, validation=dataclasses.replace(config.validation, split_seed=split_seed))


def sweep_backend(configs: Mapping[str, Config]) -> str:
    """The one backend every config resolved to: a process runs Keras on one backend."""
    backends = sorted({cfg.train.backend for cfg in configs.values()})
    if len(backends) > 1:
        raise UserInputError(f"--config: the configs name different backends ({', '.join(backends)})")
    return backends[0]


def _slug(part: str) -> str:
    """'optimizer.learning_rate=0.001' -> 'learning_rate-0.001': short, and safe as a directory name."""
    key, _, value = part.partition("=")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{key.rsplit('.', 1)[-1]}-{value}").strip("-")


def plan_record(plan: Sequence[PlannedRun]) -> dict[str, Any]:
    """What sweep.json holds: enough to recognise the same sweep when it is run again."""
    fingerprint = hashlib.sha256("".join(config_to_toml(run.config) for run in plan).encode()).hexdigest()
    return {
        "format_version": runs.FORMAT_VERSION,
        "fingerprint": fingerprint,
        "sharing": SHARING_VERSION,
        "runs": [
            {"directory": run.directory, "setting": run.setting, "seed": run.seed, "fold": run.fold} for run in plan
        ],
    }


def open_sweep_dir(sweep_dir: Path, plan: Sequence[PlannedRun]) -> bool:
    """Start a sweep in a new or empty directory, or accept one holding this very sweep; True if it is resumed."""
    record = plan_record(plan)
    if not sweep_dir.exists() or (sweep_dir.is_dir() and not any(sweep_dir.iterdir())):
        sweep_dir.mkdir(parents=True, exist_ok=True)
        runs.write_json(sweep_dir / PLAN_FILE, record)
        _log_start("Sweep", plan, sweep_dir)
        return False
    if not (sweep_dir / PLAN_FILE).is_file():
        raise UserInputError(f"--out {sweep_dir}: exists and is not a sweep directory; choose a new one")
    saved = runs.read_json(sweep_dir / PLAN_FILE) or {}
    runs.check_format_version(saved.get("format_version"), sweep_dir / PLAN_FILE)
    if saved.get("fingerprint") != record["fingerprint"]:
        raise UserInputError(
            f"--out {sweep_dir}: holds a different sweep (other settings, seeds, folds or epochs); "
            "run the same command to continue it, or choose a new directory"
        )
    check_bundled(sweep_dir, plan, saved)
    if saved.get("sharing") != SHARING_VERSION:  # checked once: from here on its runs train as sharing.py says
        runs.write_json(sweep_dir / PLAN_FILE, {**saved, "sharing": SHARING_VERSION})
    _log_start("Continuing", plan, sweep_dir)
    return True


def check_bundled(sweep_dir: Path, plan: Sequence[PlannedRun], saved: Mapping[str, Any]) -> None:
    """Refuse a sweep whose runs went through a shared program that ignored their config (issue 19).

    A finished run says so itself (sharing.misbundled). An interrupted one of a sweep made
    before sharing.py (no `sharing` in sweep.json) was bundled when, with the keys the old
    bundling missed taken off, it shares a program with another run of the plan.
    """
    once = [program_key(as_once_shared(run.config)) for run in plan]
    for index, run in enumerate(plan):
        run_dir = sweep_dir / run.directory
        reason = misbundled(run_dir)
        status = runs.read_status(run_dir) if run_dir.is_dir() else None
        interrupted = status is not None and status["status"] != "complete"
        bundled_once = once[index] is not None and once.count(once[index]) > 1
        if reason is None and interrupted and saved.get("sharing") is None and bundled_once:
            reason = alone_reason(run.config)
        if reason is not None:
            raise UserInputError(refusal(sweep_dir, run.directory, reason))


def _log_start(how: str, plan: Sequence[PlannedRun], sweep_dir: Path) -> None:
    settings, bundles = len({run.setting for run in plan}), len(plan_bundles(plan))
    log.info(
        "%s: %d runs (%d settings, %d %s sharing a compiled program) in %s",
        *(how, len(plan), settings, bundles, "bundle" if bundles == 1 else "bundles", sweep_dir),
    )


def load_datasets(plan: Sequence[PlannedRun]) -> dict[str | None, Dataset]:
    """The data of every planned run, loaded once per [data] data_dir, before any run starts."""
    datasets: dict[str | None, Dataset] = {}
    for run in plan:
        if run.config.data.data_dir not in datasets:
            datasets[run.config.data.data_dir] = load_configured(run.config.data)
    return datasets


def summarize(plan: Sequence[PlannedRun], results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting: mean ± std over its runs of test (and validation) accuracy and loss, best first.

    With folds the ranking is by validation accuracy - choosing on the test set would
    make it part of training; otherwise by test accuracy, as the paper reports.
    """
    by_setting: dict[str, list[Mapping[str, Any]]] = {}
    for run, metrics in zip(plan, results, strict=True):
        by_setting.setdefault(run.setting, []).append(metrics)
    folds = any(run.fold for run in plan)
    rows = []
    for setting, metrics in by_setting.items():
        row: dict[str, Any] = {"setting": setting, "runs": len(metrics)}
        for name in SUMMARY_METRICS:
            values = [m[name] for m in metrics if name in m]
            row[f"{name}_mean"] = statistics.fmean(values) if values else float("nan")
            row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    key = "validation_accuracy_mean" if folds else "test_accuracy_mean"
    rows.sort(key=lambda row: -row[key])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def summary_columns() -> list[str]:
    """summary.csv's columns, in order."""
    return ["rank", "setting", "runs"] + [f"{name}_{stat}" for name in SUMMARY_METRICS for stat in ("mean", "std")]


def summary_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = summary_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([runs.format_number(row[c]) if isinstance(row[c], float) else row[c] for c in columns])
    return buffer.getvalue()


def summary_markdown(rows: Sequence[Mapping[str, Any]], folds: bool = False) -> str:
    """The ranked table as Markdown, ready for a README."""
    head = "| rank | setting | runs | test accuracy | test loss |"
    rule = "|---|---|---|---|---|"
    if folds:
        head += " validation accuracy (over folds) |"
        rule += "---|"
    lines = [head, rule]
    for row in rows:
        line = (
            f"| {row['rank']} | {row['setting']} | {row['runs']} "
            f"| {row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f} "
            f"| {row['test_loss_mean']:.4f} ± {row['test_loss_std']:.4f} |"
        )
        if folds:
            line += f" {row['validation_accuracy_mean']:.4f} ± {row['validation_accuracy_std']:.4f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"

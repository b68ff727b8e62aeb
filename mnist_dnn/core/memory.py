"""Will the network fit? An estimate of training memory, checked before anything is built.

    check_training_memory(cfg.model, cfg.optimizer, input_size=784, classes=10, runs_together=6)

A `--set model.hidden_units=[100000000]` would otherwise end minutes later in a JAX
out-of-memory traceback, with a failed run directory. The estimate counts what every
step keeps: the parameters, their gradients and the optimizer's slots, 4 bytes each
(float32), once per run trained together. It is a floor, not a bound: activations and the
framework's own buffers come on top, so `allocation_failure` still catches what it misses.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_dnn.core.config import ModelConfig, OptimizerConfig
from mnist_dnn.core.errors import UserInputError

BYTES_PER_NUMBER = 4  # float32, Keras' default dtype
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}  # per parameter (Keras' own)


def parameter_count(model: ModelConfig, input_size: int, classes: int) -> int:
    """Weights and biases of the Dense stack input -> hidden_units... -> classes."""
    widths = [input_size, *model.hidden_units, classes]
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:], strict=False))


def training_bytes(model: ModelConfig, optimizer: OptimizerConfig, input_size: int, classes: int, runs: int = 1) -> int:
    """Parameters x 4 bytes x (weights + gradients + optimizer slots) x runs trained together."""
    copies = 2 + OPTIMIZER_SLOTS[optimizer.name]
    return parameter_count(model, input_size, classes) * BYTES_PER_NUMBER * copies * runs


def available_bytes() -> int | None:
    """Memory this process may still take: MemAvailable, capped by a cgroup limit; None where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            found.append(int(text))
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return min(found)


def check_training_memory(
    model: ModelConfig,
    optimizer: OptimizerConfig,
    input_size: int,
    classes: int,
    runs_together: int = 1,
    available: int | None = None,
) -> None:
    """Refuse, in one line naming model.hidden_units, a network whose training cannot fit in memory."""
    needed = training_bytes(model, optimizer, input_size, classes, runs_together)
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    copies = 2 + OPTIMIZER_SLOTS[optimizer.name]
    together = f" x {runs_together} runs trained together" if runs_together > 1 else ""
    raise UserInputError(
        f"model.hidden_units: training {list(model.hidden_units)} needs at least {_size(needed)} "
        f"({parameter_count(model, input_size, classes):,} parameters x {BYTES_PER_NUMBER} bytes x {copies}: "
        f"weights, gradients and {optimizer.name}'s {copies - 2} slot(s){together}), "
        f"more than the {_size(available)} of memory available"
    )


LOADING_COPIES = 2  # loading a model holds its weights twice: the layers Keras builds, and the file's arrays


def check_loading_memory(parameters: int, model_file: Path, available: int | None = None) -> None:
    """Refuse, in one line naming the file, a saved model whose layers cannot be built in the memory available."""
    needed = parameters * BYTES_PER_NUMBER * LOADING_COPIES
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise UserInputError(
        f"{model_file}: loading it needs at least {_size(needed)} ({parameters:,} parameters x {BYTES_PER_NUMBER} "
        f"bytes x {LOADING_COPIES}), more than the {_size(available)} of memory available"
    )


def allocation_failure(exc: BaseException) -> UserInputError | None:
    """An out-of-memory error from NumPy or the backend, as one line; None for anything else."""
    text = str(exc)
    if isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return UserInputError(
            f"out of memory while training ({first[:200]}); make the model smaller (model.hidden_units) "
            "or train fewer runs at once"
        )
    return None


def _size(count: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:,} bytes"

"""Choosing the Keras backend and making it deterministic.

Keras reads KERAS_BACKEND once, when it is first imported, so the choice has to be made
here, before anything imports keras; asking for another backend afterwards would be
silently ignored, which is why it is an error instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from mnist_dnn.core.errors import UserInputError

CORES_VARIABLE = "MNIST_DNN_CORES"  # how many CPU cores runs trained side by side may use [default: all usable]
# The flags this package put in XLA_FLAGS: a process it starts (or a user's script starts after an in-process
# sweep) inherits XLA_FLAGS, and must not take a parent's device count for the user's own choice.
ADDED_FLAGS_VARIABLE = "MNIST_DNN_ADDED_XLA_FLAGS"


def activate_backend(name: str, cpu_devices: int = 1) -> None:
    """Point Keras at `name`; must run before the first `import keras` in this process.

    `cpu_devices` > 1 makes JAX on a CPU show that many devices, one per core, each
    single-threaded: a bundle's members then train side by side (bundles.py). A lone run
    keeps 1, JAX's own set-up. Neither changes a number (docs/cores.md).
    """
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise RuntimeError(
                f"keras was already imported with backend {keras.backend.backend()!r}, "
                f"cannot switch to {name!r} in the same process"
            )
        return
    os.environ["KERAS_BACKEND"] = name
    if name == "jax":
        _configure_jax(cpu_devices)
    # The paper sets 2; 3 also hides the C++ side's harmless "E0000 ... NodeDef mentions attribute" lines that
    # every tf.data pipeline of this TensorFlow/Keras pair prints. Failures still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if name == "tensorflow":
        _import_tensorflow_quietly()
    elif "tensorflow" not in sys.modules:
        _hide_tensorflow()


def _hide_tensorflow() -> None:
    """Make this process behave like a TensorFlow-free install of Keras (a supported set-up).

    Keras imports TensorFlow whenever it can, even on the jax or torch backend: saving a
    model checks for TensorFlow types. That costs seconds of start-up, a few hundred MB
    and C++ log lines, for nothing. A None entry in sys.modules makes `import tensorflow`
    fail with ImportError, which Keras reads as "not installed".
    """
    sys.modules["tensorflow"] = None


def jax_cache_dir() -> Path:
    """Where compiled XLA programs are kept between runs, beside the MNIST cache's default home."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-dnn" / "jax"


def _configure_jax(cpu_devices: int) -> None:
    """Settings JAX reads from the environment at import; a user's own values win (not those that an
    earlier activate_backend of this process or of its parent added).

    The persistent compilation cache lets a second `train` skip most of the compile, and
    XLA's deterministic-ops flag makes GPU reductions repeatable (CPU ones already are).
    Several CPU devices run one program each at the same time; each keeps to one thread
    (Eigen's pool off) so that N devices use N cores, not N x N threads. The numbers are
    those of the multi-threaded default: XLA's CPU kernels do not split a sum over threads
    (tests/test_bundles.py proves it byte for byte).
    """
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(jax_cache_dir()))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    flags, inherited = os.environ.get("XLA_FLAGS", "").strip(), os.environ.get(ADDED_FLAGS_VARIABLE, "").strip()
    if inherited and flags.endswith(inherited):  # still as added; a user who rewrote XLA_FLAGS owns all of it
        flags = flags[: -len(inherited)]
    users = flags.split()
    added = []
    if not any("xla_gpu_deterministic_ops" in flag for flag in users):
        added.append("--xla_gpu_deterministic_ops=true")
    if cpu_devices > 1 and not any("xla_force_host_platform_device_count" in flag for flag in users):
        added.append(f"--xla_force_host_platform_device_count={cpu_devices}")
        if not any("xla_cpu_multi_thread_eigen" in flag for flag in users):
            added.append("--xla_cpu_multi_thread_eigen=false")
    os.environ["XLA_FLAGS"] = " ".join(users + added)
    os.environ[ADDED_FLAGS_VARIABLE] = " ".join(added)


def usable_cores(requested: int | None = None) -> int:
    """CPU cores for runs side by side: `requested` (--cores), else $MNIST_DNN_CORES, else every core this
    process may run on (its affinity mask: taskset, a worker's share).

    Never more than that mask: a device per core beyond it would only queue for the same
    cores, and XLA spends minutes making 100,000 of them before it fails.
    """
    mask = len(os.sched_getaffinity(0))
    source = "--cores"
    if requested is None:
        text = os.environ.get(CORES_VARIABLE, "").strip()
        if not text:
            return mask
        if not text.isdigit() or int(text) < 1:
            raise UserInputError(f"${CORES_VARIABLE}: expected a whole number of cores >= 1, got {text!r}")
        requested, source = int(text), f"${CORES_VARIABLE}"
    if requested > mask:
        raise UserInputError(
            f"{source} {requested}: more than the {mask} CPU core{'s' if mask != 1 else ''} this process may run on"
        )
    return requested


def compute_devices() -> list:
    """The devices runs train on side by side: every JAX CPU device on a CPU, the first device elsewhere
    (a GPU's runs are vmapped on it, bundles.py)."""
    import jax

    if jax.default_backend() == "cpu":
        return jax.devices("cpu")
    return jax.devices()[:1]


def describe_devices(count: int | None = None) -> str:
    """'2 CPU cores' or '1 GPU (NVIDIA H200)': what the runs train on, for the command's first lines."""
    import jax

    devices = compute_devices()
    if jax.default_backend() == "cpu":
        count = len(devices) if count is None else count
        return f"{count} CPU core{'s' if count != 1 else ''}"
    return f"1 {jax.default_backend().upper()} ({devices[0].device_kind})"


def model_device(model) -> dict[str, str]:
    """{'device': 'cpu:1'}: where a model's weights (so its training) lived, for metrics.json's timings; {} off JAX."""
    import keras

    if keras.backend.backend() != "jax" or not model.trainable_variables:
        return {}
    (device, *_) = model.trainable_variables[0].value.devices()
    return {"device": f"{device.platform}:{device.id}"}


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the C++ side's stderr muted.

    TensorFlow's native logging prints start-up lines (oneDNN, CUDA probing) before
    TF_CPP_MIN_LOG_LEVEL is read. Python-level errors still surface: they are raised,
    not written to the muted descriptor.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend, and ask the backend for deterministic kernels.

    Same seed, machine and backend must give byte-identical histories: TensorFlow needs
    op determinism for that (its reductions are otherwise unordered); JAX on CPU already is.
    """
    import keras

    keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def versions() -> dict[str, str]:
    """Library versions that decide the numbers, recorded in every run's metrics.json."""
    import platform

    import keras
    import numpy

    from mnist_dnn.core.version import __version__

    found = {
        "mnist_dnn": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
    backend = keras.backend.backend()
    module = importlib.import_module(backend)
    found[backend] = module.__version__
    if backend == "jax":
        import jaxlib

        found["jaxlib"] = jaxlib.__version__
    return found


# XLA's CPU instruction-set levels, narrowest first, each with the /proc/cpuinfo flags it needs (the names of
# XLA_FLAGS=--xla_cpu_max_isa). XLA compiles for the widest level the host has, so the same seed can round
# differently on another CPU: this is what makes the last digits of an accuracy machine-specific.
CPU_ISA_LEVELS = (
    ("SSE4_2", {"sse4_2"}),
    ("AVX", {"avx"}),
    ("AVX2", {"avx2", "fma"}),
    ("AVX512", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("AVX512_VNNI", {"avx512_vnni"}),
    ("AVX512_BF16", {"avx512_bf16"}),
    ("AMX", {"amx_tile", "amx_int8", "amx_bf16"}),
)


def machine(cpuinfo: str | None = None, xla_flags: str | None = None) -> dict[str, str]:
    """The CPU a run's numbers came from, recorded beside `versions()` in metrics.json.

    `cpu`: the model name the kernel reports; `xla_cpu_isa`: the widest instruction-set level of
    CPU_ISA_LEVELS the CPU supports, capped by --xla_cpu_max_isa in XLA_FLAGS: the one XLA's CPU
    compiler targets. Where /proc/cpuinfo is missing (not Linux), platform's names stand in.
    """
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in cpuinfo.splitlines())}
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    if not flags:
        return {"cpu": cpu, "xla_cpu_isa": f"unknown ({platform.machine()})"}
    flags_text = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    cap = next((f.split("=", 1)[1].upper() for f in flags_text.split() if f.startswith("--xla_cpu_max_isa=")), None)
    isa = "below SSE4_2"
    for name, needs in CPU_ISA_LEVELS:  # each level needs the flags of every level below it too
        if not needs <= flags:
            break
        isa = name
        if name == cap:
            break
    return {"cpu": cpu, "xla_cpu_isa": isa}

"""Speed benchmark: the paper's run on each engine and backend, side by side in one invocation.

    python bench/bench.py                 # what `make bench` runs: 5 epochs per configuration
    python bench/bench.py --epochs 10 --runs 6
    python bench/bench.py --only serve    # just the live update of `mnist-dnn serve`
    python bench/bench.py --only bundled-sweeps --sweep-epochs 1   # the sweep section alone
    python bench/bench.py --only tune-trial   # a tune trial's seeds: one after another, side by side, vmapped
    python bench/bench.py --only tune-trials  # a one-seed search: one trial at a time vs one per core
    python bench/bench.py --only cores        # sweep and trial on 1 core vs every core; one run's GEMM floors
    python bench/bench.py --only models --epochs 2 --train-limit 2000   # LeNet-5 and batch norm vs the paper's net

Each configuration trains in its own `mnist-dnn train` subprocess (a backend is fixed
per process), so peak memory is that process's own. Seconds per epoch is the median of
epochs 2..N (epoch 1 carries start-up and compilation). The floor is the time the
epoch's arithmetic would take at this machine's measured float32 matrix-multiply rate.
Results go to bench/results/<machine>.json; only ratios measured in the same run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CONFIGURATIONS = (("fit", "tensorflow"), ("fit", "jax"), ("fused", "jax"))
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000
LAYERS = ((784, 400), (400, 100), (100, 10))  # the paper's Dense layers, section 5.1
FORWARD_FLOP_PER_IMAGE = sum(2 * fan_in * fan_out for fan_in, fan_out in LAYERS)
# Training costs a forward pass and a backward pass of twice its work; validation is a forward pass.
EPOCH_FLOP = 3 * FORWARD_FLOP_PER_IMAGE * TRAIN_IMAGES + FORWARD_FLOP_PER_IMAGE * TEST_IMAGES
MNIST_DNN = [sys.executable, "-m", "mnist_dnn"]
REPO = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = ("paper", "lenet", "deep_sigmoid_bn")  # dense, convolutional, dense + batch norm (docs/models.md)


def machine_name() -> str:
    return f"{platform.machine()}-{os.cpu_count()}cpu"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed_child(command: list[str]) -> tuple[float, int]:
    """Run a command; return its wall seconds and its own peak resident memory in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"benchmark command failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - started, usage.ru_maxrss // 1024


def train_once(engine: str, backend: str, epochs: int, out: Path, options: tuple[str, ...] = ()) -> dict:
    wall, peak_mib = timed_child(
        [
            *MNIST_DNN,
            "train",
            "--engine",
            engine,
            "--backend",
            backend,
            "--epochs",
            str(epochs),
            "--out",
            str(out),
            "-q",
            "--no-plots",
            *options,
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    epoch_times = metrics["timings"]["epoch_s"]
    return {
        "engine": engine,
        "backend": backend,
        "epochs": epochs,
        "s_per_epoch": statistics.median(epoch_times[1:] or epoch_times),
        "first_epoch_s": epoch_times[0],
        "wall_s": wall,
        "peak_mib": peak_mib,
        "test_accuracy": metrics["test_accuracy"],
    }


def model_costs(epochs: int, out: Path, train_limit: int | None = None) -> list[dict]:
    """Seconds per epoch of each MODEL_CONFIGS network, fused engine on jax, one after another in this run."""
    limit = ("--set", f"data.train_limit={train_limit}") if train_limit else ()
    rows = []
    for name in MODEL_CONFIGS:
        options = ("--config", str(REPO / "configs" / f"{name}.toml"), *limit)
        rows.append({"config": name, **train_once("fused", "jax", epochs, out / name, options)})
    for row in rows:
        row["times_paper"] = row["s_per_epoch"] / rows[0]["s_per_epoch"]
    return rows


def print_model_costs(rows: list[dict]) -> None:
    print("| config | s/epoch | x the paper's | first epoch s | peak MiB | test accuracy |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['config']} | {row['s_per_epoch']:.2f} | {row['times_paper']:.1f} | {row['first_epoch_s']:.1f} "
            f"| {row['peak_mib']} | {row['test_accuracy']:.4f} |"
        )


def one_core() -> list[str]:
    """A command prefix that keeps a child on one CPU core (the first this process may use)."""
    return ["taskset", "-c", str(min(os.sched_getaffinity(0)))]


def matmul_rate(prefix: Sequence[str] = ()) -> float:
    """Best float32 matmul rate (FLOP/s) of jax (XLA) and numpy on square 2048 matrices (`prefix`: taskset)."""
    code = (
        "import time, numpy as np, jax, jax.numpy as jnp\n"
        "n = 2048; a = np.random.default_rng(0).random((n, n), dtype=np.float32); b = a.T.copy()\n"
        "f = jax.jit(jnp.matmul); ja, jb = jnp.asarray(a), jnp.asarray(b); f(ja, jb).block_until_ready()\n"
        "best = float('inf')\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); f(ja, jb).block_until_ready(); best = min(best, time.perf_counter() - t)\n"
        "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
        "print(2 * n**3 / best)\n"
    )
    output = subprocess.run([*prefix, sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(output.stdout.strip().splitlines()[-1])


def gemm_floors() -> dict:
    """The epoch's arithmetic at the float32 matmul rate of one core (taskset) and of every core."""
    one, every = matmul_rate(one_core()), matmul_rate()
    return {
        "one_core_gflop_per_s": one / 1e9,
        "all_cores_gflop_per_s": every / 1e9,
        "floor_one_core_s": EPOCH_FLOP / one,
        "floor_all_cores_s": EPOCH_FLOP / every,
    }


def print_floors(floors: dict, fused_epoch_s: float) -> None:
    one, every = floors["floor_one_core_s"], floors["floor_all_cores_s"]
    print(
        f"One run's fused epoch {fused_epoch_s:.2f} s; GEMM floor on 1 core {one:.2f} s "
        f"({fused_epoch_s / one:.2f}x it), on every core {every:.2f} s ({fused_epoch_s / every:.2f}x it)"
    )


def help_seconds() -> float:
    """Best of five `mnist-dnn --help` wall times: what a user waits for before anything happens."""
    script = Path(sys.executable).parent / "mnist-dnn"
    command = [str(script), "--help"] if script.exists() else [*MNIST_DNN, "--help"]
    return min(timed_child(command)[0] for _ in range(5))


def multi_run(runs: int, epochs: int, out: Path) -> dict:
    """N custom-digit runs through `eval --custom-csv`, against N single runs one after another."""
    together, _ = timed_child(
        [
            *MNIST_DNN,
            "eval",
            "--custom-csv",
            "custom_digits",
            "--runs",
            str(runs),
            "--epochs",
            str(epochs),
            "--out",
            str(out / "together"),
            "-q",
            "--no-plots",
        ]
    )
    one, _ = timed_child(
        [
            *MNIST_DNN,
            "eval",
            "--custom-csv",
            "custom_digits",
            "--runs",
            "1",
            "--epochs",
            str(epochs),
            "--out",
            str(out / "one"),
            "-q",
            "--no-plots",
        ]
    )
    return {
        "runs": runs,
        "epochs": epochs,
        "together_s": together,
        "one_run_s": one,
        "speed_up_vs_sequential": runs * one / together,
    }


def serve_latency(updates: int, scratch: Path) -> dict:
    """One live update of `mnist-dnn serve`'s Draw page, server side: a 280 px canvas PNG in, ten probabilities out.

    What the route does per update (PNG decode, `digitize --method mnist`'s path, the model)
    on drawings of a 7, a 1 and a 2, and the same through the ASGI app (TestClient, no
    network). The paper's network with its initial weights: reading costs the same trained or not.
    """
    import io

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np
    from PIL import Image, ImageDraw
    from starlette.testclient import TestClient

    from mnist_dnn.core.backend import activate_backend
    from mnist_dnn.core.config import config_to_toml, load_config, resolve_backend
    from mnist_dnn.runs import directory as runs
    from mnist_dnn.runs import lifecycle
    from mnist_dnn.serve import app as serve
    from mnist_dnn.training.model import build_model

    activate_backend(resolve_backend(None))
    run_dir = scratch / "runs" / "20260101T000000Z-paper"
    run_dir.mkdir(parents=True)
    cfg = load_config(None)
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(cfg))
    runs.save_model(build_model(cfg.model), run_dir / runs.MODEL_FILE)
    lifecycle.write_status(run_dir, "complete")
    strokes = (
        [(0.24, 0.22), (0.74, 0.22), (0.46, 0.82)],
        [(0.5, 0.17), (0.5, 0.84)],
        [(0.3, 0.32), (0.5, 0.18), (0.68, 0.34), (0.3, 0.8), (0.74, 0.8)],
    )
    drawings = []
    for points in strokes:
        image = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        ImageDraw.Draw(image).line([(x * 280, y * 280) for x, y in points], fill=(0, 0, 0, 255), width=20)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        drawings.append(buffer.getvalue())
    app = serve.create_app(scratch / "runs", scratch / "digits")
    serve.warm_up(app)
    state, info = app.state.serve, app.state.serve.run(run_dir.name)
    direct, cpu, http = [], [], []
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    headers = {"content-type": "image/png", "origin": "http://127.0.0.1:8000"}
    for k in range(updates):
        png = drawings[k % len(drawings)]
        started, started_cpu = time.perf_counter(), time.thread_time()
        state.read(info, png)
        direct.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        started = time.perf_counter()
        client.post("/api/predict", params={"run": info.name}, content=png, headers=headers).raise_for_status()
        http.append((time.perf_counter() - started) * 1000)
    return {
        "updates": updates,
        "canvas_px": 280,
        "update_ms_p50": float(np.percentile(direct, 50)),
        "update_ms_p95": float(np.percentile(direct, 95)),
        # this thread's CPU time: what an update costs when other processes leave the cores alone
        "update_cpu_ms_p50": float(np.percentile(cpu, 50)),
        "update_cpu_ms_p95": float(np.percentile(cpu, 95)),
        "load_average_1min": os.getloadavg()[0],
        "http_ms_p50": float(np.percentile(http, 50)),
        "http_ms_p95": float(np.percentile(http, 95)),
        "target_p95_ms": 30,
    }


def print_serve(result: dict) -> None:
    print(
        f"serve live update (280 px canvas, {result['updates']} updates): digitize + predict "
        f"p50 {result['update_ms_p50']:.1f} ms, p95 {result['update_ms_p95']:.1f} ms (target < 30), "
        f"CPU p50 {result['update_cpu_ms_p50']:.1f} ms, p95 {result['update_cpu_ms_p95']:.1f} ms; "
        f"through the ASGI app p50 {result['http_ms_p50']:.1f} ms, p95 {result['http_ms_p95']:.1f} ms "
        f"(load average {result['load_average_1min']:.1f})"
    )


# --- Bundles: the learning-rate sweep one run after another (main's path) and bundled, against one train ---

SWEEP_RATES = "1e-4,1e-3,1e-2,1e-1"  # 4 rates x 3 seeds: the learning-rate sweep of docs/commands/sweep.md
SWEEP_SEEDS = "0-2"
ONE_AFTER_ANOTHER = """
import sys
from pathlib import Path
from mnist_dnn.core.backend import activate_backend
activate_backend("jax")
from mnist_dnn.experiments.bundles import plan_bundles, train_bundle
from mnist_dnn.core.config import load_config
from mnist_dnn.data.mnist import load_mnist
from mnist_dnn.experiments.sweep import parse_axis, parse_seeds, plan_sweep
rates, seeds, epochs, out = sys.argv[1:]
cfg = load_config(None, {"train.epochs": int(epochs), "train.backend": "jax", "train.engine": "fused"})
plan = plan_sweep({"paper": cfg}, [parse_axis("optimizer.learning_rate=" + rates)], parse_seeds(seeds))
dataset = load_mnist()
for bundle in plan_bundles(plan, max_members=1):  # bundles of one: each run compiles, uploads and scores alone
    train_bundle(bundle, [Path(out) / run.directory for run in bundle.members], dataset)
"""


def bundled_sweeps(epochs: int, out: Path) -> dict:
    """Wall time of the 12-run sweep as main ran it (one ordinary run after another) and bundled, vs one train,
    on one core (taskset) and on every core this process may use (the bundle's members side by side).

    Each is a fresh process, start-up included. Main's path is replayed through the same
    modules with every run a bundle of one, which is what a sweep did before bundles.
    """
    found: dict = {"epochs": epochs, "runs": 12, "cores": {}}
    for cores, prefix in ((1, one_core()), (len(os.sched_getaffinity(0)), [])):
        if cores in found["cores"]:  # a one-core machine: measured once
            continue
        where = out / f"{cores}-cores"
        train_dir = where / "train"
        train = [*MNIST_DNN, "train", "--epochs", str(epochs), "--out", str(train_dir), "-q", "--no-plots"]
        one_train, _ = timed_child([*prefix, *train])
        epoch_s = json.loads((train_dir / "metrics.json").read_text())["timings"]["epoch_s"]
        command = [*MNIST_DNN, "sweep", "--set", f"optimizer.learning_rate={SWEEP_RATES}", "--seeds", SWEEP_SEEDS]
        command += ["--epochs", str(epochs), "--out", str(where / "bundled"), "-q", "--no-plots"]
        bundled, _ = timed_child([*prefix, *command])
        found["cores"][cores] = {
            "one_train_s": one_train,
            "fused_epoch_s": epoch_s[-1],
            "bundled_s": bundled,
            "bundled_x_one_train": bundled / one_train,
        }
    alone, _ = timed_child([sys.executable, "-c", ONE_AFTER_ANOTHER, SWEEP_RATES, SWEEP_SEEDS, str(epochs), str(out)])
    every = found["cores"][max(found["cores"])]
    found.update(one_train_s=every["one_train_s"], one_after_another_s=alone, bundled_s=every["bundled_s"])
    found["one_after_another_x_one_train"] = alone / every["one_train_s"]
    return found


def print_bundled_sweeps(found: dict) -> None:
    print(f"12-run sweep ({found['epochs']} epochs) vs one `train --epochs {found['epochs']}`, fresh processes:")
    print("| cores | one train s | 12-run sweep s | x one train |")
    print("|---|---|---|---|")
    for cores, row in found["cores"].items():
        print(f"| {cores} | {row['one_train_s']:.1f} | {row['bundled_s']:.1f} | {row['bundled_x_one_train']:.2f} |")
    print(
        f"| every core, one run after another (before bundles) | {found['one_train_s']:.1f} "
        f"| {found['one_after_another_s']:.1f} | {found['one_after_another_x_one_train']:.2f} |"
    )


# --- A tune trial: its seeds in step, one after another (the CPU default) or vmapped ---

TRIAL_IN_STEP = """
import sys, time
from pathlib import Path
from mnist_dnn.core.backend import activate_backend, usable_cores
activate_backend("jax", cpu_devices=usable_cores() if sys.argv[1] == "devices" else 1)
from mnist_dnn.experiments.bundles import TrialPrograms, train_in_step
from mnist_dnn.core.config import load_config
from mnist_dnn.data.mnist import load_mnist
mode, seeds, epochs, images, out = sys.argv[1:]
flags = {"train.backend": "jax", "train.engine": "fused", "train.epochs": int(epochs), "data.train_limit": int(images),
         "validation.source": "holdout", "validation.split_seed": 0}
dataset = load_mnist()
programs = TrialPrograms()  # as tune's study loop keeps them
for trial, rate in enumerate((1e-3, 2e-3)):  # a study's first trial, then its next (another learning rate)
    rated = {**flags, "optimizer.learning_rate": rate}
    cfgs = [load_config(None, {**rated, "train.seed": seed}) for seed in range(int(seeds))]
    dirs = [Path(out) / f"trial{trial}-seed{k}" for k in range(len(cfgs))]
    started = time.perf_counter()
    train_in_step(cfgs, dirs, dataset, lambda *_: False, mode=mode, programs=programs)
    print(time.perf_counter() - started)
"""
TRIAL_MODES = ("sequential", "devices", "vmap")


def trial_in_step(seeds: int, epochs: int, images: int, out: Path, repeats: int = 3) -> dict:
    """Seconds a tune trial's seeds take in step, each mode in fresh processes taking turns.

    One after another on one device (a one-core machine's way), side by side on every
    core's CPU device (`tune`'s way on a CPU), and vmapped (an accelerator's). Each
    process trains a study's first trial - Keras' import and the compile included - and
    then its next one, as every later trial of a study runs: a process that has both
    and (bundles.TrialPrograms) the program compiled. The median of `repeats` per mode.
    """
    times: dict[str, list[list[float]]] = {mode: [] for mode in TRIAL_MODES}
    for repeat in range(repeats):
        for mode in TRIAL_MODES:
            command = [sys.executable, "-c", TRIAL_IN_STEP, mode, str(seeds), str(epochs), str(images)]
            done = subprocess.run([*command, str(out / f"{mode}-{repeat}")], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"benchmark command failed ({done.returncode}): trial {mode}\n{done.stderr}")
            times[mode].append([float(line) for line in done.stdout.split()[-2:]])
    found = {"seeds": seeds, "epochs": epochs, "images": images, "repeats": repeats}
    for mode in TRIAL_MODES:
        found[f"{mode}_first_s"] = statistics.median(first for first, _ in times[mode])
        found[f"{mode}_s"] = statistics.median(later for _, later in times[mode])
    found["vmap_x_sequential"] = found["vmap_s"] / found["sequential_s"]
    found["devices_speed_up"] = found["sequential_s"] / found["devices_s"]
    found["devices_speed_up_first"] = found["sequential_first_s"] / found["devices_first_s"]
    return found


def print_trial_in_step(found: dict) -> None:
    print(
        f"A tune trial, {found['seeds']} seeds x {found['epochs']} epochs on {found['images']} images "
        f"(median of {found['repeats']}), a study's later trial: one after another {found['sequential_s']:.2f} s, "
        f"side by side on the cores {found['devices_s']:.2f} s ({found['devices_speed_up']:.2f}x faster), "
        f"vmapped {found['vmap_s']:.2f} s ({found['vmap_x_sequential']:.2f}x); its first trial (Keras' import and "
        f"the compile included): {found['sequential_first_s']:.2f} s / {found['devices_first_s']:.2f} s "
        f"({found['devices_speed_up_first']:.2f}x) / {found['vmap_first_s']:.2f} s"
    )


# --- Tune trials side by side: a one-seed random search, trial by trial vs as many trials as cores ---

ONE_SEED_SEARCH = ["tune", "--space", "optimizer.learning_rate=log:1e-4..1e-1", "--sampler", "random"]
ONE_SEED_SEARCH += ["--pruner", "none", "--trials", "6", "--seeds", "0", "--epochs", "2", "-q", "--no-plots"]


def trials_side_by_side(out: Path, repeats: int = 2) -> dict:
    """Wall seconds of a one-seed search (6 trials x 2 epochs, the best's retrain included) with `--cores 1`,
    one trial at a time, and on every core, as many trials at a time (docs/cores.md); fresh processes taking
    turns, the median of `repeats` each."""
    cores = len(os.sched_getaffinity(0))
    times: dict[int, list[float]] = {1: [], cores: []}
    for repeat in range(repeats):
        for count in times:
            wall, _ = timed_child(
                [*MNIST_DNN, *ONE_SEED_SEARCH, "--cores", str(count), "--out", str(out / f"{count}-{repeat}")]
            )
            times[count].append(wall)
    found = {"trials": 6, "epochs": 2, "cores": cores, "repeats": repeats}
    found["one_at_a_time_s"] = statistics.median(times[1])
    found["side_by_side_s"] = statistics.median(times[cores])
    found["speed_up"] = found["one_at_a_time_s"] / found["side_by_side_s"]
    return found


def print_trials_side_by_side(found: dict) -> None:
    print(
        f"A one-seed search, {found['trials']} trials x {found['epochs']} epochs (median of {found['repeats']}): "
        f"one trial at a time (--cores 1) {found['one_at_a_time_s']:.1f} s, {found['cores']} at a time "
        f"{found['side_by_side_s']:.1f} s ({found['speed_up']:.2f}x faster)"
    )


# --- Executors: the same sweep on two worker processes and on an embedded Ray ---

EXECUTOR_SWEEPS = (("processes", ["--executor", "processes", "--workers", "2"]), ("ray", ["--executor", "ray"]))


def executor_sweeps(epochs: int, out: Path, one_train_s: float) -> dict:
    """Wall time of the 12-run sweep per executor, against the bundled section's one train; Ray's start-up.

    Each is a fresh `mnist-dnn sweep` process, start-up included. Ray's start-up is what the
    sweep logs ("Ray: started locally in N s"): `ray.init()` of an embedded Ray.
    """
    found = {}
    for name, flags in EXECUTOR_SWEEPS:
        command = [*MNIST_DNN, "sweep", "--set", f"optimizer.learning_rate={SWEEP_RATES}", "--seeds", SWEEP_SEEDS]
        command += ["--epochs", str(epochs), "--out", str(out / name), "--no-plots", *flags]
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"benchmark command failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
        startup = [line.split(" in ")[-1].rstrip("s") for line in done.stderr.splitlines() if "Ray: started" in line]
        found[name] = {
            "wall_s": wall,
            "x_one_train": wall / one_train_s,
            "ray_start_s": float(startup[0]) if startup else None,
        }
    return found


def print_executor_sweeps(found: dict) -> None:
    print("| executor | wall s | x one train | Ray start-up s |")
    print("|---|---|---|---|")
    for name, row in found.items():
        startup = f"{row['ray_start_s']:.1f}" if row["ray_start_s"] is not None else "-"
        print(f"| {name} | {row['wall_s']:.1f} | {row['x_one_train']:.2f} | {startup} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=0, help="also time N custom-digit runs (0: skip)")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--only",
        choices=("serve", "bundled-sweeps", "tune-trial", "tune-trials", "models", "cores"),
        help="run only this section; its result joins the saved report",
    )
    parser.add_argument("--serve-updates", type=int, default=300, help="live updates timed for `serve`")
    parser.add_argument("--sweep-epochs", type=int, default=2, help="epochs of the 12-run sweeps (0: skip)")
    parser.add_argument(
        "--train-limit", type=int, default=None, help="train the models section on the first N images (a quick check)"
    )
    args = parser.parse_args()
    results_file = args.results / f"{machine_name()}.json"

    if args.only:
        with tempfile.TemporaryDirectory(prefix="mnist-dnn-bench-") as scratch:
            if args.only == "serve":
                result = serve_latency(args.serve_updates, Path(scratch))
                print_serve(result)
                section = {"serve_live_update": result}
            elif args.only == "models":
                models = model_costs(args.epochs, Path(scratch), args.train_limit)
                print_model_costs(models)
                section = {"models": models}
            elif args.only == "tune-trial":
                trial = trial_in_step(3, 2, 10_000, Path(scratch))
                print_trial_in_step(trial)
                section = {"tune_trial_in_step": trial}
            elif args.only == "tune-trials":
                trials = trials_side_by_side(Path(scratch))
                print_trials_side_by_side(trials)
                section = {"tune_trials_side_by_side": trials}
            elif args.only == "cores":  # what runs side by side on the cores buy (docs/cores.md)
                sweeps = bundled_sweeps(args.sweep_epochs, Path(scratch))
                trial = trial_in_step(3, 2, 10_000, Path(scratch) / "trial")
                trials = trials_side_by_side(Path(scratch) / "trials")
                floors = gemm_floors()
                print_bundled_sweeps(sweeps)
                print_trial_in_step(trial)
                print_trials_side_by_side(trials)
                print_floors(floors, sweeps["cores"][max(sweeps["cores"])]["fused_epoch_s"])
                section = {
                    "bundled_sweeps": sweeps,
                    "tune_trial_in_step": trial,
                    "tune_trials_side_by_side": trials,
                    "gemm_floors": floors,
                }
            else:
                sweeps = bundled_sweeps(args.sweep_epochs, Path(scratch))
                print_bundled_sweeps(sweeps)
                executors = executor_sweeps(args.sweep_epochs, Path(scratch), sweeps["one_train_s"])
                print_executor_sweeps(executors)
                section = {"bundled_sweeps": sweeps, "executor_sweeps": executors}
        saved = json.loads(results_file.read_text()) if results_file.exists() else {"machine": machine_name()}
        args.results.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps({**saved, **section}, indent=2) + "\n")
        return

    with tempfile.TemporaryDirectory(prefix="mnist-dnn-bench-") as scratch:
        rows = [
            train_once(engine, backend, args.epochs, Path(scratch) / f"{engine}-{backend}")
            for engine, backend in CONFIGURATIONS
        ]
        multi = multi_run(args.runs, args.epochs, Path(scratch)) if args.runs else None
        models = model_costs(args.epochs, Path(scratch) / "models", args.train_limit)
        serve_result = serve_latency(args.serve_updates, Path(scratch) / "serve")
        trial = trial_in_step(3, 2, 10_000, Path(scratch) / "trial")
        trials = trials_side_by_side(Path(scratch) / "trials")
        sweeps = bundled_sweeps(args.sweep_epochs, Path(scratch)) if args.sweep_epochs else None
        executors = executor_sweeps(args.sweep_epochs, Path(scratch), sweeps["one_train_s"]) if sweeps else None
    rate = matmul_rate()
    floor = EPOCH_FLOP / rate
    floors = gemm_floors()
    baseline = rows[0]["s_per_epoch"]
    for row in rows:
        row["speed_up_vs_fit_tensorflow"] = baseline / row["s_per_epoch"]
        row["times_floor"] = row["s_per_epoch"] / floor
    report = {
        "machine": machine_name(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "epoch_gflop": EPOCH_FLOP / 1e9,
        "matmul_gflop_per_s": rate / 1e9,
        "floor_s_per_epoch": floor,
        "help_s": help_seconds(),
        "configurations": rows,
        "multi_run": multi,
        "models": models,
        "serve_live_update": serve_result,
        "tune_trial_in_step": trial,
        "tune_trials_side_by_side": trials,
        "bundled_sweeps": sweeps,
        "executor_sweeps": executors,
        "gemm_floors": floors,
    }

    print(
        f"{report['machine']} ({report['cpu']}); epoch = {report['epoch_gflop']:.0f} GFLOP, "
        f"float32 matmul {report['matmul_gflop_per_s']:.0f} GFLOP/s -> floor {floor:.2f} s/epoch"
    )
    print(
        "| engine | backend | s/epoch | x faster than fit+tensorflow | x floor | first epoch s | peak MiB "
        "| test accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['engine']} | {row['backend']} | {row['s_per_epoch']:.2f} | "
            f"{row['speed_up_vs_fit_tensorflow']:.1f} | {row['times_floor']:.2f} | {row['first_epoch_s']:.1f} | "
            f"{row['peak_mib']} | {row['test_accuracy']:.4f} |"
        )
    if multi:
        print(
            f"{multi['runs']} custom-digit runs together: {multi['together_s']:.1f} s; one run: "
            f"{multi['one_run_s']:.1f} s -> {multi['speed_up_vs_sequential']:.2f}x faster than one after another"
        )
    print_floors(floors, rows[-1]["s_per_epoch"])  # the fused engine on jax
    print_model_costs(models)
    print_serve(serve_result)
    print_trial_in_step(trial)
    print_trials_side_by_side(trials)
    if sweeps:
        print_bundled_sweeps(sweeps)
        print_executor_sweeps(executors)
    print(f"mnist-dnn --help: {report['help_s']:.2f} s")
    args.results.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The checks of docs/cores.md that need a machine this project's CI does not have: a GPU, and many CPU cores.

    python bench/device_check.py --out DIR [--base CODE_ROOT] [--budget SECONDS] [--scratch DIR]

On a GPU: one `train --epochs 2` and the 12-run sweep of `make bench`, with this code and
(--base) the code from before bundles used CPU devices, taking turns, so that "on a GPU
nothing gets slower" is a side-by-side ratio; and a tune trial's seeds one after another
vs vmapped. On the CPU (JAX_PLATFORMS=cpu), the same train and sweep under `taskset` on
1, 2, 4, ... cores, up to all of them: the README's scaling table. Every command is a
fresh process, start-up included; each result is appended to DIR/device_check.jsonl as it
comes, and a table is printed last. Sections that would overrun --budget are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import SWEEP_RATES, SWEEP_SEEDS, TRIAL_IN_STEP  # bench/bench.py: this script's folder is on the path

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["sweep", "--set", f"optimizer.learning_rate={SWEEP_RATES}", "--seeds", SWEEP_SEEDS]  # as bench.py's


class Log:
    def __init__(self, out: Path, budget: float):
        self.path, self.started, self.budget, self.rows = out / "device_check.jsonl", time.monotonic(), budget, []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def add(self, **row) -> None:
        self.rows.append(row)
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def timed(
    command: list[str], code_root: Path, env: dict | None = None, cpus: list[int] | None = None
) -> tuple[float, str]:
    """Wall seconds of a fresh process running `command` with `code_root` first on its path (on `cpus` alone,
    as taskset would); its output."""
    environ = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(code_root), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    done = subprocess.run(  # not from the repository: `-m` and `-c` put the working directory first on the path
        command,
        cwd=tempfile.gettempdir(),
        env=environ,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return wall, done.stdout + done.stderr


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_dnn", *args]


def first_lines(text: str) -> str:
    return " | ".join(line for line in text.splitlines() if "runs:" in line or " on " in line)[:300]


def gpu_section(log: Log, out: Path, codes: dict[str, Path], rounds: int) -> None:
    """Train and sweep per code, taking turns; the first round also fills JAX's compilation cache."""
    for round_ in range(rounds):
        for name, root in codes.items():
            if log.left() < 120:
                return
            where = out / f"gpu-{name}-{round_}"
            wall, _ = timed(cli("train", "--epochs", "2", "--out", str(where / "train"), "-q", "--no-plots"), root)
            metrics = json.loads((where / "train" / "metrics.json").read_text())
            log.add(
                section="gpu",
                code=name,
                round=round_,
                what="train",
                wall_s=wall,
                epoch_s=metrics.get("timings", {}).get("epoch_s"),
                device=metrics.get("timings", {}).get("device"),
            )
            wall, text = timed(cli(*SWEEP, "--epochs", "2", "--out", str(where / "sweep"), "--no-plots"), root)
            log.add(section="gpu", code=name, round=round_, what="sweep", wall_s=wall, says=first_lines(text))


def trial_section(log: Log, out: Path, modes: tuple[str, ...], env: dict | None, label: str) -> None:
    for mode in modes:
        if log.left() < 90:
            return
        command = [sys.executable, "-c", TRIAL_IN_STEP, mode, "3", "2", "10000", str(out / f"trial-{label}-{mode}")]
        wall, text = timed(command, REPO, env)
        first, later = (float(value) for value in text.split()[-2:])
        log.add(section=f"trial-{label}", mode=mode, first_s=first, later_s=later, wall_s=wall)


def cpu_section(log: Log, out: Path, core_counts: list[int]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    env = {"JAX_PLATFORMS": "cpu"}
    for cores in core_counts:
        if log.left() < 100:
            return
        where = out / f"cpu-{cores}"
        train, _ = timed(
            cli("train", "--epochs", "2", "--out", str(where / "train"), "-q", "--no-plots"), REPO, env, cpus[:cores]
        )
        metrics = json.loads((where / "train" / "metrics.json").read_text())
        sweep, text = timed(
            cli(*SWEEP, "--epochs", "2", "--out", str(where / "sweep"), "--no-plots"), REPO, env, cpus[:cores]
        )
        log.add(
            section="cpu",
            cores=cores,
            train_s=train,
            epoch_s=metrics["timings"].get("epoch_s"),
            sweep_s=sweep,
            sweep_x_train=sweep / train,
            says=first_lines(text),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", type=Path, help="a code root from before (its mnist_dnn/ is imported instead)")
    parser.add_argument("--budget", type=float, default=480)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scratch", type=Path, help="where the runs go [default: a temporary directory]")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out, args.budget)
    log.add(
        section="machine", machine=platform.machine(), cpus=len(os.sched_getaffinity(0)), python=sys.version.split()[0]
    )
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="device-check-"))
    codes = {"now": REPO, **({"before": args.base.resolve()} if args.base else {})}
    for name, root in codes.items():
        _, where = timed([sys.executable, "-c", "import mnist_dnn; print(mnist_dnn.__file__)"], root)
        log.add(section="code", code=name, imports=where.strip())
    sections = [
        lambda: gpu_section(log, scratch, codes, args.rounds),
        lambda: trial_section(log, scratch, ("sequential", "vmap"), None, "gpu"),
        lambda: cpu_section(log, scratch, counts),
        lambda: trial_section(log, scratch, ("sequential", "devices"), {"JAX_PLATFORMS": "cpu"}, "cpu"),
    ]
    count, counts = len(os.sched_getaffinity(0)), []
    while count >= 1:
        counts.insert(0, count)
        count //= 2
    for section in sections:
        try:
            section()
        except SystemExit as failed:  # one section's failure is a row; the others still run
            log.add(section="failed", why=str(failed)[-4000:])
    print("\n".join(json.dumps(row) for row in log.rows))


if __name__ == "__main__":
    main()

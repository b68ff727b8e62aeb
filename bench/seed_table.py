"""Train the paper's config for several seeds on each backend and print the results table of docs/results/paper.md.

Usage: python bench/seed_table.py --seeds 0-4 --configurations fused:jax,fit:jax,fit:tensorflow
Each run is an ordinary `mnist-dnn train` subprocess (its own process, so each backend
starts clean); the table reads their metrics.json files. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

MNIST_DNN = [sys.executable, "-m", "mnist_dnn"]


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def run_seed(engine: str, backend: str, seed: int, out: Path, config: str) -> dict:
    run_dir = out / f"{engine}-{backend}-seed{seed}"
    if not (run_dir / "metrics.json").exists():
        subprocess.run(
            [
                *MNIST_DNN,
                "train",
                "--config",
                config,
                "--engine",
                engine,
                "--backend",
                backend,
                "--seed",
                str(seed),
                "--out",
                str(run_dir),
                "-q",
                "--no-plots",
            ],
            check=True,
        )
    return json.loads((run_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--configurations", default="fused:jax,fit:jax,fit:tensorflow", help="engine:backend,...")
    parser.add_argument("--config", default="configs/paper.toml")
    parser.add_argument("--out", type=Path, default=Path("runs/seed-table"))
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    print(
        "| engine | backend | seeds | test accuracy (mean ± std) | test loss (mean ± std) "
        "| s/epoch (median of epochs 2..N) |"
    )
    print("|---|---|---|---|---|---|")
    for configuration in args.configurations.split(","):
        engine, _, backend = configuration.partition(":")
        seeds = seed_range(args.seeds)
        results = [run_seed(engine, backend, seed, args.out, args.config) for seed in seeds]
        accuracy = [r["test_accuracy"] for r in results]
        loss = [r["test_loss"] for r in results]
        epoch_times = [t for r in results for t in r["timings"]["epoch_s"][1:]]
        accuracy_text = f"{statistics.mean(accuracy):.4f} ± {statistics.stdev(accuracy):.4f}"
        loss_text = f"{statistics.mean(loss):.4f} ± {statistics.stdev(loss):.4f}"
        print(
            f"| {engine} | {backend} | {args.seeds} | {accuracy_text} | {loss_text} "
            f"| {statistics.median(epoch_times):.2f} |"
        )


if __name__ == "__main__":
    main()

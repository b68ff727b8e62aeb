"""handwriting.toml and handwriting_lenet.toml against the paper's config on digits no model saw (docs/results/).

    python bench/handwriting.py --seeds 0-2 --out runs/handwriting-measure

Trains each config for each seed (ordinary run directories under --out; a rerun skips the
finished ones), then scores every model on
  * the custom-digit pages of custom_digits/source, digitized MNIST-style and the paper's way;
  * printed digits rendered from the fonts matplotlib ships (serif, sans, mono, italic) with
    pens of three widths, three slants (a shear, which the augmentation never applies) and two
    rendering sizes, digitized MNIST-style, as a photo of them would be (rendered once, kept
    in --out as printed.npz).
Prints a Markdown table of mean ± std over the seeds, with each run's seconds per epoch (the
mean of its epochs after the first, which also compiles), and writes results-<configs>.json into --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("paper", "handwriting", "handwriting_lenet")
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
PENS = {"fine": 0.0, "felt": 0.03, "marker": 0.06}  # extra stroke width, as a fraction of the font size
SLANTS = (-0.35, 0.0, 0.35)  # horizontal shear: x += slant * (centre - y)
SIZES = (24, 64)  # font size in pixels: a small rendering is coarse and blurred before it is digitized


def render_digits() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Every font x pen x slant x size x digit, digitized MNIST-style: images (N, 28, 28) 0-255, labels, what."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    from mnist_dnn.handwriting.digits import digitize

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    images, labels, kinds = [], [], []
    for font_name, (pen, width), slant, size, digit in itertools.product(FONTS, PENS.items(), SLANTS, SIZES, range(10)):
        font = ImageFont.truetype(str(font_dir / font_name), size)
        side = size * 3
        page = Image.new("L", (side, side), 255)
        stroke = round(width * size)
        ImageDraw.Draw(page).text(
            (side / 2, side / 2), str(digit), font=font, fill=0, anchor="mm", stroke_width=stroke, stroke_fill=0
        )
        page = page.transform(page.size, Image.Transform.AFFINE, (1, slant, -slant * side / 2, 0, 1, 0), fillcolor=255)
        images.append(digitize(np.asarray(page, dtype=np.float32) / 255.0, "mnist", font_name))
        labels.append(digit)
        kinds.append({"font": font_name, "pen": pen, "slant": slant, "size": size})
    return np.stack(images), np.array(labels), kinds


def custom_pages() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mnist_dnn.handwriting.digits import digitize_file, label_from_name

    pages = sorted((REPO / "custom_digits" / "source").glob("*.png"))
    labels = np.array([label_from_name(page) for page in pages])
    return {method: (np.stack([digitize_file(p, method) for p in pages]), labels) for method in ("mnist", "naive")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/handwriting-measure"))
    parser.add_argument(
        "--config",
        dest="configs",
        type=Path,
        action="append",
        help="A config to compare, named by its stem (repeatable) "
        "[default: configs/paper.toml, handwriting.toml, handwriting_lenet.toml].",
    )
    args = parser.parse_args(argv)

    from mnist_dnn.core.backend import activate_backend

    activate_backend("jax")
    from mnist_dnn.core.config import load_config
    from mnist_dnn.data.mnist import load_mnist
    from mnist_dnn.experiments.experiment import train_and_evaluate
    from mnist_dnn.experiments.sweep import parse_seeds
    from mnist_dnn.runs import directory as runs
    from mnist_dnn.training.evaluate import digit_probabilities
    from mnist_dnn.training.load import load_trained

    seeds = parse_seeds(args.seeds)
    dataset = load_mnist()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "printed.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            generated, generated_labels, kinds = saved["images"], saved["labels"], json.loads(str(saved["kinds"]))
    else:
        generated, generated_labels, kinds = render_digits()
        np.savez(cache, images=generated, labels=generated_labels, kinds=np.array(json.dumps(kinds)))
    sets = {f"pages ({method})": data for method, data in custom_pages().items()}
    sets["printed, all"] = (generated, generated_labels)
    for pen in PENS:
        chosen = np.array([k["pen"] == pen for k in kinds])
        sets[f"printed, {pen} pen"] = (generated[chosen], generated_labels[chosen])
    slanted = np.array([k["slant"] != 0 for k in kinds])
    sets["printed, slanted"] = (generated[slanted], generated_labels[slanted])
    configs = {path.stem: path for path in args.configs or [REPO / "configs" / f"{name}.toml" for name in CONFIGS]}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for name, seed in itertools.product(configs, seeds):
        overrides = {"train.seed": seed, "train.backend": "jax", "train.engine": "fused"}
        if args.epochs:
            overrides["train.epochs"] = args.epochs
        cfg = load_config(configs[name], overrides)
        run_dir = args.out / f"{name}-seed{seed}"
        status = runs.read_status(run_dir) if run_dir.is_dir() else None
        if status is None or status["status"] != "complete":
            run_dir.mkdir(exist_ok=True)
            resume = status is not None
            train_and_evaluate(cfg, dataset, run_dir, 0, resume=resume, tensorboard=False)
        trained = load_trained(run_dir)
        entry = {
            "seed": seed,
            "mnist_test_accuracy": runs.read_metrics(run_dir)["test_accuracy"],
            "seconds_per_epoch": seconds_per_epoch(runs.read_history(run_dir / runs.HISTORY_FILE)["epoch_time_s"]),
        }
        for set_name, (images, labels) in sets.items():
            predicted = digit_probabilities(trained, images.astype(np.float32)).argmax(axis=1)
            entry[set_name] = float((predicted == labels).mean())
        results[name].append(entry)
        print(f"{name} seed {seed}: {entry}", file=sys.stderr, flush=True)
        (args.out / f"results-{'-'.join(configs)}.json").write_text(
            json.dumps({"sizes": _sizes(sets), "runs": results}, indent=2)
        )
    print(table(results, sets))
    return 0


def seconds_per_epoch(times: list[float]) -> float:
    """Mean wall seconds of the epochs after the first (which also traces and compiles the program)."""
    return statistics.fmean(times[1:] or times)


def _sizes(sets) -> dict[str, int]:
    return {name: len(labels) for name, (_, labels) in sets.items()}


def table(results: dict[str, list[dict]], sets) -> str:
    columns = ["mnist_test_accuracy", "seconds_per_epoch", *sets]
    lines = [
        "| config | seeds | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
        "| images | | 10,000 | | " + " | ".join(f"{len(labels):,}" for _, labels in sets.values()) + " |",
    ]
    for name, entries in results.items():
        if not entries:
            continue
        cells = []
        for column in columns:
            values = [e[column] for e in entries]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 1 if column == "seconds_per_epoch" else 4
            cells.append(f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}")
        lines.append(f"| {name} | {len(entries)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Section 5.2.2: the paper's network tested on the author's own digits, over several training runs.

    digits = load_digits([Path("custom_digits")])
    summary = run_custom_experiment(cfg, dataset, digits, run_dir, runs=6, verbose=0)
    print(format_summary(summary))

Each run trains a fresh model (seeds seed, seed+1, ...) on MNIST with the custom digits as
the validation set, so every epoch's accuracy and loss on them is recorded (figures 9 and
10); each model is also scored on the MNIST test set. The run directory holds

    run-1/ ... run-N/     what `train` writes, val_* in history.csv = the custom digits
    predictions.csv       file, label, run-1, run-2, ...: the digit each model read
    probabilities.csv     run, file, label, p0..p9: each model's softmax output
    summary.json          per run and per image, and the answer to the paper's question

predictions.csv, probabilities.csv and summary.json are rewritten after every run, so an
interrupted experiment keeps the runs it finished.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.core.config import MAX_SEED, Config
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted
from mnist_dnn.core.memory import check_training_memory
from mnist_dnn.data.mnist import NUM_CLASSES, Dataset, load_configured
from mnist_dnn.data.preprocess import statistics_for_run
from mnist_dnn.experiments.bundles import execution_mode, train_custom_runs
from mnist_dnn.experiments.experiment import train_model, train_models_together
from mnist_dnn.experiments.sharing import one_program
from mnist_dnn.handwriting.digits import Digits
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import records
from mnist_dnn.runs.files import PREDICTIONS_FILE
from mnist_dnn.training.evaluate import DigitScores, majority, score_digits
from mnist_dnn.training.model import INPUT_SIZE

log = logging.getLogger(__name__)

PROBABILITIES_FILE = "probabilities.csv"
SUMMARY_FILE = "summary.json"
AS_GIVEN = "as given"  # the digits exactly as read (CSV files, or images digitized the default way)


def run_configs(cfg: Config, runs_count: int) -> list[Config]:
    """The runs' configs, seeds seed, seed+1, ...; refused when the last seed is beyond what seeding takes,
    or when the runs trained together cannot fit in memory."""
    last = cfg.train.seed + runs_count - 1
    if last > MAX_SEED:
        raise UserInputError(
            f"train.seed: {runs_count} runs from seed {cfg.train.seed} need seeds up to {last}, "
            f"more than the largest seed {MAX_SEED}"
        )
    cfgs = [
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + number))
        for number in range(runs_count)
    ]
    together = runs_count if runs_count > 1 and one_program(cfgs) else 1
    check_training_memory(cfg.model, cfg.optimizer, INPUT_SIZE, NUM_CLASSES, together, batch_size=cfg.train.batch_size)
    return cfgs


@dataclasses.dataclass(frozen=True)
class FinishedExperiment:
    """What `eval` prints and draws after section 5.2.2's runs."""

    run_dir: Path
    digits: Digits
    methods: Mapping[str, np.ndarray] | None
    summary: dict[str, Any]

    def figures(self):
        """Figures 8, 9, 10 and the prediction matrix (custom_figures)."""
        return custom_figures(self.run_dir, self.digits, self.summary, self.methods)


def run_section_522(
    cfg: Config,
    *,
    runs_count: int,
    load_digits: Callable[[], tuple[Digits, Mapping[str, np.ndarray] | None]],
    runs_root: Path,
    name: str | None,
    out: Path | None,
    verbose: int,
    tensorboard: bool,
) -> FinishedExperiment:
    """`eval`'s training: check the seeds, run name, `out` and digits (`load_digits()` -> digits, methods) first,
    then load the backend and MNIST and run the experiment into `out` or a new directory under `runs_root`.

    Ctrl-C becomes Interrupted: the runs that finished are kept.
    """
    from mnist_dnn.core.backend import activate_backend, usable_cores

    run_configs(cfg, runs_count)  # every run's seed checked before the run directory exists
    run_name = runs.check_run_name(name or "custom")
    if out is not None:
        runs.check_new_run_dir(out)
    digits, methods = load_digits()
    activate_backend(cfg.train.backend, cpu_devices=usable_cores())
    dataset = load_configured(cfg.data)
    run_dir = runs.create_run_dir(runs_root, run_name, out)
    try:
        summary = run_custom_experiment(cfg, dataset, digits, run_dir, runs_count, verbose, methods, tensorboard)
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted: finished runs are kept in {run_dir}") from None
    return FinishedExperiment(run_dir, digits, methods, summary)


def run_custom_experiment(
    cfg: Config,
    dataset: Dataset,
    digits: Digits,
    run_dir: Path,
    runs_count: int,
    verbose: int,
    methods: Mapping[str, np.ndarray] | None = None,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Train `runs_count` models into run_dir/run-1, run-2, ... and score each on the custom digits.

    `methods` maps a preprocessing name ("mnist", "naive") to the same digits prepared that
    way, (N, 28, 28) 0-255; every trained model is scored on each too. Each finished run is
    logged; `tensorboard` gives each run its event files. On the fused engine the runs train
    together, as one vmapped program, unless something steers runs apart.
    """
    if digits.labels is None:
        raise ValueError("run_custom_experiment needs labelled digits")
    seed, train = cfg.train.seed, cfg.train
    log.info(
        "%d custom digits; %d run(s) of %d epoch(s) on %s (seeds %d-%d, backend %s)",
        *(len(digits.files), runs_count, train.epochs, dataset.name, seed, seed + runs_count - 1, train.backend),
    )
    log.info("Run directory: %s", run_dir)
    method = cfg.preprocess.method
    validation = (digits.images, digits.labels)
    # index -> (its per_run entry, its probabilities, its scores per method): on several cores runs finish in any order
    scored: dict[int, tuple[dict[str, Any], np.ndarray, dict[str, DigitScores]]] = {}
    cfgs = run_configs(cfg, runs_count)
    sub_dirs = [run_dir / f"run-{number}" for number in range(1, runs_count + 1)]
    for sub_dir in sub_dirs:
        sub_dir.mkdir()

    summary: dict[str, Any] = {}  # rewritten after every run, so an interrupted experiment keeps what it finished

    def score(index: int, model, metrics: dict[str, Any]) -> None:
        sub_dir, run_cfg = sub_dirs[index], cfgs[index]
        stats = statistics_for_run(sub_dir, method)
        batch = cfg.train.batch_size
        scores = score_digits(model, digits.images, digits.labels, batch, method, stats)
        entry = {
            "run": sub_dir.name,
            "seed": run_cfg.train.seed,
            "custom_accuracy": scores.accuracy,
            "custom_loss": scores.loss,
            "mnist_test_accuracy": metrics["test_accuracy"],
            "mnist_test_loss": metrics["test_loss"],
            "epochs_completed": metrics["epochs_completed"],
        }
        by_method = {
            name: score_digits(model, images, digits.labels, batch, method, stats)
            for name, images in (methods or {}).items()
        }
        scored[index] = (entry, scores.probabilities, by_method)
        finished = [scored[k] for k in sorted(scored)]  # in run order, whichever finished first
        probabilities = np.stack([run_probabilities for _, run_probabilities, _ in finished])
        method_scores = {name: [run_methods[name] for _, _, run_methods in finished] for name in methods or {}}
        summary.clear()
        summary.update(summarize(cfg, digits, [entry for entry, _, _ in finished], probabilities, method_scores))
        _write_results(run_dir, digits, probabilities, summary)
        log.info(
            "run-%d: MNIST test accuracy %.4f, custom accuracy %.2f",
            *(index + 1, metrics["test_accuracy"], scores.accuracy),
        )

    if runs_count > 1 and one_program(cfgs) and execution_mode() == "vmap":
        train_models_together(cfgs, dataset, sub_dirs, validation, score, tensorboard)
    elif runs_count > 1 and one_program(cfgs):  # a CPU: one run per core, each its lone run exactly
        train_custom_runs(cfgs, sub_dirs, dataset, validation, score, tensorboard=tensorboard)
    else:
        for index, (run_cfg, sub_dir) in enumerate(zip(cfgs, sub_dirs, strict=True)):
            score(
                index, *train_model(run_cfg, dataset, sub_dir, verbose, validation=validation, tensorboard=tensorboard)
            )
    return summary


def summarize(
    cfg: Config,
    digits: Digits,
    per_run: list[dict[str, Any]],
    probabilities: np.ndarray,
    method_scores: Mapping[str, Sequence[DigitScores]],
) -> dict[str, Any]:
    """Everything summary.json holds: per run, per image, per preprocessing method, and the verdict."""
    labels = digits.labels
    predictions = probabilities.argmax(axis=2)  # (runs, images)
    runs_count = len(per_run)
    images = []
    for k, name in enumerate(digits.names):
        wrong = [int(p) for p in predictions[:, k] if p != labels[k]]
        images.append(
            {
                "file": name,
                "label": int(labels[k]),
                "predictions": [int(p) for p in predictions[:, k]],
                "probability_of_label": [float(p) for p in probabilities[:, k, labels[k]]],
                "correct_runs": runs_count - len(wrong),
                "missed_runs": len(wrong),
                "mistaken_for": {str(d): n for d, n in sorted(Counter(wrong).items(), key=lambda x: (-x[1], x[0]))},
            }
        )
    summary: dict[str, Any] = {
        "runs": runs_count,
        "epochs": cfg.train.epochs,
        "seeds": [entry["seed"] for entry in per_run],
        "backend": cfg.train.backend,
        "images": len(labels),
        "custom_accuracy": _spread([entry["custom_accuracy"] for entry in per_run]),
        "mnist_test_accuracy": _spread([entry["mnist_test_accuracy"] for entry in per_run]),
        "per_run": per_run,
        "per_image": images,
    }
    if method_scores:
        summary["methods"] = {
            AS_GIVEN: {
                "accuracy": [entry["custom_accuracy"] for entry in per_run],
                "loss": [entry["custom_loss"] for entry in per_run],
                "predictions": [[int(p) for p in row] for row in predictions],
            },
            **{
                name: {
                    "accuracy": [s.accuracy for s in scores],
                    "loss": [s.loss for s in scores],
                    "predictions": [[int(p) for p in s.predicted] for s in scores],
                }
                for name, scores in method_scores.items()
            },
        }
    summary["verdict"] = verdict(images, runs_count)
    return summary


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def verdict(images: Sequence[Mapping[str, Any]], runs_count: int) -> str:
    """The paper's question in words: chance, or the same images fooling every model?"""
    misses = sum(image["missed_runs"] for image in images)
    if misses == 0:
        return f"Every one of the {runs_count} models read every image correctly."
    consistent = [image for image in images if image["missed_runs"] > runs_count / 2]
    share = sum(image["missed_runs"] for image in consistent) / misses
    if consistent and share >= 0.75:
        names = ", ".join(image["file"] for image in consistent)
        return (
            f"The same image(s) fool most models ({names}): the errors belong to those images (or to how they "
            "were prepared), not to chance "
            "(the paper's second explanation)."
        )
    if not consistent:
        return (
            "No image is missed by more than half of the models: the errors move from run to run, "
            "as chance would have it (the paper's first explanation)."
        )
    return (
        f"Both: {len(consistent)} image(s) are missed by most models, and {1 - share:.0%} of the misses "
        "are scattered over other images."
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """The printed answer: scores per run, then per image which runs missed it and as what."""
    runs_count = summary["runs"]
    per_run = summary["per_run"]
    lines = [
        f"{summary['images']} custom digits, {runs_count} runs (seeds {_seed_range(summary['seeds'])}), "
        f"{_plural(summary['epochs'], 'epoch')} each",
        "",
        f"{'run':<8}{'seed':>5}{'MNIST test acc':>16}{'custom acc':>12}{'custom loss':>13}",
    ]
    for entry in per_run:
        lines.append(
            f"{entry['run']:<8}{entry['seed']:>5}{entry['mnist_test_accuracy']:>16.4f}"
            f"{entry['custom_accuracy']:>12.2f}{entry['custom_loss']:>13.3g}"
        )
    custom, mnist = summary["custom_accuracy"], summary["mnist_test_accuracy"]
    lines.append(f"{'mean':<13}{mnist['mean']:>16.4f}{custom['mean']:>12.2f}")
    lines += ["", f"{'file':<14}{'label':>6}{'correct':>9}  read as (run 1..{runs_count})"]
    for image in summary["per_image"]:
        read_as = " ".join(str(p) for p in image["predictions"])
        lines.append(f"{image['file']:<14}{image['label']:>6}{image['correct_runs']:>6}/{runs_count:<2}  {read_as}")
    lines.append("")
    missed = [image for image in summary["per_image"] if image["missed_runs"]]
    for image in sorted(missed, key=lambda i: -i["missed_runs"]):
        mistaken = ", ".join(f"{digit} ({n}x)" for digit, n in image["mistaken_for"].items())
        lines.append(
            f"Missed: {image['file']} (label {image['label']}) by {image['missed_runs']} of {runs_count} runs, "
            f"read as {mistaken}"
        )
    lines.append(
        f"MNIST test accuracy {mnist['min']:.4f}-{mnist['max']:.4f} over the runs, so the models themselves "
        "are sound; the custom score measures the digits."
    )
    lines.append(summary["verdict"])
    if "methods" in summary:
        lines += ["", "Same models, digits prepared each way (accuracy per run, then mean):"]
        labels = [image["label"] for image in summary["per_image"]]
        for name, result in summary["methods"].items():
            values = " ".join(f"{a:.2f}" for a in result["accuracy"])
            lines.append(f"  {name:<9} {values}   mean {np.mean(result['accuracy']):.2f}")
            correct = (np.array(result["predictions"]) == np.array(labels)).sum(axis=0)  # per image
            files = [image["file"] for image in summary["per_image"]]
            per_image = ", ".join(f"{f} {c}/{runs_count}" for f, c in zip(files, correct, strict=True))
            lines.append(f"  {'':<9} right per image: {per_image}")
    return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _seed_range(seeds: Sequence[int]) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"


def _write_results(run_dir: Path, digits: Digits, probabilities: np.ndarray, summary: Mapping[str, Any]) -> None:
    names = [entry["run"] for entry in summary["per_run"]]  # the runs finished so far: run-1 and run-3, say
    atomic_write_text(run_dir / PREDICTIONS_FILE, predictions_csv(digits, probabilities.argmax(axis=2), names))
    atomic_write_text(run_dir / PROBABILITIES_FILE, probabilities_csv(digits, probabilities, names))
    records.write_json(run_dir / SUMMARY_FILE, summary)


def predictions_csv(digits: Digits, predictions: np.ndarray, run_names: Sequence[str]) -> str:
    """file, label, run-1, run-2, ...: one row per image, the digit each run's model read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", *run_names])
    for k, name in enumerate(digits.names):
        writer.writerow([name, int(digits.labels[k]), *(int(p) for p in predictions[:, k])])
    return buffer.getvalue()


def probabilities_csv(digits: Digits, probabilities: np.ndarray, run_names: Sequence[str]) -> str:
    """run, file, label, p0..p9: every model's softmax output for every image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "file", "label", *(f"p{d}" for d in range(NUM_CLASSES))])
    for r in range(probabilities.shape[0]):
        for k, name in enumerate(digits.names):
            writer.writerow(
                [run_names[r], name, int(digits.labels[k]), *(records.format_number(p) for p in probabilities[r, k])]
            )
    return buffer.getvalue()


def custom_figures(run_dir: Path, digits: Digits, summary: Mapping[str, Any], methods: Mapping[str, np.ndarray] | None):
    """Figures 9 and 10, the prediction matrix, and the digits as most models read them (figure 8).

    `methods` are the same digits digitized other ways (as given to run_custom_experiment),
    each drawn too.
    """
    from mnist_dnn.figures import from_runs, plots

    figures = from_runs.run_figures(from_runs.read_for_figures([run_dir]))
    predictions = np.array([image["predictions"] for image in summary["per_image"]]).T  # (runs, images)
    figures["fig8_custom_digits"] = plots.plot_digit_grid(
        digits.images,
        digits.labels,
        majority(predictions),
        names=digits.names,
        title="Custom digits, read by most models",
    )
    for method_name, images in (methods or {}).items():
        read = majority(np.array(summary["methods"][method_name]["predictions"]))
        figures[f"fig8_custom_digits_{method_name}"] = plots.plot_digit_grid(
            images, digits.labels, read, names=digits.names, title=f"Page images digitized '{method_name}'"
        )
    return figures

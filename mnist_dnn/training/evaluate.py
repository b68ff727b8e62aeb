"""Scoring any model, on MNIST's test set or on digits of your own, returning plain numbers and text.

    trained = load_trained(Path("runs/RUN"))
    result = score_test_set(trained)                 # loss, accuracy, confusion matrix
    report = score_on_digits(trained, load_digits([Path("custom_digits")]))
    print(format_digit_report(report))

Digits are preprocessed exactly as the model's training images were (its run's method and
statistics). Keras is only touched through the model's own evaluate and predict.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dnn.core.atomic import atomic_write_text
from mnist_dnn.data.mnist import NUM_CLASSES, Dataset, load_configured
from mnist_dnn.data.preprocess import Statistics, prepare, transform
from mnist_dnn.handwriting.digits import Digits
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs.outputs import CONFUSION_HEADER
from mnist_dnn.training.load import TrainedModel

log = logging.getLogger(__name__)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
    """Test loss and accuracy, as the paper's `model_DNN.evaluate` prints them.

    Uses the training batch size so the numbers match the last epoch's validation
    metrics exactly (Keras validates with the same batch size).
    """
    scores = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {"loss": float(scores["loss"]), "accuracy": float(scores["accuracy"])}


def predict_probabilities(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The softmax output, (images, classes) float32: the probability the model gives each digit."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got {values.min()}..{values.max()}")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class DigitScores:
    """One model on one set of digits."""

    probabilities: np.ndarray  # float (images, 10): the softmax output
    loss: float  # categorical cross-entropy, as Keras reports val_loss
    accuracy: float

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def runner_up(self) -> np.ndarray:
        """The second most probable digit of each image."""
        return np.argsort(-self.probabilities, axis=1, kind="stable")[:, 1]


def score_digits(
    model, images: np.ndarray, labels: np.ndarray, batch_size: int, method: str, stats: Statistics | None
) -> DigitScores:
    """Probabilities, loss and accuracy of `model` on (N, 28, 28) images 0-255 with their labels.

    The digits are preprocessed exactly as the model's training images were (`method`,
    with the training set's `stats`).
    """
    x, y = prepare(images, labels, method, NUM_CLASSES, stats)
    scores = evaluate(model, x, y, batch_size)
    probabilities = predict_probabilities(model, x, batch_size).astype(np.float64)
    return DigitScores(probabilities, scores["loss"], scores["accuracy"])


def digit_probabilities(trained: TrainedModel, images: np.ndarray) -> np.ndarray:
    """(images, 10) softmax outputs of a saved model for (N, 28, 28) images 0-255, preprocessed as it was trained."""
    cfg = trained.config
    x = transform(images, cfg.preprocess.method, trained.stats)
    return predict_probabilities(trained.model, x, cfg.train.batch_size)


def image_table(names: Sequence[str], labels: np.ndarray, scores: DigitScores) -> list[dict[str, Any]]:
    """One row per image: file, label, predicted digit and its probability, the runner-up and its."""
    rows = []
    for k, name in enumerate(names):
        predicted, second = int(scores.predicted[k]), int(scores.runner_up[k])
        rows.append(
            {
                "file": name,
                "label": int(labels[k]),
                "predicted": predicted,
                "probability": float(scores.probabilities[k, predicted]),
                "runner_up": second,
                "runner_up_probability": float(scores.probabilities[k, second]),
                "correct": predicted == int(labels[k]),
            }
        )
    return rows


def confusion_csv(matrix: np.ndarray) -> str:
    """A confusion matrix as CSV: a row per true digit, a column per predicted digit."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([CONFUSION_HEADER.rstrip(","), *range(matrix.shape[1])])
    for digit, row in enumerate(matrix):
        writer.writerow([digit, *(int(v) for v in row)])
    return buffer.getvalue()


def majority(predictions: np.ndarray) -> np.ndarray:
    """The digit most runs read for each image (ties: the smaller digit); predictions is (runs, images)."""
    return np.array([np.bincount(column, minlength=NUM_CLASSES).argmax() for column in predictions.T])


# --- a saved model on MNIST's test set (`eval --model`, `plot --diagnostics`) --------------------------------------


@dataclass(frozen=True)
class TestSetPredictions:
    """A model's softmax outputs on a dataset's test images, and the confusion matrix they give."""

    dataset: Dataset
    probabilities: np.ndarray  # (images, 10)
    matrix: np.ndarray  # (10, 10): row = true digit, column = predicted


def predict_test_set(trained: TrainedModel, data_dir: Path | None = None) -> TestSetPredictions:
    """The model's predictions on the test set of the data its run trained on (or of `data_dir`)."""
    dataset = load_configured(trained.config.data, data_dir)
    probabilities = digit_probabilities(trained, dataset.x_test)
    matrix = confusion_matrix(dataset.y_test, probabilities.argmax(axis=1), NUM_CLASSES)
    return TestSetPredictions(dataset, probabilities, matrix)


@dataclass(frozen=True)
class TestSetScores:
    """`eval --model` on MNIST: test loss and accuracy, the confusion matrix, and where its CSV went."""

    dataset_name: str
    loss: float
    accuracy: float
    matrix: np.ndarray
    saved: Path


def score_test_set(trained: TrainedModel, target: Path, data_dir: Path | None = None) -> TestSetScores:
    """Test loss and accuracy of a saved model, and its confusion matrix written as CSV to `target`."""
    cfg = trained.config
    predicted = predict_test_set(trained, data_dir)
    dataset = predicted.dataset
    x, y = prepare(dataset.x_test, dataset.y_test, cfg.preprocess.method, NUM_CLASSES, trained.stats)
    scores = evaluate(trained.model, x, y, cfg.train.batch_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, confusion_csv(predicted.matrix))
    return TestSetScores(dataset.name, scores["loss"], scores["accuracy"], predicted.matrix, target)


def test_set_json(result: TestSetScores) -> str:
    summary = {"dataset": result.dataset_name, "test_loss": result.loss, "test_accuracy": result.accuracy}
    return runs.json_dumps({**summary, "confusion_matrix": result.matrix.tolist(), "saved": str(result.saved)})


def format_test_set(result: TestSetScores) -> str:
    """The printed scores and confusion matrix, as the paper's `evaluate` prints its two numbers."""
    lines = [
        f"Test loss: {result.loss}",
        f"Test accuracy: {result.accuracy}",
        "Confusion matrix (row = true digit, column = predicted):",
        "     " + "".join(f"{d:>6}" for d in range(NUM_CLASSES)),
    ]
    lines += [f"{digit:>5}" + "".join(f"{int(v):>6}" for v in row) for digit, row in enumerate(result.matrix)]
    lines.append(f"Saved: {result.saved}")
    return "\n".join(lines) + "\n"


# --- a saved model on your own digits (`eval --model --custom-csv`, `predict`, `show --model`) ---------------------


@dataclass(frozen=True)
class DigitReport:
    """One saved model on labelled digits: scores, a row per image, and the same digits digitized other ways."""

    model: Path
    scores: DigitScores
    rows: list[dict[str, Any]]
    methods: dict[str, DigitScores]


def score_on_digits(
    trained: TrainedModel, path: Path, digits: Digits, methods: Mapping[str, np.ndarray] | None = None
) -> DigitReport:
    """Score a saved model (given as `path`) on `digits`, and on each of `methods`' versions of the same digits."""
    model, stats = trained.model, trained.stats
    batch, prep = trained.config.train.batch_size, trained.config.preprocess.method
    scores = score_digits(model, digits.images, digits.labels, batch, prep, stats)
    rows = image_table(digits.names, digits.labels, scores)
    others = {
        m: score_digits(model, images, digits.labels, batch, prep, stats) for m, images in (methods or {}).items()
    }
    return DigitReport(path, scores, rows, others)


def digit_report_json(report: DigitReport) -> str:
    scores = report.scores
    result = {"model": str(report.model), "images": report.rows, "accuracy": scores.accuracy, "loss": scores.loss}
    if report.methods:
        result["methods"] = {
            m: {"accuracy": s.accuracy, "loss": s.loss, "predicted": [int(p) for p in s.predicted]}
            for m, s in report.methods.items()
        }
    return runs.json_dumps(result)


def format_digit_report(report: DigitReport) -> str:
    """A line per image (wrong ones marked), the accuracy and loss, and how each other digitization read them."""
    rows = report.rows
    width = max(len("file"), *(len(row["file"]) for row in rows))
    lines = [f"{'file':<{width}}  label  predicted  probability  runner-up"]
    for row in rows:
        mark = "" if row["correct"] else "   wrong"
        lines.append(
            f"{row['file']:<{width}}  {row['label']:>5}  {row['predicted']:>9}  {row['probability']:>11.4f}  "
            f"{row['runner_up']} ({row['runner_up_probability']:.2g}){mark}"
        )
    correct = sum(row["correct"] for row in rows)
    lines.append(f"Accuracy: {report.scores.accuracy} ({correct}/{len(rows)})")
    lines.append(f"Loss: {report.scores.loss}")
    for m, s in report.methods.items():
        read = " ".join(str(int(p)) for p in s.predicted)
        lines.append(f"Digitized '{m}' from the page images: accuracy {s.accuracy:.2f}, loss {s.loss:.3g}, read {read}")
    return "\n".join(lines) + "\n"


def predict_digits(trained: TrainedModel, digits: Digits) -> list[dict[str, Any]]:
    """`predict`: per file the digit the model reads, its probability, and all ten probabilities."""
    return prediction_rows(trained.path, digits.names, digit_probabilities(trained, digits.images))


def prediction_rows(model: Path, names: Sequence[str], probabilities: np.ndarray) -> list[dict[str, Any]]:
    """A row per image, as `predict` prints them: its name, the digit read, its probability, all ten.

    Where `model`'s output is not a number (a diverged run) no digit is read ('predicted' None), and a warning says so.
    """
    unreadable = [name for name, p in zip(names, probabilities, strict=True) if not np.isfinite(p).all()]
    if unreadable:
        log.warning(
            "%s: the model's output is not a number for %d of %d digit(s) (its weights are not finite: a diverged "
            "run?); no digit is read there ('predicted' null)",
            model,
            len(unreadable),
            len(probabilities),
        )
    return [
        {
            "file": name,
            "predicted": int(p.argmax()) if np.isfinite(p).all() else None,  # argmax of NaN would say "0"
            "probability": float(p.max()),
            "probabilities": [float(v) for v in p],
        }
        for name, p in zip(names, probabilities, strict=True)
    ]


def format_predictions(rows: Sequence[Mapping[str, Any]]) -> str:
    width = max(len("file"), *(len(row["file"]) for row in rows))
    lines = [f"{'file':<{width}}  digit  prob.  " + " ".join(f"{d:>5}" for d in range(NUM_CLASSES))]
    for row in rows:
        spread = " ".join(f"{v:5.3f}" for v in row["probabilities"])
        digit = "-" if row["predicted"] is None else row["predicted"]
        lines.append(f"{row['file']:<{width}}  {digit:>5}  {row['probability']:5.3f}  {spread}")
    return "\n".join(lines) + "\n"

"""Figures the paper never shows: the test set's confusion matrix and confident mistakes, gradient norms, a search.

Like `figures.plots`, from plain arrays and dicts, as `matplotlib.figure.Figure`s made directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnist_dnn.figures.plots import (
    CONFUSION,
    DPI,
    EPOCH_LABEL,
    MISTAKES,
    SINGLE_SIZE,
    epoch_numbers,
    epoch_ticks,
    plot_digit_grid,
)
from mnist_dnn.runs.records import GRAD_NORM_PREFIX

MISTAKES_SHOWN = 24  # confidently wrong test digits in the diagnostics gallery


def plot_confusion_matrix(matrix: np.ndarray, dataset: str = "MNIST") -> Figure:
    """A heat map of counts, true digit down, predicted digit across, every count written in its cell."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    classes = matrix.shape[0]
    total = matrix.sum()
    accuracy = np.trace(matrix) / total if total else float("nan")
    fig = Figure(figsize=(6.0, 5.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2
    for true in range(classes):
        for predicted in range(classes):
            count = int(matrix[true, predicted])
            ax.text(
                predicted,
                true,
                str(count),
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if count > threshold else "black",
            )
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("Predicted digit")
    ax.set_ylabel("True digit")
    ax.set_title(f"Confusion matrix, {dataset} test set (accuracy {accuracy:.2%})")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Images")
    return fig


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` wrongly predicted images, most confident first (ties: lower index first)."""
    probabilities = np.asarray(probabilities)  # (images, classes)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def plot_confident_mistakes(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, count: int = MISTAKES_SHOWN
) -> Figure:
    """The test digits the model got wrong with the highest probability: image, true, predicted, probability."""
    probabilities = np.asarray(probabilities)  # (images, classes)
    predicted = probabilities.argmax(axis=1)
    chosen = confident_mistakes(labels, probabilities, count)
    wrong = int((predicted != np.asarray(labels)).sum())
    return plot_digit_grid(
        np.asarray(images)[chosen],
        np.asarray(labels)[chosen],
        predicted[chosen],
        probabilities[chosen, predicted[chosen]],
        title=f"Most confident mistakes ({wrong} of {len(labels)} test images wrong)",
    )


def diagnostic_figures(dataset, probabilities: np.ndarray, matrix: np.ndarray) -> dict[str, Figure]:
    """`plot --diagnostics`: the test set's confusion matrix and its most confidently wrong digits.

    `dataset` is a data.Dataset; `probabilities` (test images, classes) are the model's outputs on its test set.
    """
    name = "MNIST" if dataset.name == "mnist" else dataset.name
    return {
        CONFUSION: plot_confusion_matrix(matrix, dataset=name),
        MISTAKES: plot_confident_mistakes(dataset.x_test, dataset.y_test, probabilities),
    }


def plot_gradient_norms(history: Mapping[str, Sequence[float]], title: str | None = None) -> Figure:
    """Section 6's vanishing and exploding gradients: |dL/dW| of each Dense (and convolution) layer per epoch.

    Draws the history's grad_norm_<layer> columns on a log scale, input side first as they
    are named (conv_1, ..., hidden_1, hidden_2, ..., digits); a first layer far below the last one is the
    vanishing gradient the paper describes.
    """
    columns = [name for name in history if name.startswith(GRAD_NORM_PREFIX)]
    if not columns:
        raise ValueError("the history has no grad_norm_<layer> columns")
    columns.sort(key=_layer_order)
    epochs = epoch_numbers(history)
    fig = Figure(figsize=SINGLE_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for column in columns:
        ax.plot(epochs, history[column], marker="o", markersize=3, label=column.removeprefix(GRAD_NORM_PREFIX))
    ax.set_yscale("log")
    ax.set_xticks(epoch_ticks(epochs))
    ax.set_xlabel(EPOCH_LABEL)
    ax.set_ylabel("Gradient norm |dL/dW|")
    ax.set_title(title or "Gradient norm per layer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return fig


def _layer_order(column: str) -> tuple[int, int, str]:
    """conv_1 < conv_2 < ... < hidden_1 < hidden_2 < ... < hidden_10 < the output layer."""
    layer = column.removeprefix(GRAD_NORM_PREFIX)
    match = re.fullmatch(r"(conv|hidden)_(\d+)", layer)
    if match is None:
        return (2, 0, layer)
    return (0 if match.group(1) == "conv" else 1, int(match.group(2)), layer)


def plot_optimization_history(trials: Sequence[Mapping[str, Any]]) -> Figure:
    """A search's trials in order: mean validation accuracy of each, pruned ones hollow, and the best so far.

    `trials` are rows of `tune.trials_table` (keys trial, state, val_accuracy_mean); a
    pruned trial's score is that of the epoch it stopped at, so it never sets the best.
    """
    rows = sorted(trials, key=lambda row: row["trial"])
    fig = Figure(figsize=SINGLE_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for state, style in (("complete", {"color": "tab:blue"}), ("pruned", {"facecolors": "none", "edgecolors": "0.5"})):
        chosen = [row for row in rows if row["state"] == state]
        if chosen:
            numbers = [row["trial"] for row in chosen]
            ax.scatter(numbers, [row["val_accuracy_mean"] for row in chosen], label=state, zorder=3, **style)
    complete = [row for row in rows if row["state"] == "complete"]
    if complete:
        best = np.maximum.accumulate([row["val_accuracy_mean"] for row in complete])
        ax.step([row["trial"] for row in complete], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("Trial")
    ax.set_ylabel("Validation accuracy (mean over seeds)")
    ax.set_title("Optimization history")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return fig


def plot_param_importances(importances: Mapping[str, float]) -> Figure:
    """Horizontal bars, most important parameter on top: `importances` maps a parameter to its share (sums to 1)."""
    names = sorted(importances, key=lambda name: importances[name])
    fig = Figure(figsize=SINGLE_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[name] for name in names], color="tab:blue")
    ax.set_xlabel("Importance for validation accuracy")
    ax.set_title("Parameter importances")
    return fig

"""Figures from plain arrays and dicts: the paper's figures 3, 4, 6, 8, 9 and 10, and diagnostics it never shows.

    from mnist_dnn.figures import plots
    from mnist_dnn.runs import directory as runs
    fig = plots.plot_history(runs.read_history(run_dir / runs.HISTORY_FILE))  # figure 6
    plots.save_figure(fig, run_dir / "fig6_accuracy_loss.png")

    figures = plots.run_figures(runs.read_for_figures([run_dir]))   # name -> Figure, whatever kind of run it is

Every figure is a `matplotlib.figure.Figure` made directly, never pyplot state, so drawing
and saving need no display and no GUI backend (saving renders with Agg, or the SVG/PDF
writers); only `show_figures` touches pyplot. Keras is never imported here: callers pass
arrays (images, labels, probabilities) and history dicts.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.config import format_value
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs.directory import GRAD_NORM_PREFIX
from mnist_dnn.runs.outputs import TOOL_MARK

FORMATS = ("png", "svg", "pdf")
DPI = 120  # an 8-inch figure is 960 px wide: sharp at README width without being heavy
PAIR_SIZE = (8.0, 3.5)  # inches: accuracy and loss side by side, as figure 6 (a) and (b)
SINGLE_SIZE = (5.0, 3.5)  # inches: one metric (figures 9 and 10)
SVG_HASH_SALT = "mnist-dnn"  # fixed ids inside SVGs, so the same figure gives the same bytes
_METADATA = {  # no dates, so the same input gives byte-identical output; our mark, so a later run may replace it
    "png": {"Software": TOOL_MARK},
    "svg": {"Date": None, "Creator": TOOL_MARK},
    "pdf": {"CreationDate": None, "Creator": TOOL_MARK},
}
_MAX_EPOCH_TICKS = 12  # beyond this many epochs, label every k-th one (still starting at 1)
_TILE_SIZE = 1.25  # inches per digit in a grid: room for a two-line caption
_WRONG_COLOR = "tab:red"
MISTAKES_SHOWN = 24  # confidently wrong test digits in the diagnostics gallery

# File names (without suffix) of the figures written into a run directory.
FIG6 = "fig6_accuracy_loss"  # section 5.2.1, figure 6 (a) and (b)
FIG9 = "fig9_custom_accuracy"  # section 5.2.2, figure 9
FIG10 = "fig10_custom_loss"  # section 5.2.2, figure 10
PREDICTIONS = "predictions"  # which custom digit each model got right
COMPARE = "compare_accuracy_loss"  # several run directories overlaid
CONFUSION = "confusion_matrix"  # diagnostics: MNIST test set, true vs predicted
MISTAKES = "confident_mistakes"  # diagnostics: the most confidently wrong test digits
FIG3 = "fig3_activations"  # section 3.1, figure 3: activation functions and their derivatives
FIG4 = "fig4_loss_vs_step"  # section 4.8, figure 4 (right): loss against training step, one line per setting
GRADIENTS = "gradient_norms"  # section 6: per-layer gradient norms per epoch (vanishing gradients)
MAX_LEGEND_LABEL = 60  # characters; a legend of longer config differences is unreadable at README size
STEP_SMOOTHING = 50  # training steps averaged per point of figure 4: single batches are too noisy to read

# The paper's axis titles (section 5.1, the plotting code after Step 5).
METRIC_TITLES = {"accuracy": "Model Accuracy", "loss": "Model Loss"}
EPOCH_LABEL = "Epoch"
# The paper validates on the test set and calls that curve 'test' (section 5.1); a run that
# validates on held-out training images calls it 'validation'.
SERIES = (("", "train"), ("val_", "test"))


# --- drawing: arrays and dicts in, Figure out ----------------------------------------------------------------------


def plot_history(history: Mapping[str, Sequence[float]], title: str | None = None, validation: str = "test") -> Figure:
    """Figure 6: accuracy (left) and loss (right) per epoch, 'train' and 'test' lines, epochs from 1.

    `history` is what `runs.read_history` returns; a missing `val_*` column just omits the
    'test' line, which `validation` renames when the run validated on something else.
    Markers make a one-epoch run visible.
    """
    epochs = _epochs(history)
    fig = Figure(figsize=PAIR_SIZE, dpi=DPI, layout="constrained")
    for ax, metric in zip(fig.subplots(1, 2), METRIC_TITLES, strict=True):
        for prefix, label in _series(validation):
            if prefix + metric in history:
                ax.plot(epochs, history[prefix + metric], marker="o", markersize=3, label=label)
        _label_axes(ax, metric, epochs)
        ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    return fig


def plot_history_overlay(
    histories: Sequence[Mapping[str, Sequence[float]]],
    labels: Sequence[str],
    title: str | None = None,
    validations: Sequence[str] | None = None,
) -> Figure:
    """Several runs' figure 6 in one: a colour per run, solid for train, dashed for test (or validation)."""
    if len(histories) != len(labels):
        raise ValueError(f"got {len(histories)} histories but {len(labels)} labels")
    validations = validations or ["test"] * len(histories)
    fig = Figure(figsize=(PAIR_SIZE[0], PAIR_SIZE[1] + 0.35 * len(histories)), dpi=DPI, layout="constrained")
    longest = max((_epochs(h) for h in histories), key=len, default=[1])
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, METRIC_TITLES, strict=True):
        for index, (history, label, validation) in enumerate(zip(histories, labels, validations, strict=True)):
            color = f"C{index % 10}"
            for (prefix, split), style in zip(_series(validation), ("-", "--"), strict=True):
                if prefix + metric in history:
                    ax.plot(
                        _epochs(history),
                        history[prefix + metric],
                        style,
                        color=color,
                        marker="o",
                        markersize=3,
                        label=f"{label} ({split})",
                    )
        _label_axes(ax, metric, longest)
    handles, legend_labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="outside lower center", ncols=2, fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_multi_run(
    histories: Sequence[Mapping[str, Sequence[float]]],
    metric: str,
    *,
    column_prefix: str = "val_",
    dataset: str = "custom digits",
    model_names: Sequence[str] | None = None,
) -> Figure:
    """Figures 9 and 10: one line per model ("Model 1" ... "Model N"), their mean and a ±1 std band.

    `metric` is "accuracy" or "loss"; the column drawn is `column_prefix + metric`
    (`val_*` holds the custom digits in a multi-run directory). Runs may have different
    lengths: the mean and std at each epoch are over the runs that reached it, and the std
    is the population one (ddof=0), so a single run has a zero-width band.
    """
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric must be one of {', '.join(METRIC_TITLES)}, got {metric!r}")
    if not histories:
        raise ValueError("plot_multi_run needs at least one history")
    names = list(model_names) if model_names is not None else [f"Model {k}" for k in range(1, len(histories) + 1)]
    column = column_prefix + metric
    series = [np.asarray(history[column], dtype=float) for history in histories]
    epochs = max((_epochs(h) for h in histories), key=len)
    padded = np.full((len(series), len(epochs)), np.nan)  # (models, epochs)
    for row, values in enumerate(series):
        padded[row, : len(values)] = values
    mean, std = _mean_std(padded)

    fig = Figure(figsize=SINGLE_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for history, values, name in zip(histories, series, names, strict=True):
        ax.plot(_epochs(history), values, marker="o", markersize=3, linewidth=1, alpha=0.8, label=name)
    ax.fill_between(epochs, mean - std, mean + std, color="0.5", alpha=0.25, linewidth=0, label="mean ± 1 std")
    ax.plot(epochs, mean, color="black", linewidth=2, label="mean")
    _label_axes(ax, metric, epochs)
    ax.set_title(f"{METRIC_TITLES[metric]} ({dataset})")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return fig


def plot_prediction_matrix(
    predictions: np.ndarray,
    labels: Sequence[int],
    image_names: Sequence[str] | None = None,
    model_names: Sequence[str] | None = None,
    title: str = "Predictions on custom digits",
) -> Figure:
    """Which model got which digit right: rows = models, columns = images, each cell the predicted digit.

    `predictions` is (models, images) of predicted digits; green cells are correct, red wrong,
    and each row's label carries that model's accuracy (section 5.2.2 asks whether the same
    images fool every model).
    """
    predictions = np.asarray(predictions, dtype=int)  # (models, images)
    labels = np.asarray(labels, dtype=int)  # (images,)
    if predictions.ndim != 2 or predictions.shape[1] != labels.shape[0]:
        raise ValueError(f"predictions must be (models, {labels.shape[0]} images), got shape {predictions.shape}")
    n_models, n_images = predictions.shape
    correct = predictions == labels[None, :]
    models = list(model_names) if model_names is not None else [f"Model {k}" for k in range(1, n_models + 1)]
    images = list(image_names) if image_names is not None else [str(k) for k in range(1, n_images + 1)]

    fig = Figure(
        figsize=(max(4.0, 1.5 + 0.8 * n_images), max(2.5, 1.4 + 0.4 * n_models)), dpi=DPI, layout="constrained"
    )
    ax = fig.subplots()
    ax.imshow(correct, cmap=ListedColormap(["#f4c7c3", "#b7e1cd"]), vmin=0, vmax=1, aspect="auto")
    for row in range(n_models):
        for col in range(n_images):
            ax.text(col, row, str(predictions[row, col]), ha="center", va="center", fontsize=10)
    ax.set_xticks(range(n_images), [f"{name}\ntrue {label}" for name, label in zip(images, labels, strict=True)])
    ax.set_yticks(range(n_models), [f"{m} ({c.mean():.0%})" for m, c in zip(models, correct, strict=True)])
    ax.tick_params(axis="x", labelsize="small")
    ax.set_xlabel("Image (true digit)")
    ax.set_title(f"{title}: {correct.mean():.0%} correct")
    return fig


def plot_digit(image: np.ndarray, title: str) -> Figure:
    """Figure 5/8 style: one 28x28 digit with `matshow` and the binary colour map, as section 5.1 draws it."""
    fig = Figure(figsize=(4.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.matshow(_square(image), cmap="binary")
    ax.set_title(title)
    return fig


def plot_digit_grid(
    images: np.ndarray,
    labels: Sequence[int] | None = None,
    predictions: Sequence[int] | None = None,
    probabilities: Sequence[float] | None = None,
    *,
    columns: int | None = None,
    title: str | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """A grid of digits (binary colour map), each captioned with its label, and prediction if given.

    `probabilities` is the probability the model gave its predicted digit, one per image.
    A wrong prediction is captioned in red. `names` (e.g. file names) go above the caption.
    """
    images = np.asarray(images)
    count = len(images)
    for argument, values in (("labels", labels), ("predictions", predictions), ("probabilities", probabilities)):
        if values is not None and len(values) != count:
            raise ValueError(f"{argument}: expected {count} values, one per image, got {len(values)}")
    columns = max(1, min(columns or 8, count or 1))
    rows = max(1, math.ceil(count / columns))
    fig = Figure(figsize=(columns * _TILE_SIZE, rows * _TILE_SIZE * 1.2 + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index >= count:
            continue
        ax.imshow(_square(images[index]), cmap="binary")
        caption, wrong = _caption(index, labels, predictions, probabilities)
        if names is not None:
            caption = f"{names[index]}\n{caption}"
        ax.set_title(caption, fontsize="small", color=_WRONG_COLOR if wrong else "black")
    if count == 0:
        axes[0].text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=axes[0].transAxes)
    if title:
        fig.suptitle(title)
    return fig


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


def plot_digits(
    images: np.ndarray,
    labels: np.ndarray | None,
    names: Sequence[str] | None,
    title: str,
    probabilities: np.ndarray | None = None,
    *,
    grid: bool = True,
) -> Figure:
    """`show`: digits in a grid, or the first alone; with a model's `probabilities`, its reading in each caption."""
    predictions = confidence = None
    if probabilities is not None:  # (images, classes)
        predictions, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    if grid:
        return plot_digit_grid(images, labels, predictions, confidence, title=title, names=names)
    if predictions is not None:
        title += f", predicted {predictions[0]} ({confidence[0]:.1%})"
    return plot_digit(images[0], title)


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
    epochs = _epochs(history)
    fig = Figure(figsize=SINGLE_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for column in columns:
        ax.plot(epochs, history[column], marker="o", markersize=3, label=column.removeprefix(GRAD_NORM_PREFIX))
    ax.set_yscale("log")
    last = max(epochs, default=1)
    ax.set_xticks(list(range(1, last + 1, max(1, math.ceil(last / _MAX_EPOCH_TICKS)))))
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


def plot_loss_vs_step(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], smoothing: int = STEP_SMOOTHING
) -> Figure:
    """Figure 4 (right): training loss against training step, one line per setting (e.g. learning rate).

    `curves` maps a label to (steps, per-batch losses); each line is the mean of
    `smoothing` consecutive batches, drawn at the last of them, on a log loss axis so
    that a diverging rate and a creeping one both stay visible.
    """
    if not curves:
        raise ValueError("plot_loss_vs_step needs at least one curve")
    fig = Figure(figsize=(6.5, 4.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for label, (steps, losses) in curves.items():
        steps_smoothed, losses_smoothed = _block_means(np.asarray(steps), np.asarray(losses, dtype=float), smoothing)
        ax.plot(steps_smoothed, losses_smoothed, linewidth=1.5, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Training step (batch)")
    ax.set_ylabel("Loss")
    ax.set_title("Loss against training step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize="small")
    return fig


def _block_means(steps: np.ndarray, losses: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of consecutive blocks of `size` losses (the last block may be shorter), at each block's last step."""
    starts = np.arange(0, len(losses), max(1, size))
    sums = np.add.reduceat(losses, starts) if len(losses) else np.array([])
    counts = np.diff(np.append(starts, len(losses)))
    return steps[np.minimum(starts + counts - 1, len(steps) - 1)], sums / counts


ACTIVATIONS = ("relu", "sigmoid", "tanh")  # the three of figure 3


def activation_curves(x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (f(x), f'(x)) for ReLU, sigmoid and tanh, computed from their definitions (section 3.1)."""
    sigmoid = 1.0 / (1.0 + np.exp(-x))
    tanh = np.tanh(x)
    return {
        "relu": (np.maximum(x, 0.0), (x > 0).astype(float)),  # f'(0) taken as 0, as the frameworks do
        "sigmoid": (sigmoid, sigmoid * (1.0 - sigmoid)),
        "tanh": (tanh, 1.0 - tanh**2),
    }


def plot_activations(span: float = 5.0) -> Figure:
    """Figure 3: ReLU, sigmoid and tanh (left) and their derivatives (right) on [-span, span].

    The derivatives show why section 6 blames sigmoid and tanh for vanishing gradients:
    theirs never exceed 0.25 and 1 and die away from zero, while ReLU's is 1 wherever a
    unit is active.
    """
    x = np.linspace(-span, span, 801)
    fig = Figure(figsize=PAIR_SIZE, dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True)
    for name, (values, slopes) in activation_curves(x).items():
        left.plot(x, values, label=name)
        right.plot(x, slopes, label=name)
    for ax, title in ((left, "Activation f(z)"), (right, "Derivative f'(z)")):
        ax.set_title(title)
        ax.set_xlabel("z")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.axvline(0, color="0.6", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    return fig


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


# --- files: saving and showing -----------------------------------------------------------------------------------


def save_figure(fig: Figure, path: Path, format: str | None = None) -> Path:
    """Render `fig` and write it atomically to `path`; the format comes from `format` or the suffix.

    The same figure always gives the same bytes: no dates in the metadata and a fixed
    SVG id salt.
    """
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise UserInputError(f"{path}: unknown figure format {fmt!r} (expected {', '.join(FORMATS)})")
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_figures(figures: Mapping[str, Figure], directory: Path, format: str = "png") -> list[Path]:
    """Write each named figure as directory/<name>.<format> (directory created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, directory / f"{name}.{format}", format) for name, fig in figures.items()]


def display_available() -> bool:
    """Whether a window could open: always on macOS and Windows, elsewhere only with X11 or Wayland."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show_figures(figures: Sequence[Figure]) -> bool:
    """Open each figure in a window and block until they are closed; False if no window can open.

    The only function here that imports pyplot, so headless use never selects a GUI backend.
    """
    if not display_available():
        return False
    import matplotlib.pyplot as plt
    from matplotlib.backends import BackendFilter, backend_registry

    if plt.get_backend().lower() not in backend_registry.list_builtin(BackendFilter.INTERACTIVE):
        return False  # e.g. no Tk/Qt installed: pyplot fell back to Agg, which cannot open windows
    for fig in figures:
        plt.figure(fig)  # adopt the Figure into pyplot so plt.show() displays it
    plt.show()
    return True


def run_figures(inputs: runs.RunHistories | runs.MultiRun | runs.SweepSteps) -> dict[str, Figure]:
    """Every figure what `runs.read_for_figures` read gives, by file name (without suffix).

    One run directory: figure 6 (and its gradient norms). A multi-run directory: figures 9
    and 10 (and the prediction matrix when predictions.csv is there). A sweep directory:
    figure 4. Several run directories: their curves overlaid, labelled by what differs
    between their config.toml files.
    """
    if isinstance(inputs, runs.SweepSteps):
        return _sweep_figures(inputs)
    if isinstance(inputs, runs.MultiRun):
        return _multi_run_figures(inputs)
    histories = inputs.histories
    validations = [_validation_name(config) for config in inputs.configs]
    if len(histories) == 1:
        figures = {FIG6: plot_history(histories[0], validation=validations[0])}
        if any(name.startswith(GRAD_NORM_PREFIX) for name in histories[0]):
            figures[GRADIENTS] = plot_gradient_norms(histories[0])
        return figures
    labels = config_labels(inputs.configs, inputs.names)
    return {COMPARE: plot_history_overlay(histories, labels, validations=validations)}


def config_labels(configs: Sequence[Mapping[str, Any] | None], names: Sequence[str]) -> list[str]:
    """Legend labels from what differs between configs ("optimizer.learning_rate=0.01"), else `names`.

    A missing config (None) means nothing can be compared, so `names` are used, as when a
    label would run past MAX_LEGEND_LABEL characters; labels that would still coincide get
    the name appended.
    """
    if any(config is None for config in configs):
        return list(names)
    flat = [_flatten(config) for config in configs]
    keys = sorted({key for one in flat for key in one})
    differing = [key for key in keys if len({repr(one.get(key)) for one in flat}) > 1]
    if not differing:
        return list(names)
    labels = [", ".join(f"{key}={format_value(one.get(key))}" for key in differing) for one in flat]
    if max(len(label) for label in labels) > MAX_LEGEND_LABEL:  # too much differs to say: the names say it
        return list(names)
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({name})" for label, name in zip(labels, names, strict=True)]
    return labels


# --- helpers --------------------------------------------------------------------------------------------------------


def _series(validation: str) -> tuple[tuple[str, str], ...]:
    """(column prefix, legend name) of the train and the validation curve."""
    return (SERIES[0], (SERIES[1][0], validation))


def _validation_name(config: Mapping[str, Any] | None) -> str:
    """'test' for the paper's validation on the test set, else 'validation' (held-out training images)."""
    section = (config or {}).get("validation", {})
    return "test" if not isinstance(section, Mapping) or section.get("source", "test") == "test" else "validation"


def _epochs(history: Mapping[str, Sequence[float]]) -> list[int]:
    """The 1-based epoch numbers: the 'epoch' column, else 1..N from the first column's length."""
    if "epoch" in history:
        return [int(round(e)) for e in history["epoch"]]
    length = max((len(v) for v in history.values()), default=0)
    return list(range(1, length + 1))


def _label_axes(ax, metric: str, epochs: Sequence[int]) -> None:
    """The paper's labels and title, and integer epoch ticks starting at 1 (its `x_labels`)."""
    last = max(epochs, default=1)
    step = max(1, math.ceil(last / _MAX_EPOCH_TICKS))
    ax.set_xticks(list(range(1, last + 1, step)))
    ax.set_xlabel(EPOCH_LABEL)
    ax.set_ylabel(METRIC_TITLES[metric])
    ax.set_title(METRIC_TITLES[metric])
    ax.grid(alpha=0.3)


def _square(image: np.ndarray) -> np.ndarray:
    """A flat 784-vector (what the network sees) back to 28x28; 2-D images pass unchanged."""
    image = np.asarray(image)
    if image.ndim == 1:
        side = math.isqrt(image.size)
        return image.reshape(side, side)
    return image


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise mean and population std of (models, epochs), ignoring NaN padding."""
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(axis=0) / counts
    std = np.sqrt(np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / counts)
    return mean, std


def _caption(index, labels, predictions, probabilities) -> tuple[str, bool]:
    """A tile's caption and whether its prediction is wrong."""
    parts = []
    if labels is not None:
        parts.append(f"label {int(labels[index])}")
    wrong = False
    if predictions is not None:
        predicted = int(predictions[index])
        guess = f"pred {predicted}"
        if probabilities is not None:
            guess += f" ({float(probabilities[index]):.0%})"
        parts.append(guess)
        wrong = labels is not None and predicted != int(labels[index])
    return "\n".join(parts), wrong


def _multi_run_figures(multi: runs.MultiRun) -> dict[str, Figure]:
    names = [_model_name(run) for run in multi.run_names]
    figures = {
        FIG9: plot_multi_run(multi.histories, "accuracy", model_names=names),
        FIG10: plot_multi_run(multi.histories, "loss", model_names=names),
    }
    if multi.predictions is not None:
        found = multi.predictions
        model_names = [_model_name(run) for run in found.run_names]
        figures[PREDICTIONS] = plot_prediction_matrix(found.predicted, found.labels, found.files, model_names)
    return figures


def _model_name(run_name: str) -> str:
    """'run-3' -> 'Model 3', as figures 9 and 10 name the models."""
    return f"Model {run_name.split('-')[1]}"


def _sweep_figures(sweep: runs.SweepSteps) -> dict[str, Figure]:
    """Figure 4 (right) of a sweep directory: each setting's loss per step, averaged over its runs."""
    curves = {}
    for setting, histories in sweep.steps.items():
        length = min(len(h["loss"]) for h in histories)
        mean = np.mean([h["loss"][:length] for h in histories], axis=0)
        curves[setting] = ([int(step) for step in histories[0]["step"][:length]], mean)
    return {FIG4: plot_loss_vs_step(curves)}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"learning_rate": 0.01}} -> {"optimizer.learning_rate": 0.01}."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat

"""`plot` and `show`: the paper's figures from saved runs, and digits drawn as the paper draws them.

Drawing lives in mnist_dnn.figures; matplotlib loads inside the commands, so --help stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from mnist_dnn import api
from mnist_dnn.cli.options import (
    DEFAULT_RUNS_ROOT,
    FIGURE_FORMATS,
    files_under,
    plot_options,
    show_options,
)
from mnist_dnn.runs.outputs import check_output_dir, check_output_file

FIGURE_SUFFIXES = tuple(f".{fmt}" for fmt in FIGURE_FORMATS)
PAPER_DIGIT_INDEX = 20  # the training image section 5.1 draws: X_train[20]


@click.command()
@plot_options
def plot(run_dirs, out, fmt, diagnostics, activations, open_window, overwrite):
    """Draw the paper's figures from saved runs: 6, or 9 and 10, or 4; and figure 3.

    One run directory gives figure 6 (and its per-layer gradient norms), written into
    it. A multi-run directory (run-1/, run-2/, ...) gives figures 9 and 10; a sweep
    directory figure 4 (loss per training step, a line per setting); several run
    directories one overlay whose legend says what differs in their config.toml.

    \b
    mnist-dnn plot                            # the latest run under runs/
    mnist-dnn plot runs/20250101T120000Z-paper --format svg
    mnist-dnn plot runs/A runs/B --out compare
    mnist-dnn plot runs/A --diagnostics       # + confusion matrix, confident mistakes
    mnist-dnn plot runs/SWEEP                 # a sweep directory: figure 4, loss per training step
    mnist-dnn plot --activations --out figures
    """
    from mnist_dnn.figures import plots
    from mnist_dnn.runs import directory as runs

    if out is not None:
        check_output_dir(out)
    if not run_dirs and not activations:
        run_dirs = (runs.latest_run_dir(DEFAULT_RUNS_ROOT),)
        click.echo(f"Latest run: {run_dirs[0]}", err=True)
    if len(run_dirs) > 1 and out is None:
        raise click.UsageError("--out: needed when plotting several run directories")
    if len(run_dirs) > 1 and diagnostics:
        raise click.UsageError("--diagnostics: give a single run directory")
    figures = api.run_figures(*run_dirs) if run_dirs else {}
    if diagnostics and run_dirs:
        from mnist_dnn.figures.diagnostics import diagnostic_figures
        from mnist_dnn.training.evaluate import predict_test_set

        found = predict_test_set(api.open_model(run_dirs[0], None))
        figures.update(diagnostic_figures(found.dataset, found.probabilities, found.matrix))
    if activations:
        figures[plots.FIG3] = plots.plot_activations()
    directory = out or (run_dirs[0] if run_dirs else Path("."))
    for name in figures:  # every file checked before the first is written
        check_output_file(directory / f"{name}.{fmt}", (f".{fmt}",), option="", overwrite=overwrite)
    for path in plots.save_figures(figures, directory, fmt):
        click.echo(f"Wrote {path}")
    if open_window:
        _show_windows(figures.values())


@click.command("show")
@show_options
def show_digits(index, grid, custom_paths, model_path, data_dir, out, open_window, overwrite):
    """Draw digits as the paper does (matshow, binary colour map), with labels.

    MNIST training image 20 by default, the first N test digits with --grid, or your own
    digits with --custom-csv; --model adds each digit's prediction and its probability.

    \b
    mnist-dnn show                            # training image 20, as section 5.1
    mnist-dnn show --index 7 --out seven.svg
    mnist-dnn show --grid 16 --model runs/20250101T120000Z-paper
    mnist-dnn show --custom-csv custom_digits --model runs/20250101T120000Z-paper   # figure 8
    """
    if (index is not None) + (grid is not None) + bool(custom_paths) > 1:
        raise click.UsageError("--index, --grid and --custom-csv: choose one")
    if grid is None and not custom_paths:
        index = PAPER_DIGIT_INDEX if index is None else index
    reads = [*files_under(custom_paths), *([] if model_path is None else files_under([model_path]))]
    if out is not None:
        check_output_file(out, FIGURE_SUFFIXES, reads, overwrite=overwrite)
    from mnist_dnn.figures import plots
    from mnist_dnn.handwriting.digits import digits_to_show
    from mnist_dnn.training.evaluate import digit_probabilities

    images, labels, names, title, default_out = digits_to_show(index, grid, custom_paths, data_dir)
    probabilities = None if model_path is None else digit_probabilities(api.open_model(model_path, None), images)
    fig = plots.plot_digits(images, labels, names, title, probabilities=probabilities, grid=index is None)
    out = check_output_file(out or default_out, FIGURE_SUFFIXES, reads, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"Wrote {plots.save_figure(fig, out)}")
    if open_window:
        _show_windows([fig])


def _show_windows(figures) -> None:
    from mnist_dnn.figures import plots

    if not plots.show_figures(list(figures)):
        click.echo("--show: no display available; the figures are in the files above", err=True)

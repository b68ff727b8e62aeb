"""`digitize`, `eval`, `predict`: your own digits (section 5.2.2), digitized, scored and read.

Reading and digitizing live in mnist_dnn.handwriting; Keras loads inside the commands.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from mnist_dnn import api
from mnist_dnn.cli.console import configure_logging, echo_figures, keras_verbosity
from mnist_dnn.cli.options import (
    CONFUSION_FILE,
    DEFAULT_CUSTOM_RUNS,
    DEFAULT_RUNS_ROOT,
    digitize_options,
    eval_options,
    files_under,
    predict_options,
    refuse_inapplicable,
)
from mnist_dnn.runs.outputs import check_output_file


def save_figures(figures, directory: Path, quiet: bool) -> None:
    """Figures drawn into a finished run directory, each named on stderr."""
    from mnist_dnn.figures import plots

    echo_figures(plots.save_figures(figures, directory), quiet)


@click.command()
@digitize_options
def digitize(images, out, method, labels, overwrite):
    """Turn photos of digits (PNG/JPEG) into 28x28 CSVs in the paper's format (0 = paper, 255 = ink).

    Dark ink on light paper or the reverse is detected. Writes NAME.csv, a
    NAME.preview.png drawn as the paper's figure 8, and labels.csv when every
    image has a label.

    \b
    mnist-dnn digitize photo-3.jpg --out mine
    mnist-dnn digitize a.png b.png --label 3 --label 8 --out mine
    mnist-dnn digitize custom_digits/source/3.png --method naive --out naive
    """
    from mnist_dnn.handwriting.digits import write_digitized

    for path in write_digitized(images, out, method=method, labels=labels, overwrite=overwrite):
        click.echo(f"Wrote {path}")


@click.command("eval")
@eval_options
def eval_command(
    model_path,
    digit_flags,
    runs_count,
    compare_methods,
    experiment,
    out,
    name,
    as_json,
    no_plots,
    engine,
    quiet,
    no_tensorboard,
    overwrite,
):
    """Score models on your own digits (section 5.2.2) or on the MNIST test set.

    Without --model it runs the paper's experiment: --runs models trained on MNIST with
    the custom digits as validation set, their accuracy and loss per epoch (figures 9
    and 10), which images each model misses and as what, and each model's MNIST score.

    \b
    mnist-dnn eval --custom-csv custom_digits                # 6 runs x 10 epochs
    mnist-dnn eval --custom-csv custom_digits --runs 2 --epochs 1 --compare-methods
    mnist-dnn eval --model runs/RUN --custom-csv custom_digits --json
    mnist-dnn eval --model runs/RUN                          # MNIST test set + confusion_matrix.csv
    """
    if model_path is None and not digit_flags.paths:
        raise click.UsageError("give --custom-csv (train and test), --model (score it), or both")
    configure_logging(quiet)
    if model_path is None:
        refuse_inapplicable("with --model (training writes a new run directory)", overwrite=overwrite)
        from mnist_dnn.experiments.section522 import format_summary, run_section_522
        from mnist_dnn.runs import records

        cfg, load = experiment.resolve(engine), functools.partial(digit_flags.load, compare_methods)
        runs_count, verbose = runs_count or DEFAULT_CUSTOM_RUNS, keras_verbosity(quiet)
        done = run_section_522(
            cfg,
            runs_count=runs_count,
            load_digits=load,
            runs_root=DEFAULT_RUNS_ROOT,
            name=name,
            out=out,
            verbose=verbose,
            tensorboard=not no_tensorboard,
        )
        if not no_plots:
            save_figures(done.figures(), done.run_dir, quiet)
        click.echo(records.json_dumps(done.summary) if as_json else format_summary(done.summary), nl=as_json)
        if not as_json:
            click.echo(f"Saved: {done.run_dir}")
        return 0
    given = experiment
    training = dict(runs=runs_count, config=given.config, epochs=given.epochs, seed=given.seed)
    training.update(learning_rate=given.learning_rate, engine=engine, no_plots=no_plots, no_tensorboard=no_tensorboard)
    refuse_inapplicable("when training, without --model", name=name, batch_size=given.batch_size, **training)
    if not digit_flags.paths:
        flags = dict(labels=digit_flags.labels, invert=digit_flags.invert, compare_methods=compare_methods)
        refuse_inapplicable("with --custom-csv", **flags)
        from mnist_dnn.training import evaluate

        model_dir = model_path if model_path.is_dir() else model_path.parent
        # Its own earlier confusion matrix is replaced, not read: `eval --model RUN` runs twice.
        reads = [path for path in files_under([model_path]) if path.name != CONFUSION_FILE]
        target = check_output_file(out or model_dir / CONFUSION_FILE, (".csv",), reads, overwrite=overwrite)
        trained = api.open_model(model_path, given.backend)
        result = evaluate.score_test_set(trained, target, given.data_dir)
        click.echo(evaluate.test_set_json(result) if as_json else evaluate.format_test_set(result), nl=as_json)
        return 0
    refuse_inapplicable("when training or scoring on MNIST", out=out, data_dir=given.data_dir, overwrite=overwrite)
    from mnist_dnn.training import evaluate

    digits, methods = digit_flags.load(compare_methods)
    report = evaluate.score_on_digits(api.open_model(model_path, given.backend), model_path, digits, methods)
    click.echo(evaluate.digit_report_json(report) if as_json else evaluate.format_digit_report(report), nl=as_json)
    return 0


@click.command()
@predict_options
def predict(files, model_path, invert, method, backend, as_json):
    """The digit a model reads in each CSV or image, with its probabilities.

    \b
    mnist-dnn predict custom_digits/3.csv --model runs/RUN
    mnist-dnn predict photo.jpg custom_digits --model runs/RUN/model.keras --json
    """
    from mnist_dnn.runs import records
    from mnist_dnn.training.evaluate import format_predictions

    rows = api.predict(model_path, list(files), invert=invert, method=method, backend=backend).rows
    click.echo(records.json_dumps(rows) if as_json else format_predictions(rows), nl=as_json)
    return 0

"""The `mnist-dnn` command line: each command resolves its inputs, makes one call into a stage, prints.

Keras, TensorFlow and JAX are imported inside the commands only, so `--help` answers
at once and the backend can still be chosen when a command starts.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from mnist_dnn import __version__, api
from mnist_dnn.cli.options import (
    CONFUSION_FILE,
    DEFAULT_CUSTOM_RUNS,
    DEFAULT_RUNS_ROOT,
    FIGURE_FORMATS,
    OneLineErrorGroup,
    configure_logging,
    digitize_options,
    epoch_line_printer,
    eval_options,
    experiment_options,
    export_options,
    keras_verbosity,
    plot_options,
    predict_options,
    refuse_inapplicable,
    refuse_other_executor,
    resolve_train,
    serve_options,
    set_option,
    show_options,
    sweep_options,
    train_options,
    tune_options,
)
from mnist_dnn.core.config import resolve_backend
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs.outputs import check_output_dir, check_output_file


def _save_figures(figures, directory: Path, quiet: bool) -> None:
    """Figures drawn into a finished run directory, each named on stderr."""
    from mnist_dnn.figures import plots

    _echo_figures(plots.save_figures(figures, directory), quiet)


def _echo_figures(paths, quiet: bool) -> None:
    for path in paths:
        if not quiet:
            click.echo(f"Figure: {path}", err=True)


@click.group(name="mnist-dnn", cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-dnn")
def main():
    """Reproduce the Keras MNIST experiment of "Deep Learning Basics: An Overview".

    \b
    mnist-dnn fetch                          # get and verify the MNIST files
    mnist-dnn train                          # the paper's run: 10 epochs, batch 64, Adam
    mnist-dnn train --epochs 1 --backend tensorflow
    mnist-dnn train --resume runs/RUN        # continue a run stopped by Ctrl-C
    mnist-dnn sweep --set optimizer.learning_rate=1e-3,1e-2 --seeds 0-2   # change a knob, compare
    mnist-dnn tune --space optimizer.learning_rate=log:1e-4..1e-1 --trials 20 --seeds 0-2  # search
    mnist-dnn plot                           # figure 6 of the latest run
    mnist-dnn eval --custom-csv paper     # section 5.2.2: six runs on the paper's five digits
    mnist-dnn digitize photo.jpg --out mine  # a photographed digit -> MNIST-style CSV
    mnist-dnn serve                          # draw digits in the browser, see your models read them
    mnist-dnn export runs/RUN --format onnx  # the network for onnxruntime (or --format savedmodel)
    mnist-dnn config show                    # the settings a train would use
    mnist-dnn config list                    # the worked configs, for --config NAME
    """


@main.command()
@train_options
def train(
    experiment,
    out,
    name,
    quiet,
    log_every_epoch,
    no_plots,
    engine,
    assignments,
    resume_dir,
    checkpoint_every,
    no_tensorboard,
):
    """Train the paper's network on MNIST, evaluate it on the test set, and save the run.

    Ctrl-C stops after saving what the finished epochs produced; --resume continues such
    a run to exactly the result it would have had.

    \b
    mnist-dnn train
    mnist-dnn train --epochs 1 --seed 3 --out runs/quick
    mnist-dnn train --config configs/sgd.toml --set optimizer.learning_rate=0.05
    mnist-dnn train --resume runs/20250101T120000Z-paper
    """
    configure_logging(quiet)
    cfg, run_name = resolve_train(experiment, engine, assignments, out, name, resume_dir)
    verbose = keras_verbosity(quiet, log_every_epoch)
    progress = () if quiet or cfg.train.engine == "fit" else (epoch_line_printer(cfg.train.epochs),)
    done = api.train(
        None if resume_dir else cfg,
        out=out,
        name=run_name,
        resume=resume_dir,
        runs_root=DEFAULT_RUNS_ROOT,
        figures=not no_plots,
        tensorboard=not no_tensorboard,
        checkpoint_every=checkpoint_every,
        verbose=verbose,
        progress=progress,
    )
    _echo_figures(done.figures, quiet)
    click.echo(f"Test loss: {done.metrics['test_loss']}")
    click.echo(f"Test accuracy: {done.metrics['test_accuracy']}")
    click.echo(f"Saved: {done.run_dir}")
    return 0


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Take the files from DIR (raw or .gz IDX, or mnist.npz) instead of downloading.",
)
def fetch(data_dir):
    """Download (if needed) and verify the MNIST files, and say where they are.

    \b
    mnist-dnn fetch
    mnist-dnn fetch --data-dir ~/Downloads/mnist
    MNIST_DNN_DATA=/data/mnist mnist-dnn fetch
    """
    from mnist_dnn.core.backend import activate_backend

    configure_logging(quiet=False)
    activate_backend(resolve_backend(None))  # Keras' download source imports keras: keep it off TensorFlow
    from mnist_dnn.data.mnist import describe, load_mnist

    click.echo(describe(load_mnist(data_dir)), nl=False)


@main.group()
def config():
    """Inspect the experiment's settings."""


@config.command("show")
@experiment_options
@set_option
@click.option("--explain", is_flag=True, help="Add each setting's meaning as a comment.")
def config_show(experiment, assignments, explain):
    """Print the fully resolved config (file + flags + defaults) as TOML.

    \b
    mnist-dnn config show
    mnist-dnn config show --config configs/paper.toml --epochs 3 --explain
    mnist-dnn config show --set optimizer.name=sgd --set optimizer.learning_rate=0.05
    """
    from mnist_dnn.core.config import shown_toml

    cfg = experiment.resolve(None, assignments)
    click.echo(shown_toml(cfg, explain), nl=False)


@config.command("list")
def config_list():
    """The built-in configs: each one's name (for --config NAME), section of the paper and what it shows.

    \b
    mnist-dnn config list
    mnist-dnn config show --config handwriting
    mnist-dnn train --config sgd --epochs 3
    """
    from mnist_dnn.core.packaged import config_list as builtin_configs

    rows = builtin_configs()
    name_width = max(len(name) for name, _, _ in rows)
    section_width = max(len(section) for _, section, _ in rows)
    click.echo(f"{'name':<{name_width}}  {'section':<{section_width}}  shows")
    for name, section, shows in rows:
        click.echo(f"{name:<{name_width}}  {section:<{section_width}}  {shows}")


@main.group()
def digits():
    """The digit sets that ship with mnist-dnn."""


@digits.command("copy")
@click.argument("name", metavar="NAME", type=click.Choice(["paper"]))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Write into a non-empty DEST, replacing files of the same names.")
def digits_copy(name, dest, overwrite):
    """Write a packaged digit set into DEST for you to look at or edit: 'paper' is section 5.2.2's 3 8 9 5 4.

    \b
    mnist-dnn digits copy paper my_digits
    mnist-dnn eval --custom-csv my_digits --runs 2 --epochs 1
    """
    from mnist_dnn.core.packaged import copy_digits

    check_output_dir(dest, option="")
    for path in copy_digits(name, dest, overwrite):
        click.echo(f"Wrote {path}")


@main.command()
@sweep_options
def sweep(
    config_paths,
    axis_texts,
    seeds,
    folds,
    epochs,
    backend,
    engine,
    data_dir,
    out,
    name,
    executor,
    workers,
    cores,
    ray_address,
    no_plots,
    quiet,
    no_tensorboard,
):
    """Train every combination of settings x seeds (x folds) and rank the settings.

    Each run is an ordinary run directory inside the sweep directory; summary.csv holds
    mean ± std of test accuracy and loss per setting, best first (by validation accuracy
    with --folds), and fig4_loss_vs_step.png is the paper's figure 4 (right).

    \b
    mnist-dnn sweep --set optimizer.learning_rate=1e-4,1e-3,1e-2,1e-1 --seeds 0-2 --out runs/lr
    mnist-dnn sweep --set optimizer.learning_rate=1e-3,1e-2 --seeds 0-2 --cores 4
    mnist-dnn sweep --config configs/sgd.toml --config configs/paper.toml --seeds 0-2
    mnist-dnn sweep --set model.dropout=0,0.5 --folds 5 --epochs 3
    mnist-dnn sweep --set optimizer.learning_rate=1e-3,1e-2 --seeds 0-5 --executor processes --workers 2
    mnist-dnn sweep --set optimizer.learning_rate=1e-3,1e-2 --seeds 0-5 --executor ray --ray-address auto
    """
    from mnist_dnn.experiments.sweep import summary_markdown

    configure_logging(quiet)
    refuse_other_executor(
        executor, workers=(workers, ("processes",)), cores=(cores, ("local",)), ray_address=(ray_address, ("ray",))
    )
    done = api.sweep(
        axis_texts,
        seeds,
        configs=config_paths,
        folds=folds,
        epochs=epochs,
        backend=backend,
        engine=engine,
        data_dir=data_dir,
        out=out,
        name=name,
        executor=executor,
        workers=workers,
        cores=cores,
        ray_address=ray_address,
        runs_root=DEFAULT_RUNS_ROOT,
        figures=not no_plots,
        tensorboard=not no_tensorboard,
    )
    click.echo(summary_markdown(done.rows, folds=done.folds), nl=False)
    _echo_figures(done.figures, quiet)
    click.echo(f"Saved: {done.sweep_dir}")
    return 0


@main.command()
@tune_options
def tune(
    space_texts,
    trials,
    seeds,
    config_path,
    epochs,
    assignments,
    out,
    sampler,
    pruner,
    startup_trials,
    warmup_epochs,
    study_seed,
    storage,
    study_name,
    executor,
    workers,
    cores,
    ray_address,
    backend,
    data_dir,
    no_plots,
    quiet,
    no_tensorboard,
):
    """Search settings with Optuna, each trial scored on its mean validation accuracy over --seeds.

    Validation is a holdout of the training set (the same images for every trial); the
    test set is read once, when the best setting is retrained on the whole training set.
    The study lives in <out>/study.journal: the same command again continues it.

    \b
    mnist-dnn tune --space optimizer.learning_rate=log:1e-4..1e-1 --space model.dropout=float:0..0.7 \\
        --trials 20 --seeds 0-2 --epochs 3 --out runs/tune
    mnist-dnn tune ... --executor ray --workers 4   # Ray tasks; on a cluster, --out on a shared filesystem
    """
    from mnist_dnn.experiments.tune import best_summary, plan_from_flags, run_tune, table_markdown

    configure_logging(quiet)
    flags = {"train.epochs": epochs, "train.backend": backend, "data.data_dir": data_dir and str(data_dir)}
    plan = plan_from_flags(config_path, flags, assignments, space_texts, seeds, trials, study_seed, not no_tensorboard)
    refuse_other_executor(
        executor,
        workers=(workers, ("processes", "ray")),
        cores=(cores, ("local",)),
        ray_address=(ray_address, ("ray",)),
    )
    study = dict(name=study_name, sampler=sampler, pruner=pruner, startup=startup_trials, warmup=warmup_epochs)
    tune_dir, rows, best = run_tune(
        plan, out, DEFAULT_RUNS_ROOT, storage, study, executor, workers, ray_address, not no_plots, cores
    )
    click.echo(table_markdown(rows, plan.space), nl=False)
    click.echo(best_summary(plan, best))
    click.echo(f"Saved: {tune_dir} (best config: {tune_dir / 'best.toml'})")
    return 0


# --- Figures: `plot` and `show` (drawing lives in mnist_dnn.figures.plots; matplotlib loads inside the commands) ---

FIGURE_SUFFIXES = tuple(f".{fmt}" for fmt in FIGURE_FORMATS)
PAPER_DIGIT_INDEX = 20  # the training image section 5.1 draws: X_train[20]


@main.command()
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
        from mnist_dnn.training.evaluate import predict_test_set

        found = predict_test_set(api.open_model(run_dirs[0], None))
        figures.update(plots.diagnostic_figures(found.dataset, found.probabilities, found.matrix))
    if activations:
        figures[plots.FIG3] = plots.plot_activations()
    directory = out or (run_dirs[0] if run_dirs else Path("."))
    for name in figures:  # every file checked before the first is written
        check_output_file(directory / f"{name}.{fmt}", (f".{fmt}",), option="", overwrite=overwrite)
    for path in plots.save_figures(figures, directory, fmt):
        click.echo(f"Wrote {path}")
    if open_window:
        _show_windows(figures.values())


@main.command("show")
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
    reads = [*_files_under(custom_paths), *([] if model_path is None else _files_under([model_path]))]
    if out is not None:
        check_output_file(out, FIGURE_SUFFIXES, reads, overwrite=overwrite)
    from mnist_dnn.figures import plots
    from mnist_dnn.handwriting.digits import digits_to_show
    from mnist_dnn.training.evaluate import digit_probabilities

    images, labels, names, title, default_out = digits_to_show(index, grid, custom_paths, data_dir)
    probabilities = None if model_path is None else digit_probabilities(api.open_model(model_path, None), images)
    fig = plots.plot_digits(images, labels, names, title, probabilities, grid=index is None)
    out = check_output_file(out or default_out, FIGURE_SUFFIXES, reads, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"Wrote {plots.save_figure(fig, out)}")
    if open_window:
        _show_windows([fig])


def _files_under(paths) -> list[Path]:
    """The files a command reads from these paths: each file, and the files directly in each directory."""
    found = []
    for path in paths:
        found.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return found


def _show_windows(figures) -> None:
    from mnist_dnn.figures import plots

    if not plots.show_figures(list(figures)):
        click.echo("--show: no display available; the figures are in the files above", err=True)


# --- Custom digits: `digitize`, `eval`, `predict` (section 5.2.2; reading and digitizing in handwriting/digits.py) ---


@main.command()
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

    for path in write_digitized(images, out, method, labels, overwrite):
        click.echo(f"Wrote {path}")


@main.command("eval")
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
        from mnist_dnn.runs import directory as runs

        cfg, load = experiment.resolve(engine), functools.partial(digit_flags.load, compare_methods)
        runs_count, verbose = runs_count or DEFAULT_CUSTOM_RUNS, keras_verbosity(quiet)
        done = run_section_522(cfg, runs_count, load, DEFAULT_RUNS_ROOT, name, out, verbose, not no_tensorboard)
        if not no_plots:
            _save_figures(done.figures(), done.run_dir, quiet)
        click.echo(runs.json_dumps(done.summary) if as_json else format_summary(done.summary), nl=as_json)
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
        reads = [path for path in _files_under([model_path]) if path.name != CONFUSION_FILE]
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


@main.command()
@predict_options
def predict(files, model_path, invert, method, backend, as_json):
    """The digit a model reads in each CSV or image, with its probabilities.

    \b
    mnist-dnn predict custom_digits/3.csv --model runs/RUN
    mnist-dnn predict photo.jpg custom_digits --model runs/RUN/model.keras --json
    """
    from mnist_dnn.runs import directory as runs
    from mnist_dnn.training.evaluate import format_predictions

    rows = api.predict(model_path, list(files), invert=invert, method=method, backend=backend).rows
    click.echo(runs.json_dumps(rows) if as_json else format_predictions(rows), nl=as_json)
    return 0


@main.command()
@serve_options
def serve(runs_dir, digits_dir, host, port, backend):
    """Draw digits in the browser, see your trained models read them, keep them as a custom set.

    Pages: Draw (live 28x28 preview and probabilities), Keep (your saved digits), Score
    (every complete run on every saved digit), Runs (figure 6 of each, curves overlaid).
    Needs the serve extra: pip install 'mnist-dnn[serve]'. Ctrl-C stops it.

    \b
    mnist-dnn serve                          # http://127.0.0.1:8000/
    mnist-dnn serve --runs-dir runs --digits my_digits --port 8080
    """
    try:
        from mnist_dnn.serve import app as web
    except ModuleNotFoundError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        raise UserInputError(f"serve needs {exc.name}: pip install 'mnist-dnn[serve]' (or make install)") from None
    app, sock = web.start(runs_dir, digits_dir, host, port, backend)
    if not web.is_loopback(host):
        click.echo(web.exposure_warning(host, digits_dir), err=True)
    if not runs_dir.exists():
        click.echo(f"Note: {runs_dir} does not exist yet; runs trained into it appear on the Runs page", err=True)
    click.echo(f"Open {web.url(sock)} in a browser (runs from {runs_dir}, your digits into {digits_dir}; Ctrl-C stops)")
    web.run(app, sock)  # until Ctrl-C, which it reports as Interrupted("Stopped.")
    return 0


@main.command("export")
@export_options
def export_command(run_dir, fmt, out):
    """Export a finished run's model for other runtimes (onnxruntime, TensorFlow, TF Serving).

    The file takes raw pixels, float32 0-255 (0 = paper, 255 = ink), shape (N, 28, 28),
    as input "pixels", with the run's preprocessing inside, and gives the ten digit
    probabilities as output "probabilities".

    \b
    mnist-dnn export runs/RUN --format onnx
    mnist-dnn export runs/RUN --format savedmodel --out serving/mnist/1
    """
    from mnist_dnn.export import export_run

    result = export_run(run_dir, fmt, out)
    click.echo(
        f"Exported: {result.path} ({fmt}; input 'pixels' float32 (N, 28, 28) 0-255, {result.preprocessing} "
        f"preprocessing inside; output 'probabilities' (N, 10))\n"
        f"Checked: {result.checks} random images give Keras' probabilities within {result.max_difference:.1e}"
    )
    return 0

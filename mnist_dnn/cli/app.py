"""The `mnist-dnn` command line: each command resolves its inputs, makes one call into a stage, prints.

Keras, TensorFlow and JAX are imported inside the commands only, so `--help` answers
at once and the backend can still be chosen when a command starts.
"""

from __future__ import annotations

from pathlib import Path

import click

from mnist_dnn import __version__, api
from mnist_dnn.cli.console import (
    OneLineErrorGroup,
    configure_logging,
    echo_figures,
    epoch_line_printer,
    keras_verbosity,
)
from mnist_dnn.cli.digit_commands import digitize, eval_command, predict
from mnist_dnn.cli.figure_commands import plot, show_digits
from mnist_dnn.cli.options import (
    DEFAULT_RUNS_ROOT,
    experiment_options,
    export_options,
    refuse_other_executor,
    resolve_train,
    serve_options,
    set_option,
    sweep_options,
    train_options,
    tune_options,
)
from mnist_dnn.core.config import resolve_backend
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs.outputs import check_output_dir


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


for _command in (plot, show_digits, digitize, eval_command, predict):
    main.add_command(_command)


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
    cfg, run_name = resolve_train(
        experiment, engine=engine, assignments=assignments, out=out, name=name, resume_dir=resume_dir
    )
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
    echo_figures(done.figures, quiet)
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
        executor,
        workers=(workers, ("processes", "ray")),
        cores=(cores, ("local", "ray")),
        ray_address=(ray_address, ("ray",)),
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
    echo_figures(done.figures, quiet)
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
    from mnist_dnn.experiments.tune.command import run_tune
    from mnist_dnn.experiments.tune.results import best_summary, table_markdown
    from mnist_dnn.experiments.tune.space import plan_from_flags

    configure_logging(quiet)
    flags = {"train.epochs": epochs, "train.backend": backend, "data.data_dir": data_dir and str(data_dir)}
    plan = plan_from_flags(
        config_path,
        flags,
        assignments=assignments,
        space_texts=space_texts,
        seeds=seeds,
        trials=trials,
        study_seed=study_seed,
        tensorboard=not no_tensorboard,
    )
    refuse_other_executor(
        executor,
        workers=(workers, ("processes", "ray")),
        cores=(cores, ("local", "ray")),
        ray_address=(ray_address, ("ray",)),
    )
    study = dict(name=study_name, sampler=sampler, pruner=pruner, startup=startup_trials, warmup=warmup_epochs)
    tune_dir, rows, best = run_tune(
        plan,
        out=out,
        runs_root=DEFAULT_RUNS_ROOT,
        storage=storage,
        study=study,
        executor=executor,
        workers=workers,
        ray_address=ray_address,
        plots=not no_plots,
        cores=cores,
    )
    click.echo(table_markdown(rows, plan.space), nl=False)
    click.echo(best_summary(plan, best))
    click.echo(f"Saved: {tune_dir} (best config: {tune_dir / 'best.toml'})")
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
    app, sock = web.start(runs_dir, digits_dir, host=host, port=port, backend=backend)
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

"""The `mnist-dnn` command line: parses, calls the pipeline, prints.

Keras, TensorFlow and JAX are imported inside the commands only, so `--help` answers
at once and the backend can still be chosen when a command starts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import click

from mnist_dnn import __version__
from mnist_dnn.errors import UserInputError
from mnist_dnn.interrupts import EXIT_INTERRUPTED

EXIT_USER_ERROR = 2
DEFAULT_RUNS_ROOT = Path("runs")


class _Group(click.Group):
    """A group whose every user error is one line on stderr with exit status 2, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UserInputError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except OSError as exc:  # a full disk or an unwritable output: the user's to fix, in one line
            from mnist_dnn.runs import storage_error

            problem = storage_error(exc)
            if problem is None:
                raise
            click.echo(f"Error: {problem}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


def _configure_logging(quiet: bool) -> None:
    """Our modules report through `logging`; only here does that reach the terminal.

    Only the `mnist_dnn` logger is set up: the root logger stays as it was, so the
    frameworks' own info messages (JAX's TPU probe, say) stay hidden.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("mnist_dnn")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


_backend_option = click.option(
    "--backend",
    type=click.Choice(["jax", "tensorflow", "torch"]),
    help="Keras backend [default: $KERAS_BACKEND, else jax].",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Read IDX files (raw or .gz) or mnist.npz from DIR instead of the cache.",
)


def _experiment_options(command):
    """The flags that change the experiment, shared by `train` and `config show`."""
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path),
            help="TOML config; default: the paper's settings (configs/paper.toml).",
        ),
        click.option("--epochs", type=int, help="Passes over the training set [paper: 10]."),
        click.option("--batch-size", type=int, help="Images per gradient step [paper: 64]."),
        click.option("--seed", type=int, help="Random seed for Python, NumPy and the backend [paper: 0]."),
        click.option("--learning-rate", type=float, help="Optimizer step size [paper: Adam's 0.001]."),
        _backend_option,
        _data_dir_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


_set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change any config key, e.g. --set model.activation=sigmoid (repeatable; see configs/README.md).",
)


def _resolved_config(
    config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, engine=None, assignments=()
):
    """File + flags + defaults, with the backend and engine made concrete (as config.toml records them).

    `assignments` are --set's 'section.key=value' texts; the named flags win over them.
    """
    from mnist_dnn.backend import resolve_backend
    from mnist_dnn.config import load_config, parse_assignment, resolve_engine

    flags = {
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.seed": seed,
        "optimizer.learning_rate": learning_rate,
        "train.backend": backend,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
        "train.engine": engine,
    }
    overrides = dict(parse_assignment(text) for text in assignments)
    overrides.update({key: value for key, value in flags.items() if value is not None})
    cfg = load_config(config_path, overrides)
    train_cfg = dataclasses.replace(cfg.train, backend=resolve_backend(cfg.train.backend))
    return dataclasses.replace(cfg, train=dataclasses.replace(train_cfg, engine=resolve_engine(train_cfg)))


@click.group(name="mnist-dnn", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    mnist-dnn eval --custom-csv custom_digits  # section 5.2.2: six runs on your own digits
    mnist-dnn digitize photo.jpg --out mine  # a photographed digit -> MNIST-style CSV
    mnist-dnn config show                    # the settings a train would use
    """


@main.command()
@_experiment_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Run directory to create (must not exist) [default: runs/<UTC time>-<name>].",
)
@click.option("--name", help="Label in the default run directory name [default: the config file's name].")
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the final scores.")
@click.option(
    "--log-every-epoch",
    is_flag=True,
    help="One line per epoch instead of a progress bar (automatic when output is not a terminal).",
)
@click.option("--no-plots", is_flag=True, help="Do not draw fig6_accuracy_loss.png into the run directory.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "fused", "fit"]),
    help="Training loop: fused (jax: one compiled call per epoch) or Keras fit [default: auto = fused on jax].",
)
@_set_option
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the interrupted run in RUN_DIR from its last checkpoint, with the run's own config.toml.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Save a resumable checkpoint every N epochs (0: never).",
)
def train(
    config_path,
    epochs,
    batch_size,
    seed,
    learning_rate,
    backend,
    data_dir,
    out,
    name,
    quiet,
    log_every_epoch,
    no_plots,
    engine,
    assignments,
    resume_dir,
    checkpoint_every,
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
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend
    from mnist_dnn.interrupts import graceful_interrupts

    _configure_logging(quiet)
    if resume_dir is not None:
        flags = dict(config=config_path, epochs=epochs, batch_size=batch_size, seed=seed, backend=backend)
        flags.update(learning_rate=learning_rate, data_dir=data_dir, engine=engine, set=assignments, out=out, name=name)
        _refuse_unless("to a new run, not with --resume (a resumed run keeps its config.toml)", **flags)
        cfg = runs.resumable_config(resume_dir)
    else:
        cfg = _resolved_config(
            config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, engine, assignments
        )
        run_name = runs.check_run_name(name or (config_path.stem if config_path else "paper"))
        if out is not None:
            runs.check_new_run_dir(out)
    activate_backend(cfg.train.backend)

    from mnist_dnn.data import load_mnist
    from mnist_dnn.experiment import train_and_evaluate

    dataset = load_mnist(Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    run_dir = resume_dir or runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name, out)
    if not quiet:
        click.echo(
            f"Data: {dataset.name} from {dataset.source} ({len(dataset.y_train)} train, {len(dataset.y_test)} test)",
            err=True,
        )
        click.echo(
            f"{'Resuming' if resume_dir else 'Run directory'}: {run_dir}  (backend {cfg.train.backend}, "
            f"engine {cfg.train.engine}, seed {cfg.train.seed})",
            err=True,
        )
    verbose = 0 if quiet else 2 if log_every_epoch or not sys.stdout.isatty() else 1
    progress = () if quiet or cfg.train.engine == "fit" else (_epoch_line_printer(cfg.train.epochs),)
    try:
        with graceful_interrupts():
            resume = resume_dir is not None
            metrics = train_and_evaluate(cfg, dataset, run_dir, verbose, progress, resume, checkpoint_every)
    except KeyboardInterrupt:
        click.echo(_interrupted_message(run_dir), err=True)
        return EXIT_INTERRUPTED
    if not no_plots:
        _write_training_figures(run_dir, quiet)
    click.echo(f"Test loss: {metrics['test_loss']}")
    click.echo(f"Test accuracy: {metrics['test_accuracy']}")
    click.echo(f"Saved: {run_dir}")
    return 0


def _interrupted_message(run_dir: Path) -> str:
    """What survived an interrupt, and the command that continues it."""
    from mnist_dnn.checkpoint import saved_epoch

    epoch = saved_epoch(run_dir)
    if epoch is None:
        return f"Interrupted with no checkpoint saved; --resume {run_dir} starts it again from epoch 1"
    saved = "epoch 1 is" if epoch == 1 else f"epochs 1-{epoch} are"
    return (
        f"Interrupted: {saved} saved in {run_dir} (history.csv, checkpoint.npz). "
        f"Resume: mnist-dnn train --resume {run_dir}"
    )


def _epoch_line_printer(epochs: int):
    """One line per finished epoch, in Keras' verbose=2 style, for engines that have no progress bar."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        scores = " - ".join(f"{k}: {v:.4f}" for k, v in sorted(metrics.items()) if k != "epoch_time_s")
        click.echo(f"Epoch {epoch}/{epochs} - {metrics['epoch_time_s']:.2f}s - {scores}")

    return report


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
    from mnist_dnn.backend import activate_backend, resolve_backend

    _configure_logging(quiet=False)
    activate_backend(resolve_backend(None))  # Keras' download source imports keras: keep it off TensorFlow
    from mnist_dnn.data import MNIST_FILES, load_mnist

    dataset = load_mnist(data_dir)
    verified = all(dataset.checksums.get(f) == digest for f, digest in MNIST_FILES.items())
    click.echo(f"Data: {dataset.name} from {dataset.source}")
    click.echo(f"Directory: {dataset.directory}")
    click.echo(
        f"Images: {len(dataset.y_train)} train, {len(dataset.y_test)} test, "
        f"{dataset.x_train.shape[1]}x{dataset.x_train.shape[2]} pixels"
    )
    click.echo(
        "SHA-256: "
        + (
            "all four files match MNIST's published checksums"
            if verified
            else "not MNIST's files (loaded as another dataset in IDX layout)"
        )
    )


@main.group()
def config():
    """Inspect the experiment's settings."""


@config.command("show")
@_experiment_options
@_set_option
@click.option("--explain", is_flag=True, help="Add each setting's meaning as a comment.")
def config_show(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, assignments, explain):
    """Print the fully resolved config (file + flags + defaults) as TOML.

    \b
    mnist-dnn config show
    mnist-dnn config show --config configs/paper.toml --epochs 3 --explain
    mnist-dnn config show --set optimizer.name=sgd --set optimizer.learning_rate=0.05
    """
    from mnist_dnn.config import config_to_toml, field_docs

    cfg = _resolved_config(config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, None, assignments)
    text = config_to_toml(cfg)
    if explain:
        docs = field_docs()
        section = ""
        lines = []
        for line in text.splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif " = " in line:
                lines.append(f"# {docs[section + '.' + line.split(' = ')[0]]}")
            lines.append(line)
        text = "\n".join(lines) + "\n"
    click.echo(text, nl=False)


@main.command()
@click.option(
    "--config",
    "config_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="TOML config; give several to compare them (the file becomes an axis) [default: the paper's].",
)
@click.option(
    "--set",
    "axis_texts",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="A config key and the values to try, e.g. optimizer.learning_rate=1e-4,1e-3 (repeatable: all combinations).",
)
@click.option("--seeds", default="0", show_default=True, help="Seeds of every setting: 0-4, or 0,3,7.")
@click.option(
    "--folds",
    type=click.IntRange(min=2, max=20),
    help="k-fold cross-validation: each setting and seed trains k times, validating on each fold of the training set.",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run [default: the config's].")
@_backend_option
@click.option("--engine", type=click.Choice(["auto", "fused", "fit"]), help="Training loop, as for train.")
@_data_dir_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Sweep directory; the same command with the same --out continues an interrupted sweep "
    "[default: runs/<UTC time>-<name>].",
)
@click.option("--name", default="sweep", show_default=True, help="Label in the default sweep directory name.")
@click.option("--no-plots", is_flag=True, help="Do not draw figure 4 into the sweep directory.")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary table.")
def sweep(config_paths, axis_texts, seeds, folds, epochs, backend, engine, data_dir, out, name, no_plots, quiet):
    """Train every combination of settings x seeds (x folds) and rank the settings.

    Each run is an ordinary run directory inside the sweep directory; summary.csv holds
    mean ± std of test accuracy and loss per setting, best first (by validation accuracy
    with --folds), and fig4_loss_vs_step.png is the paper's figure 4 (right).

    \b
    mnist-dnn sweep --set optimizer.learning_rate=1e-4,1e-3,1e-2,1e-1 --seeds 0-2 --out runs/lr
    mnist-dnn sweep --config configs/sgd.toml --config configs/adam.toml --seeds 0-2
    mnist-dnn sweep --set model.dropout=0,0.5 --folds 5 --epochs 3
    """
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend
    from mnist_dnn.interrupts import graceful_interrupts
    from mnist_dnn.sweep import (
        open_sweep_dir,
        parse_axis,
        parse_seeds,
        plan_sweep,
        summarize,
        summary_markdown,
        sweep_backend,
    )

    _configure_logging(quiet)
    configs = {}
    for path in config_paths or (None,):
        label = path.stem if path else "paper"
        if label in configs:
            raise click.UsageError(f"--config: two files named {label!r}; rename one")
        configs[label] = _resolved_config(path, epochs, None, None, None, backend, data_dir, engine)
    plan = plan_sweep(configs, [parse_axis(text) for text in axis_texts], parse_seeds(seeds), folds)
    run_name = runs.check_run_name(name)
    activate_backend(sweep_backend(configs))

    from mnist_dnn.data import load_mnist
    from mnist_dnn.experiment import train_and_evaluate
    from mnist_dnn.sweep import run_sweep

    datasets = {}
    for cfg in configs.values():
        if cfg.data.data_dir not in datasets:
            datasets[cfg.data.data_dir] = load_mnist(Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    sweep_dir = out or runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name)
    resumed = open_sweep_dir(sweep_dir, plan)
    if not quiet:
        settings = len({run.setting for run in plan})
        click.echo(
            f"{'Continuing' if resumed else 'Sweep'}: {len(plan)} runs ({settings} settings) in {sweep_dir}", err=True
        )

    def train_run(cfg, run_dir, resume):
        return train_and_evaluate(cfg, datasets[cfg.data.data_dir], run_dir, 0, resume=resume)

    def report(number, run, metrics, how):
        if not quiet:
            click.echo(
                f"[{number}/{len(plan)}] {run.directory}: test accuracy {metrics['test_accuracy']:.4f}, "
                f"loss {metrics['test_loss']:.4f} ({how})",
                err=True,
            )

    try:
        with graceful_interrupts():
            results = run_sweep(plan, sweep_dir, train_run, report)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; finished runs are kept. Continue: the same command with --out {sweep_dir}", err=True)
        return EXIT_INTERRUPTED
    click.echo(summary_markdown(summarize(plan, results), folds=bool(folds)), nl=False)
    if not no_plots:
        _write_training_figures(sweep_dir, quiet)
    click.echo(f"Saved: {sweep_dir}")
    return 0


@main.command()
@click.option(
    "--space",
    "space_texts",
    multiple=True,
    required=True,
    metavar="KEY=SPEC",
    help="A config key and its range: log:1e-4..1e-1, float:0..0.7, int:32..512 or choice:adam,sgd "
    "(lists in brackets: choice:[400,100],[800]); repeatable.",
)
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Finished trials the study should hold.")
@click.option("--seeds", default="0", show_default=True, help="Seeds per trial, averaged: 0-2, or 0,3,7.")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="Base TOML config [default: the paper's]."
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run [default: the config's].")
@_set_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Tune directory; the same command with the same --out continues the study [default: runs/<UTC time>-tune].",
)
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option(
    "--pruner",
    type=click.Choice(["median", "halving", "none"]),
    default="median",
    show_default=True,
    help="Stops hopeless trials: below the median of earlier trials at the same epoch, or successive halving.",
)
@click.option(
    "--startup-trials",
    type=click.IntRange(min=0),
    default=5,  # MedianPruner's own default
    show_default=True,
    help="Trials that finish before the median pruner compares.",
)
@click.option(
    "--warmup-epochs",
    type=click.IntRange(min=1),
    default=1,  # a trial stuck near chance shows it after one epoch (the README's Adam at 0.1)
    show_default=True,
    help="The first epoch at which a trial may be pruned.",
)
@click.option(
    "--study-seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seeds the sampler, the validation holdout and the trials' training seeds.",
)
@click.option(
    "--storage",
    help="Optuna storage shared by several processes: an RDB URL or a journal file [default: <out>/study.journal].",
)
@click.option("--study-name", default="tune", show_default=True, help="The study's name in the storage.")
@click.option(
    "--executor",
    type=click.Choice(["local", "processes"]),
    default="local",
    show_default=True,
    help="local: trials one after another in this process; processes: --workers trials at a time.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes of --executor processes, each pinned to its share of the CPUs [default: one per CPU].",
)
@_backend_option
@_data_dir_option
@click.option("--no-plots", is_flag=True, help="Do not draw the optimisation history and importances.")
@click.option("-q", "--quiet", is_flag=True, help="Only the table and the final scores.")
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
    backend,
    data_dir,
    no_plots,
    quiet,
):
    """Search settings with Optuna, each trial scored on its mean validation accuracy over --seeds.

    Validation is a holdout of the training set (the same images for every trial); the
    test set is read once, when the best setting is retrained on the whole training set.
    The study lives in <out>/study.journal: the same command again continues it.

    \b
    mnist-dnn tune --space optimizer.learning_rate=log:1e-4..1e-1 --space model.dropout=float:0..0.7 \\
        --trials 20 --seeds 0-2 --epochs 3 --out runs/tune
    """
    from mnist_dnn import runs
    from mnist_dnn.sweep import parse_seeds
    from mnist_dnn.tune import TunePlan, check_space, check_tune_dir, parse_dimension

    _configure_logging(quiet)
    base = _resolved_config(config_path, epochs, None, None, None, backend, data_dir, assignments=assignments)
    space = check_space([parse_dimension(text) for text in space_texts], base)
    plan = TunePlan(base, space, tuple(parse_seeds(seeds)), trials, study_seed)
    if workers is not None and executor != "processes":
        raise click.UsageError("--workers: only with --executor processes")
    try:
        import optuna
    except ImportError:
        raise UserInputError("tune needs Optuna: pip install 'mnist-dnn[tune]'") from None
    if out is not None:
        check_tune_dir(out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from mnist_dnn.backend import activate_backend

    activate_backend(base.train.backend)

    from mnist_dnn.data import load_mnist
    from mnist_dnn.experiment import train_and_evaluate
    from mnist_dnn.interrupts import graceful_interrupts
    from mnist_dnn.tune import (
        StudySpec,
        recover,
        retrain_best,
        run_study,
        run_workers,
        show_setting,
        storage_url,
        table_markdown,
        write_results,
    )

    dataset = load_mnist(Path(base.data.data_dir) if base.data.data_dir else None)
    tune_dir = out or runs.create_run_dir(DEFAULT_RUNS_ROOT, "tune")
    url = storage_url(tune_dir, storage)
    spec = StudySpec(url, study_name, sampler, pruner, startup_trials, warmup_epochs)
    study = spec.open(plan)
    tune_dir.mkdir(parents=True, exist_ok=True)
    again = recover(study)
    if not quiet:
        pruning = (
            "no pruning"
            if pruner == "none"
            else (
                f"{pruner} pruner from epoch {warmup_epochs}"
                + (f" after {startup_trials} trials" if pruner == "median" else "")
            )
        )
        click.echo(
            f"Study {study_name!r} in {url}: {trials} trials x {len(plan.seeds)} seeds, {sampler}, {pruning}", err=True
        )
        if again:
            click.echo(f"Asking again the setting(s) of interrupted trial(s) {', '.join(map(str, again))}", err=True)

    def train_run(cfg, run_dir, resume):
        return train_and_evaluate(cfg, dataset, run_dir, 0, resume=resume)

    def report(trial):
        if quiet:
            return
        scores, epochs_run = trial.user_attrs["validation_accuracy"], trial.user_attrs["epochs"]
        state = f"pruned after epoch {epochs_run}" if trial.state.name == "PRUNED" else "complete"
        setting = show_setting(plan.space, trial.params)
        click.echo(
            f"[trial {trial.number}] {state}: val accuracy {sum(scores) / len(scores):.4f} ({setting})", err=True
        )

    try:
        with graceful_interrupts():
            if executor == "processes":
                run_workers(workers or len(os.sched_getaffinity(0)), spec, plan, dataset, tune_dir, report)
            else:
                run_study(study, plan, dataset, tune_dir, report, sampler)
            if not quiet:
                click.echo("Retraining the best setting on the full training set", err=True)
            best = retrain_best(study, plan, dataset, tune_dir, train_run)
    except KeyboardInterrupt:
        click.echo(f"Interrupted; finished trials are kept. Continue: the same command with --out {tune_dir}", err=True)
        return EXIT_INTERRUPTED
    rows = write_results(study, plan, tune_dir, plots=not no_plots)
    click.echo(table_markdown(rows, plan.space), nl=False)
    click.echo(
        f"Best: trial {best['trial']} ({show_setting(plan.space, best['params'])}), "
        f"validation {best['search_val_accuracy_mean']:.4f}; "
        f"retrained on the full training set: test accuracy {best['test_accuracy_mean']:.4f} "
        f"± {best['test_accuracy_std']:.4f} over {len(plan.seeds)} seeds"
    )
    click.echo(f"Saved: {tune_dir} (best config: {tune_dir / 'best.toml'})")
    return 0


# --- Figures: `plot` and `show` (drawing lives in mnist_dnn.plots; matplotlib loads inside the commands) ---

FIGURE_FORMATS = ("png", "svg", "pdf")  # = plots.FORMATS, repeated so --help does not import matplotlib
PAPER_DIGIT_INDEX = 20  # the training image section 5.1 draws: X_train[20]


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the figures, created if missing [default: the run directory; needed for several].",
)
@click.option(
    "--format", "fmt", type=click.Choice(FIGURE_FORMATS), default="png", help="Figure file format [default: png]."
)
@click.option(
    "--diagnostics",
    is_flag=True,
    help="Also load model.keras and draw the test set's confusion matrix and most confidently wrong digits.",
)
@click.option(
    "--activations",
    is_flag=True,
    help="Draw figure 3 (ReLU, sigmoid, tanh and their derivatives) into --out, or here; needs no run.",
)
@click.option("--show", "open_window", is_flag=True, help="Also open the figures in windows, if there is a display.")
def plot(run_dirs, out, fmt, diagnostics, activations, open_window):
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
    if activations and not run_dirs:
        from mnist_dnn import plots

        figures = {plots.FIG3: plots.plot_activations()}
        for path in plots.save_figures(figures, out or Path("."), fmt):
            click.echo(f"Wrote {path}")
        if open_window:
            _show_windows(figures.values())
        return
    if not run_dirs:
        run_dirs = (_latest_run_dir(DEFAULT_RUNS_ROOT),)
        click.echo(f"Latest run: {run_dirs[0]}", err=True)
    if len(run_dirs) > 1 and out is None:
        raise click.UsageError("--out: needed when plotting several run directories")
    if len(run_dirs) > 1 and diagnostics:
        raise click.UsageError("--diagnostics: give a single run directory")
    from mnist_dnn import plots

    figures = plots.run_figures(run_dirs)  # reads every file first: a bad one stops before anything is written
    if diagnostics:
        figures.update(_diagnostic_figures(run_dirs[0]))
    if activations:
        figures[plots.FIG3] = plots.plot_activations()
    for path in plots.save_figures(figures, out or run_dirs[0], fmt):
        click.echo(f"Wrote {path}")
    if open_window:
        _show_windows(figures.values())


@main.command("show")
@click.option("--index", type=click.IntRange(min=0), help="Training image to draw [default: 20, as section 5.1].")
@click.option("--grid", type=click.IntRange(1, 400), help="Draw the first N test digits in a grid instead.")
@click.option(
    "--custom-csv",
    "custom_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Draw your own digits instead (CSV files or a directory of them, as section 5.2.2); repeatable.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file: caption each digit with its prediction and probability.",
)
@_data_dir_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image to write, .png, .svg or .pdf [default: mnist-train-INDEX.png or mnist-test-grid-N.png here].",
)
@click.option("--show", "open_window", is_flag=True, help="Also open it in a window, if there is a display.")
def show_digits(index, grid, custom_paths, model_path, data_dir, out, open_window):
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
    if out is not None and out.suffix.lstrip(".").lower() not in FIGURE_FORMATS:
        raise click.BadParameter(f"{out}: expected a .png, .svg or .pdf file name", param_hint="'--out'")
    from mnist_dnn import plots
    from mnist_dnn.custom_experiment import digit_probabilities

    images, labels, names, title, default_out = _digits_to_show(index, grid, custom_paths, data_dir)
    predictions = confidence = None
    if model_path is not None:
        probabilities = digit_probabilities(_open_model(model_path, None), images)  # (images, classes)
        predictions, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    if index is None:
        fig = plots.plot_digit_grid(images, labels, predictions, confidence, title=title, names=names)
    else:
        if predictions is not None:
            title += f", predicted {predictions[0]} ({confidence[0]:.1%})"
        fig = plots.plot_digit(images[0], title)
    out = out or default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"Wrote {plots.save_figure(fig, out)}")
    if open_window:
        _show_windows([fig])


def _digits_to_show(index, grid, custom_paths, data_dir):
    """`show`'s digits: (images, labels or None, names or None, title, default output file)."""
    if custom_paths:
        from mnist_dnn.digits import load_digits

        digits = load_digits(list(custom_paths), require_labels=False)
        return digits.images, None, digits.names, "Custom digits", Path("custom-digits.png")
    from mnist_dnn.data import load_mnist

    dataset = load_mnist(data_dir)
    name = "MNIST" if dataset.name == "mnist" else dataset.name
    if grid is not None:
        images, labels = dataset.x_test[:grid], dataset.y_test[:grid]
        return images, labels, None, f"First {len(images)} {name} test digits", Path(f"mnist-test-grid-{grid}.png")
    if index >= len(dataset.x_train):
        raise UserInputError(f"--index: expected 0..{len(dataset.x_train) - 1}, got {index}")
    images, labels = dataset.x_train[index : index + 1], dataset.y_train[index : index + 1]
    return images, labels, None, f"{name} training image {index}: label {labels[0]}", Path(f"mnist-train-{index}.png")


def _write_training_figures(run_dir: Path, quiet: bool) -> None:
    """The figures `mnist-dnn plot RUN_DIR` draws, into a finished run (or sweep) directory."""
    from mnist_dnn import plots

    for path in plots.save_figures(plots.run_figures([run_dir]), run_dir):
        if not quiet:
            click.echo(f"Figure: {path}", err=True)


def _latest_run_dir(runs_root: Path) -> Path:
    """The newest run under runs_root: run names start with a UTC timestamp, so the last in name order."""
    from mnist_dnn import runs

    candidates = sorted(
        d
        for d in (runs_root.iterdir() if runs_root.is_dir() else [])
        if (d / runs.HISTORY_FILE).is_file() or any(d.glob(f"run-*/{runs.HISTORY_FILE}"))
    )
    if not candidates:
        raise UserInputError(f"{runs_root}: no run directories here; pass RUN_DIR or run 'mnist-dnn train' first")
    return candidates[-1]


def _diagnostic_figures(run_dir: Path) -> dict:
    """The confusion matrix and confident-mistakes gallery of the run's model on its test set."""
    from mnist_dnn import plots
    from mnist_dnn.custom_experiment import digit_probabilities
    from mnist_dnn.data import load_mnist
    from mnist_dnn.evaluate import confusion_matrix
    from mnist_dnn.model import NUM_CLASSES

    trained = _open_model(run_dir, None)
    data_dir = trained.config.data.data_dir
    dataset = load_mnist(Path(data_dir) if data_dir else None)
    probabilities = digit_probabilities(trained, dataset.x_test)
    matrix = confusion_matrix(dataset.y_test, probabilities.argmax(axis=1), NUM_CLASSES)
    name = "MNIST" if dataset.name == "mnist" else dataset.name
    return {
        plots.CONFUSION: plots.plot_confusion_matrix(matrix, dataset=name),
        plots.MISTAKES: plots.plot_confident_mistakes(dataset.x_test, dataset.y_test, probabilities),
    }


def _show_windows(figures) -> None:
    from mnist_dnn import plots

    if not plots.show_figures(list(figures)):
        click.echo("--show: no display available; the figures are in the files above", err=True)


# --- Custom digits: `digitize`, `eval`, `predict` (section 5.2.2; reading and digitizing in mnist_dnn.digits) ---

DIGITIZE_METHODS = ("mnist", "naive")  # = digits.METHODS, repeated so --help does not import numpy
DEFAULT_CUSTOM_RUNS = 6  # section 5.2.2: "six independent network training instances"
CONFUSION_FILE = "confusion_matrix.csv"
_METHOD_HELP = (
    "How a PNG/JPEG becomes 28x28: 'mnist' isolates the ink, scales it into a 20 px box and centres it by mass, "
    "as MNIST was made; 'naive' is the paper's square crop and shrink [default: mnist]."
)


def _custom_digit_options(command):
    """The flags that say how custom digits are read, shared by `eval` and `predict`."""
    options = [
        click.option(
            "--labels", help="The true digits in file order, e.g. 3,8,9,5,4 [default: labels.csv, else file names]."
        ),
        click.option(
            "--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them."
        ),
        click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refuse_unless(when: str, **given) -> None:
    """A flag that means nothing in this mode is a mistake, not something to ignore silently."""
    for name, value in given.items():
        if value not in (None, False, ()):
            raise click.UsageError(f"--{name.replace('_', '-')}: only applies {when}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for NAME.csv and NAME.preview.png per image (and labels.csv), created if missing.",
)
@click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP)
@click.option(
    "--label",
    "labels",
    type=click.IntRange(0, 9),
    multiple=True,
    help="The digit in each image, once per image in order; goes into labels.csv [default: a leading digit "
    "of each file name].",
)
@click.option("--overwrite", is_flag=True, help="Replace files of the same names in --out.")
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
    from mnist_dnn import digits as custom
    from mnist_dnn.atomic import atomic_write_bytes, atomic_write_text

    if labels and len(labels) != len(images):
        raise UserInputError(f"--label: {len(labels)} labels for {len(images)} images; give one per image")
    stems = [image.stem for image in images]
    for image, stem in zip(images, stems, strict=True):
        if image.suffix.lower() not in custom.IMAGE_SUFFIXES:
            raise UserInputError(f"{image}: expected a .png, .jpg or .jpeg image")
        if stems.count(stem) > 1:
            raise UserInputError(f"{image}: another image is also called {stem!r}; their CSVs would collide")
    found = list(labels) or [custom.label_from_name(image) for image in images]
    targets = [out / f"{stem}{suffix}" for stem in stems for suffix in (".csv", ".preview.png")]
    if all(label is not None for label in found):
        targets.append(out / custom.LABELS_FILE)
    if not overwrite:
        for target in targets:
            if target.exists():
                raise UserInputError(f"{target}: already exists (pass --overwrite to replace it)")
    grids = [custom.digitize_file(image, method) for image in images]  # every image read before any file is written
    out.mkdir(parents=True, exist_ok=True)
    for stem, grid in zip(stems, grids, strict=True):
        atomic_write_text(out / f"{stem}.csv", custom.grid_to_csv(grid))
        atomic_write_bytes(out / f"{stem}.preview.png", custom.grid_to_png(grid))
        click.echo(f"Wrote {out / f'{stem}.csv'}")
    if all(label is not None for label in found):
        rows = "".join(f"{stem}.csv,{label}\n" for stem, label in zip(stems, found, strict=True))
        atomic_write_text(out / custom.LABELS_FILE, "file,label\n" + rows)
        click.echo(f"Wrote {out / custom.LABELS_FILE}")


@main.command("eval")
@click.option(
    "--model",
    "model_path",
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file to score [default: train --runs new models instead].",
)
@click.option(
    "--custom-csv",
    "custom_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Your digits: a directory such as custom_digits, or CSV/PNG/JPEG files (repeat the flag).",
)
@_custom_digit_options
@click.option(
    "--runs",
    "runs_count",
    type=click.IntRange(1, 100),
    help=f"Models to train, seeds seed, seed+1, ... [default: {DEFAULT_CUSTOM_RUNS}, as section 5.2.2].",
)
@click.option(
    "--compare-methods",
    is_flag=True,
    help="Also digitize each digit's page image (source/NAME.png) both ways and score the same models on each.",
)
@_experiment_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Training: the run directory to create [default: runs/<UTC time>-custom]. "
    f"--model alone: the confusion matrix CSV [default: {CONFUSION_FILE} beside the model].",
)
@click.option("--name", help="Label in the default run directory name [default: custom].")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("--no-plots", is_flag=True, help="Do not draw figures 8, 9, 10 and the prediction matrix.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "fused", "fit"]),
    help="Training loop, as for train [default: auto = fused on jax].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output; only the results.")
def eval_command(
    model_path,
    custom_paths,
    labels,
    invert,
    method,
    runs_count,
    compare_methods,
    config_path,
    epochs,
    batch_size,
    seed,
    learning_rate,
    backend,
    data_dir,
    out,
    name,
    as_json,
    no_plots,
    engine,
    quiet,
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
    if model_path is None and not custom_paths:
        raise click.UsageError("give --custom-csv (train and test), --model (score it), or both")
    _configure_logging(quiet)
    if model_path is not None:
        training = dict(runs=runs_count, config=config_path, epochs=epochs, seed=seed, learning_rate=learning_rate)
        training.update(engine=engine, no_plots=no_plots)
        _refuse_unless("when training, without --model", name=name, batch_size=batch_size, **training)
        if custom_paths:
            _refuse_unless("when training or scoring on MNIST", out=out, data_dir=data_dir)
            return _eval_model_on_digits(
                model_path, custom_paths, labels, invert, method, compare_methods, backend, as_json
            )
        _refuse_unless("with --custom-csv", labels=labels, invert=invert, compare_methods=compare_methods)
        return _eval_model_on_mnist(model_path, data_dir, backend, out, as_json)
    return _custom_experiment(
        custom_paths,
        labels,
        invert,
        method,
        runs_count or DEFAULT_CUSTOM_RUNS,
        compare_methods,
        (config_path, epochs, batch_size, seed, learning_rate, backend, data_dir, engine),
        out,
        name,
        as_json,
        no_plots,
        quiet,
    )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Run directory or .keras file.",
)
@click.option("--invert", is_flag=True, help="Flip CSV digits whose background is 255 instead of refusing them.")
@click.option("--method", type=click.Choice(DIGITIZE_METHODS), default="mnist", help=_METHOD_HELP)
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def predict(files, model_path, invert, method, backend, as_json):
    """The digit a model reads in each CSV or image, with its probabilities.

    \b
    mnist-dnn predict custom_digits/3.csv --model runs/RUN
    mnist-dnn predict photo.jpg custom_digits --model runs/RUN/model.keras --json
    """
    import json

    from mnist_dnn.custom_experiment import digit_probabilities
    from mnist_dnn.digits import load_digits

    digits = load_digits(files, invert=invert, method=method, require_labels=False)
    probabilities = digit_probabilities(_open_model(model_path, backend), digits.images)
    rows = [
        {
            "file": name,
            "predicted": int(p.argmax()),
            "probability": float(p.max()),
            "probabilities": [float(v) for v in p],
        }
        for name, p in zip(digits.names, probabilities, strict=True)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    width = max(len("file"), *(len(row["file"]) for row in rows))
    click.echo(f"{'file':<{width}}  digit  prob.  " + " ".join(f"{d:>5}" for d in range(10)))
    for row in rows:
        spread = " ".join(f"{v:5.3f}" for v in row["probabilities"])
        click.echo(f"{row['file']:<{width}}  {row['predicted']:>5}  {row['probability']:5.3f}  {spread}")
    return 0


def _open_model(path: Path, backend: str | None):
    """A run directory or .keras file -> runs.TrainedModel (model, config, preprocessing statistics)."""
    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend, resolve_backend

    activate_backend(resolve_backend(backend))
    return runs.load_trained(path)


def _eval_model_on_mnist(model_path, data_dir, backend, out, as_json):
    import json

    from mnist_dnn.atomic import atomic_write_text
    from mnist_dnn.custom_experiment import confusion_csv, digit_probabilities
    from mnist_dnn.data import load_mnist
    from mnist_dnn.evaluate import confusion_matrix, evaluate
    from mnist_dnn.model import NUM_CLASSES
    from mnist_dnn.preprocess import prepare

    if out is not None and out.is_dir():
        raise UserInputError(f"--out {out}: is a directory (expected a CSV file name)")
    trained = _open_model(model_path, backend)
    target = out or trained.path.parent / CONFUSION_FILE
    cfg = trained.config
    dataset = load_mnist(data_dir or (Path(cfg.data.data_dir) if cfg.data.data_dir else None))
    x, y = prepare(dataset.x_test, dataset.y_test, cfg.preprocess.method, NUM_CLASSES, trained.stats)
    scores = evaluate(trained.model, x, y, cfg.train.batch_size)
    probabilities = digit_probabilities(trained, dataset.x_test)
    matrix = confusion_matrix(dataset.y_test, probabilities.argmax(axis=1), NUM_CLASSES)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, confusion_csv(matrix))
    if as_json:
        result = {"dataset": dataset.name, "test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
        click.echo(json.dumps({**result, "confusion_matrix": matrix.tolist(), "saved": str(target)}, indent=2))
        return 0
    click.echo(f"Test loss: {scores['loss']}")
    click.echo(f"Test accuracy: {scores['accuracy']}")
    click.echo("Confusion matrix (row = true digit, column = predicted):")
    click.echo("     " + "".join(f"{d:>6}" for d in range(NUM_CLASSES)))
    for digit, row in enumerate(matrix):
        click.echo(f"{digit:>5}" + "".join(f"{int(v):>6}" for v in row))
    click.echo(f"Saved: {target}")
    return 0


def _method_images(digits, method_names):
    """The same digits digitized from their page images each way: name -> (N, 28, 28) images."""
    from mnist_dnn.digits import load_digits, source_images

    sources = source_images(digits.files)
    return {m: load_digits(sources, method=m, require_labels=False).images for m in method_names}


def _eval_model_on_digits(model_path, custom_paths, labels, invert, method, compare_methods, backend, as_json):
    import json

    from mnist_dnn.custom_experiment import image_table, score_digits
    from mnist_dnn.digits import load_digits

    digits = load_digits(custom_paths, labels, invert=invert, method=method)
    methods = _method_images(digits, DIGITIZE_METHODS) if compare_methods else {}
    trained = _open_model(model_path, backend)
    model, stats = trained.model, trained.stats
    batch, prep = trained.config.train.batch_size, trained.config.preprocess.method
    scores = score_digits(model, digits.images, digits.labels, batch, prep, stats)
    rows = image_table(digits.names, digits.labels, scores)
    others = {m: score_digits(model, images, digits.labels, batch, prep, stats) for m, images in methods.items()}
    if as_json:
        result = {"model": str(model_path), "images": rows, "accuracy": scores.accuracy, "loss": scores.loss}
        if others:
            result["methods"] = {
                m: {"accuracy": s.accuracy, "loss": s.loss, "predicted": [int(p) for p in s.predicted]}
                for m, s in others.items()
            }
        click.echo(json.dumps(result, indent=2))
        return 0
    width = max(len("file"), *(len(row["file"]) for row in rows))
    click.echo(f"{'file':<{width}}  label  predicted  probability  runner-up")
    for row in rows:
        mark = "" if row["correct"] else "   wrong"
        click.echo(
            f"{row['file']:<{width}}  {row['label']:>5}  {row['predicted']:>9}  {row['probability']:>11.4f}  "
            f"{row['runner_up']} ({row['runner_up_probability']:.2g}){mark}"
        )
    correct = sum(row["correct"] for row in rows)
    click.echo(f"Accuracy: {scores.accuracy} ({correct}/{len(rows)})")
    click.echo(f"Loss: {scores.loss}")
    for m, s in others.items():
        read = " ".join(str(int(p)) for p in s.predicted)
        click.echo(f"Digitized '{m}' from the page images: accuracy {s.accuracy:.2f}, loss {s.loss:.3g}, read {read}")
    return 0


def _custom_experiment(
    custom_paths, labels, invert, method, runs_count, compare_methods, flags, out, name, as_json, no_plots, quiet
):
    import json

    from mnist_dnn import runs
    from mnist_dnn.backend import activate_backend
    from mnist_dnn.digits import load_digits

    cfg = _resolved_config(*flags)
    run_name = runs.check_run_name(name or "custom")
    if out is not None:
        runs.check_new_run_dir(out)
    digits = load_digits(custom_paths, labels, invert=invert, method=method)
    methods = _method_images(digits, DIGITIZE_METHODS) if compare_methods else None
    activate_backend(cfg.train.backend)

    from mnist_dnn.custom_experiment import format_summary, run_custom_experiment
    from mnist_dnn.data import load_mnist

    dataset = load_mnist(Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    run_dir = runs.create_run_dir(DEFAULT_RUNS_ROOT, run_name, out)
    if not quiet:
        click.echo(
            f"{len(digits.files)} custom digits; {runs_count} run(s) of {cfg.train.epochs} epoch(s) on {dataset.name} "
            f"(seeds {cfg.train.seed}-{cfg.train.seed + runs_count - 1}, backend {cfg.train.backend})",
            err=True,
        )
        click.echo(f"Run directory: {run_dir}", err=True)
    verbose = 0 if quiet else 2 if not sys.stdout.isatty() else 1

    def report(number, entry):
        if not quiet:
            click.echo(
                f"run-{number}: MNIST test accuracy {entry['mnist_test_accuracy']:.4f}, "
                f"custom accuracy {entry['custom_accuracy']:.2f}",
                err=True,
            )

    try:
        summary = run_custom_experiment(cfg, dataset, digits, run_dir, runs_count, verbose, methods, report)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: finished runs are kept in {run_dir}", err=True)
        return EXIT_INTERRUPTED
    if not no_plots:
        _write_custom_figures(run_dir, digits, summary, methods, quiet)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary), nl=as_json)
    if not as_json:
        click.echo(f"Saved: {run_dir}")
    return 0


def _write_custom_figures(run_dir, digits, summary, methods, quiet):
    """Figures 9 and 10, the prediction matrix, and the digits as the models saw them (figure 8)."""
    import numpy as np

    from mnist_dnn import plots
    from mnist_dnn.custom_experiment import majority

    figures = plots.run_figures([run_dir])
    predictions = np.array([image["predictions"] for image in summary["per_image"]]).T  # (runs, images)
    read_as = majority(predictions)
    figures["fig8_custom_digits"] = plots.plot_digit_grid(
        digits.images, digits.labels, read_as, names=digits.names, title="Custom digits, read by most models"
    )
    for method_name, images in (methods or {}).items():
        read = majority(np.array(summary["methods"][method_name]["predictions"]))
        figures[f"fig8_custom_digits_{method_name}"] = plots.plot_digit_grid(
            images, digits.labels, read, names=digits.names, title=f"Page images digitized '{method_name}'"
        )
    for path in plots.save_figures(figures, run_dir):
        if not quiet:
            click.echo(f"Figure: {path}", err=True)

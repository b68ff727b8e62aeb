"""`mnist-dnn tune`: a search over ranges by Optuna, scored on the mean over seeds, resumable.

    from mnist_dnn.experiments.tune.space import TunePlan, check_space, parse_dimension
    from mnist_dnn.experiments.tune.study import open_study, recover, storage_url
    from mnist_dnn.experiments.tune.loop import run_study
    from mnist_dnn.experiments.tune.results import retrain_best, write_results

    texts = ["optimizer.learning_rate=log:1e-4..1e-1", "model.dropout=float:0..0.7"]
    space = check_space([parse_dimension(t) for t in texts], base)   # every key and range, before anything trains
    plan = TunePlan(base, space, seeds=(0, 1), trials=12, study_seed=0)
    study = open_study(plan, storage_url(tune_dir), "tune", "tpe", "median", startup=5, warmup=1)
    recover(study)                                     # trials cut short last time: failed, asked again
    run_study(study, plan, dataset, tune_dir)          # ask -> train the trial's seeds in step -> tell
    best = retrain_best(study, plan, dataset, tune_dir)   # full training set, test set once
    write_results(study, plan, tune_dir)               # trials.csv and the figures

A trial is one setting x all seeds. Its seeds are a bundle (bundles.train_in_step): they
share one compiled epoch program and go through it epoch by epoch in step - one after
another on a CPU, where each run is exactly its lone `train`, vmapped on a GPU - each into
an ordinary run directory trials/trial-NNNN/seedS. Seeds that cannot share a program
(augmentation, early stopping, a plateau schedule: sharing.py) go as lone runs in step.
After every epoch the seeds' mean validation accuracy is reported to Optuna, whose pruner
may stop the trial there. Every trial and seed validates on the same images: a holdout
carved from the training set, drawn from the study seed; the test set plays no part in
the search and is read only when the best setting is retrained on the full training set.

The study lives in an Optuna storage (by default the journal file study.journal in the
tune directory), so the same command again continues it: finished trials are kept, a
trial cut short (Ctrl-C, a killed process) is failed and its setting asked again under
a new number. Several processes may share one storage: each asks its own trials - worker
processes here (run_workers) or Ray tasks (run_ray_workers) run that same loop.


The package, by job: `space` (the search-space language and the plan), `study` (Optuna's
storage, sampler and pruner; recovery of trials cut short), `loop` (ask, train a trial's
seeds, report, tell), `workers` (worker processes and Ray tasks running that loop),
`results` (the ranked table, best.toml and best.json, the final retrain, the figures) and
`command` (`mnist-dnn tune`'s run, run_tune).
"""

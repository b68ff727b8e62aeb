"""A run directory's own files, by name: what `train` writes (the README's run-directory table).

A module of their own so that the modules writing them (runs, preprocess) and the one
refusing them as output names (outputs, which runs imports) share one spelling.
"""

CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
STEPS_FILE = "steps.csv"  # the training loss of every batch: figure 4 (right) of the paper
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
STATUS_FILE = "status.json"
CHECKPOINT_FILE = "checkpoint.npz"  # what a resumed run continues from (training.checkpoint); gone once complete
STATISTICS_FILE = "preprocess.npz"  # the preprocessing fitted on the run's training images

PREDICTIONS_FILE = "predictions.csv"  # a custom-digit experiment's: file, label, run-1, run-2, ...
SWEEP_PLAN_FILE = "sweep.json"  # a sweep directory's plan (mnist_dnn.experiments.sweep)

# Figures and tables that commands add to a run (confusion_matrix.csv, *.png) are not among
# them and may be rewritten.
RUN_FILES = (
    CONFIG_FILE,
    HISTORY_FILE,
    STEPS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STATUS_FILE,
    CHECKPOINT_FILE,
    STATISTICS_FILE,
)
# A directory holding one of these was made by mnist-dnn (a run, a custom-digit experiment, a sweep):
# the figures in it are the tool's to rewrite (outputs.written_by_this_tool).
TOOL_DIRECTORY_FILES = (STATUS_FILE, MODEL_FILE, HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, SWEEP_PLAN_FILE)

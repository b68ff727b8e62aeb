"""TensorBoard event files in every run directory, with exactly the numbers of history.csv and steps.csv.

    board = TensorBoardLog(run_dir, config_to_toml(cfg), start_epoch=0)
    train(..., callbacks=(*monitors, saver, board), step_callbacks=(steps_writer, board.steps))

A run directory gets, for `tensorboard --logdir runs`, the layout Keras' TensorBoard
callback makes (runs `train` and `validation`, tags `epoch_loss`, `epoch_accuracy`, so
the two curves share a chart):

    tensorboard/            the resolved config.toml as text (tag `config`)
    tensorboard/train/      epoch_loss, epoch_accuracy, batch_loss (per step, as steps.csv),
                            grad_norm/<layer>, learning_rate (under a schedule)
    tensorboard/validation/ epoch_loss, epoch_accuracy (history.csv's val_*)

Epoch values are logged at the epoch number (1, 2, ...), batch losses at steps.csv's step.
The writer is tensorboard's own record writer and protocol buffers, no TensorFlow (a jax
process hides it), fed after each epoch from the numbers the engine has already returned,
so the compiled epoch is untouched. Each file is appended to, as TensorBoard expects of a
file it follows while training runs. A resumed run rewrites its files from history.csv and
steps.csv up to the checkpoint's epoch before training on, so a curve never holds a step
twice. Event files record wall times and are not part of the byte-identical promise.

A sweep adds the HParams plugin's view (`write_sweep_hparams`): each run is a session
with its setting, seed and final test scores, one group per setting (its seeds averaged),
so `tensorboard --logdir runs/<sweep>` opens as a comparison table.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_dnn.core.atomic import atomic_write_bytes
from mnist_dnn.core.interrupts import deferred
from mnist_dnn.runs import directory as runs

BOARD_DIR = "tensorboard"
TRAIN_DIR = "train"
VALIDATION_DIR = "validation"
EVENTS_FILE = "events.out.tfevents.mnist-dnn"  # TensorBoard reads any file whose name holds 'tfevents'
HPARAMS_FILE = "events.out.tfevents.mnist-dnn-hparams"
CONFIG_TAG = "config"
BATCH_LOSS_TAG = "batch_loss"
SWEEP_PLAN_FILE = "sweep.json"  # = sweep.PLAN_FILE; named here, as a stage module does not import the sweep layer
HPARAMS_METRICS = ("test_accuracy", "test_loss")  # metrics.json's, logged per run of a sweep
_SKIPPED_COLUMNS = ("epoch", *runs.TIMING_COLUMNS)


def history_tag(column: str) -> tuple[str, str]:
    """history.csv column -> (subdirectory, tag): val_loss -> (validation, epoch_loss), as Keras' callback has it."""
    if column.startswith("val_"):
        return VALIDATION_DIR, f"epoch_{column[4:]}"
    if column.startswith(runs.GRAD_NORM_PREFIX):
        return TRAIN_DIR, f"grad_norm/{column[len(runs.GRAD_NORM_PREFIX) :]}"
    if column == "learning_rate":
        return TRAIN_DIR, column
    return TRAIN_DIR, f"epoch_{column}"


class _Events:
    """Serialized events for one event file; TensorBoard's scalar metadata goes with a tag's first value."""

    def __init__(self) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.scalar import metadata

        self.records: list[bytes] = []
        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self._scalar_metadata = metadata.create_summary_metadata(display_name=None, description=None)
        self._tensor, self._float, self._shape = tensor_pb2.TensorProto, types_pb2.DT_FLOAT, tensor_shape_pb2
        self._tagged: set[str] = set()

    def header(self) -> None:
        self.records.append(
            self._event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )

    def scalar(self, tag: str, step: int, value: float, wall_time: float) -> None:
        """One scalar as the scalars plugin stores it: a float32 tensor (what tf.summary.scalar writes)."""
        tensor = self._tensor(dtype=self._float, tensor_shape=self._shape.TensorShapeProto(), float_val=[value])
        summary_value = self._summary_pb2.Summary.Value(tag=tag, tensor=tensor)
        if tag not in self._tagged:
            summary_value.metadata.CopyFrom(self._scalar_metadata)
            self._tagged.add(tag)
        self.summary(self._summary_pb2.Summary(value=[summary_value]), step, wall_time)

    def summary(self, summary, step: int, wall_time: float) -> None:
        event = self._event_pb2.Event(wall_time=wall_time, step=step, summary=summary)
        self.records.append(event.SerializeToString())

    def content(self) -> bytes:
        """The records in TensorBoard's file format (length, masked CRCs), via tensorboard's own writer."""
        from tensorboard.summary.writer.record_writer import RecordWriter

        buffer = io.BytesIO()
        writer = RecordWriter(buffer)
        for record in self.records:
            writer.write(record)
        self.records.clear()
        return buffer.getvalue()


class TensorBoardLog:
    """Epoch callback (and `steps`, a step-loss callback) writing a run's event files as training goes.

    `start_epoch` > 0 continues a resumed run: its files are rewritten first from history.csv and
    steps.csv, epochs 1..start_epoch, whatever the interrupted process had appended after them.
    """

    def __init__(self, run_dir: Path, config_text: str, start_epoch: int = 0):
        self.root = run_dir / BOARD_DIR
        self.files = {name: _Events() for name in (TRAIN_DIR, VALIDATION_DIR)}
        self.next_step = 1
        self.pending_steps: list[tuple[int, float]] = []
        for name in self.files:
            (self.root / name).mkdir(parents=True, exist_ok=True)
            self.files[name].header()
        if start_epoch:
            self._replay(run_dir, start_epoch)
        for name, events in self.files.items():
            atomic_write_bytes(self.root / name / EVENTS_FILE, events.content())
        root = _Events()
        root.header()
        root.summary(_text_summary(CONFIG_TAG, f"```toml\n{config_text}```"), 0, time.time())
        atomic_write_bytes(self.root / EVENTS_FILE, root.content())

    def _replay(self, run_dir: Path, through: int) -> None:
        """Queue the epochs a resumed run keeps, as history.csv and steps.csv hold them."""
        history = runs.read_history(run_dir / runs.HISTORY_FILE)
        wall_time = time.time()
        for index, epoch in enumerate(history["epoch"]):
            if epoch <= through:
                row = {name: values[index] for name, values in history.items()}
                self._queue_epoch(int(epoch), row, wall_time)
        steps_file = run_dir / runs.STEPS_FILE
        if steps_file.exists():
            steps = runs.read_steps(steps_file)
            for epoch, step, loss in zip(steps["epoch"], steps["step"], steps["loss"], strict=True):
                if epoch <= through:
                    self.files[TRAIN_DIR].scalar(BATCH_LOSS_TAG, int(step), loss, wall_time)
                    self.next_step = int(step) + 1

    def steps(self, epoch: int, losses) -> None:
        """Step-loss callback: the epoch's batch losses, numbered on from the last step as steps.csv numbers them."""
        self.pending_steps.extend((self.next_step + k, float(loss)) for k, loss in enumerate(losses))
        self.next_step += len(losses)

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> None:
        wall_time = time.time()
        for step, loss in self.pending_steps:
            self.files[TRAIN_DIR].scalar(BATCH_LOSS_TAG, step, loss, wall_time)
        self.pending_steps.clear()
        self._queue_epoch(epoch, metrics, wall_time)
        with deferred():  # Ctrl-C waits for the records in flight, so a file never ends in half a record
            for name, events in self.files.items():
                with open(self.root / name / EVENTS_FILE, "ab") as handle:
                    handle.write(events.content())

    def _queue_epoch(self, epoch: int, metrics: Mapping[str, float], wall_time: float) -> None:
        for column, value in metrics.items():
            if column not in _SKIPPED_COLUMNS and value == value:  # NaN: a column this epoch does not have
                directory, tag = history_tag(column)
                self.files[directory].scalar(tag, epoch, float(value), wall_time)


def _text_summary(tag: str, text: str):
    from tensorboard.plugins.text.summary_v2 import text_pb

    return text_pb(tag, text)


def write_sweep_hparams(sweep_dir: Path) -> int:
    """The HParams plugin's files for a sweep's finished runs, from what the sweep wrote; returns how many.

    Reads sweep.json (each run's directory, setting, seed, fold) and each complete run's
    config.toml and metrics.json. The sweep directory gets the experiment (which settings vary,
    which metrics to show); each run's tensorboard/ its session: the config keys that vary
    and its final test scores, in a group named after its setting, so TensorBoard shows one
    row per setting with its seeds' (and folds') mean. Rewritten whole each time, so a
    continued sweep repeats nothing. Runs trained with --no-tensorboard are left out.
    """
    from tensorboard.plugins.hparams import summary_v2 as hp

    from mnist_dnn.core.config import config_to_dict, load_config

    plan = runs.read_json(sweep_dir / SWEEP_PLAN_FILE) or {}
    sessions = []
    for entry in plan.get("runs", []):
        run_dir = sweep_dir / entry["directory"]
        status = runs.read_status(run_dir) if (run_dir / runs.STATUS_FILE).is_file() else None
        if status is None or status["status"] != "complete" or not (run_dir / BOARD_DIR).is_dir():
            continue
        flat = {
            f"{section}.{key}": value
            for section, keys in config_to_dict(load_config(run_dir / runs.CONFIG_FILE)).items()
            for key, value in keys.items()
        }
        sessions.append((entry, run_dir, flat, runs.read_metrics(run_dir)))
    everyone = [flat for _, _, flat, _ in sessions]
    varying = sorted(
        key
        for key in set().union(*everyone)
        if key not in ("train.seed", "validation.fold") and len({repr(each.get(key)) for each in everyone}) > 1
    )
    values = [
        {
            key: str(flat.get(key, "unset")) if isinstance(flat.get(key), list) else flat.get(key, "unset")
            for key in varying
        }
        or {"setting": entry["setting"]}
        for entry, _, flat, _ in sessions
    ]
    wall_time = time.time()
    for (entry, run_dir, _, metrics), hparams in zip(sessions, values, strict=True):
        events = _Events()
        events.header()
        events.summary(hp.hparams_pb(hparams, trial_id=entry["setting"], start_time_secs=wall_time), 0, wall_time)
        for tag in HPARAMS_METRICS:
            events.scalar(tag, int(metrics.get("epochs_completed", 0)), float(metrics[tag]), wall_time)
        atomic_write_bytes(run_dir / BOARD_DIR / HPARAMS_FILE, events.content())
    if sessions:
        names = list(dict.fromkeys(name for hparams in values for name in hparams))
        metrics_shown = [hp.Metric(tag, display_name=tag.replace("_", " ")) for tag in HPARAMS_METRICS] + [
            hp.Metric(f"epoch_{name}", group=VALIDATION_DIR, display_name=f"last validation {name}")
            for name in ("accuracy", "loss")
        ]
        domains = [_domain(hp, [hparams[name] for hparams in values if name in hparams]) for name in names]
        experiment = hp.hparams_config_pb(
            [hp.HParam(name, domain) for name, domain in zip(names, domains, strict=True)],
            metrics_shown,
            time_created_secs=wall_time,
        )
        events = _Events()
        events.header()
        events.summary(experiment, 0, wall_time)
        atomic_write_bytes(sweep_dir / HPARAMS_FILE, events.content())
    return len(sessions)


def _domain(hp, values: Sequence[Any]):
    """A Discrete domain of the values a setting takes, when they share one type (the plugin's rule)."""
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, (int, float)) else str for v in values}
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    return hp.Discrete(sorted({kind(v) for v in values}))

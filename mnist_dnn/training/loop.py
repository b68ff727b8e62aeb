"""What both training engines share: the data they train on, the callbacks they call, how to steer them.

`train.py` dispatches to the `fit` engine (in train.py) and the `fused` engine (fused.py);
both import from here, so nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 1-based epoch number and that epoch's metrics."""

StepLossCallback = Callable[[int, np.ndarray], None]
"""Called after every epoch with the 1-based epoch number and the training loss of each of its batches."""

EpochInputs = Callable[[int], np.ndarray]
"""1-based epoch -> that epoch's training inputs, same shape as x_train (data augmentation)."""

ORDER_STREAM = 0x5EED  # mixed into the run seed so the batch order's draw is its own (both engines)


@dataclass
class TrainingControl:
    """What epoch callbacks may ask of the training loop; both engines honour it between epochs.

    A callback that holds this object sets `stop` to end training after the current epoch
    (early stopping), or `learning_rate` to change the rate from the next epoch on
    (reduce-on-plateau); the loop applies the new rate and clears the field.
    """

    stop: bool = False
    learning_rate: float | None = None


def apply_control(model, control: TrainingControl | None) -> bool:
    """Carry out a control's requests on `model` after an epoch; True when training should stop."""
    if control is None:
        return False
    if control.learning_rate is not None:
        model.optimizer.learning_rate = control.learning_rate
        control.learning_rate = None
    return control.stop


@dataclass(frozen=True)
class TrainingData:
    """Network-ready arrays; the paper validates on the test set (section 5.1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def build_for_training(model, x_sample: np.ndarray, y_sample: np.ndarray) -> None:
    """Create the optimizer and metric variables `fit` would create before its first step.

    `_symbolic_build` is Keras' own (private) way to do this from one batch's shapes; keras
    is pinned in constraints.txt, and the engine and checkpoint tests fail loudly if it changes.
    """
    model._symbolic_build(data_batch=(x_sample, y_sample))
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def batch_losses(running_means: Sequence[float], batch_size: int, count: int) -> np.ndarray:
    """Each batch's own mean loss, from Keras' running mean over the epoch after every batch.

    Keras weights each batch by its size, so batch b's loss is the change in the running
    total; the last, partial batch counts for what it holds (60,000 = 937 x 64 + 32).
    """
    means = np.asarray(running_means, dtype=np.float64)
    sizes = np.minimum(batch_size, count - batch_size * np.arange(len(means)))
    totals = means * np.cumsum(sizes)
    return np.diff(totals, prepend=0.0) / sizes

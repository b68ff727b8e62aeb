"""Which training images are trained on and which validate each epoch (config [validation], [data])."""

from __future__ import annotations

import numpy as np

from mnist_dnn.core.config import DataConfig, ValidationConfig
from mnist_dnn.core.errors import UserInputError

_SPLIT_STREAM = 0x5B17  # mixed into the run seed so the split's draw is its own


def check_train_limit(data: DataConfig, count: int) -> None:
    """A train_limit beyond the training set would silently train on all of it: refuse it instead."""
    if data.train_limit is not None and data.train_limit > count:
        raise UserInputError(
            f"data.train_limit: {data.train_limit:,} is more than the {count:,} training images there are"
        )


def split_indices(count: int, data: DataConfig, validation: ValidationConfig, seed: int):
    """(train indices, validation indices or None) into the training set.

    `data.train_limit` keeps the first N images; then 'holdout' sets a random `fraction`
    aside and 'fold' the `fold`-th of `folds` equal random parts; 'test' (the paper)
    validates on the test set, so None. The draw depends on the seed only (the run's, or
    `validation.split_seed` when set), so every fold of a cross-validation partitions the
    same permutation.
    """
    check_train_limit(data, count)
    limit = data.train_limit or count
    if validation.source == "test":
        return np.arange(limit), None
    order = np.random.default_rng([split_seed(validation, seed), _SPLIT_STREAM]).permutation(limit)
    if validation.source == "holdout":
        held = max(1, round(limit * validation.fraction))
        return np.sort(order[held:]), np.sort(order[:held])
    parts = np.array_split(order, validation.folds)
    held = parts[validation.fold - 1]
    kept = np.concatenate([part for k, part in enumerate(parts) if k != validation.fold - 1])
    return np.sort(kept), np.sort(held)


def split_seed(validation: ValidationConfig, seed: int) -> int | None:
    """The seed the validation split is drawn from; None when nothing is drawn (the test set validates)."""
    if validation.source == "test":
        return None
    return seed if validation.split_seed is None else validation.split_seed

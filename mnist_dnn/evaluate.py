"""Scoring a trained model on held-out data, returning plain numbers."""

from __future__ import annotations

import numpy as np


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
    """Test loss and accuracy, as the paper's `model_DNN.evaluate` prints them.

    Uses the training batch size so the numbers match the last epoch's validation
    metrics exactly (Keras validates with the same batch size).
    """
    scores = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {"loss": float(scores["loss"]), "accuracy": float(scores["accuracy"])}


def predict_probabilities(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The softmax output, (images, classes) float32: the probability the model gives each digit."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got {values.min()}..{values.max()}")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)

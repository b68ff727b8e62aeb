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

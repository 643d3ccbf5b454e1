"""Scores and confusion matrices at a decision threshold (computing only; drawing is in plots).

Label 1 = helmet, label 0 = bare head (the safety violation): "bare-head recall" is the share of violations caught.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from helmetlib.core.records import Record, record
from helmetlib.data.dataset import CLASS_NAMES

HEADLINE_METRICS = ("accuracy", "recall", "precision", "f1")
METRIC_LABELS = {  # a metric's name as the pages write it
    "accuracy": "accuracy",
    "recall": "recall",
    "precision": "precision",
    "f1": "F1",
    "bare_head_recall": "bare-head recall",
}
BARE_HEAD = CLASS_NAMES[0]


@record
class ClassScores(Record):
    """Recall, precision and F1 of one class, with its number of true members."""

    recall: float
    precision: float
    f1: float
    support: int


@record
class Scores(Record):
    """The study's table (accuracy, weighted recall / precision / F1) and per-class scores at `threshold`."""

    accuracy: float
    recall: float
    precision: float
    f1: float
    per_class: dict[str, ClassScores]
    threshold: float
    n: int

    @property
    def bare_head_recall(self) -> float:
        """Share of bare heads (label 0) predicted as bare heads."""
        return self.per_class[BARE_HEAD].recall

    def headline(self) -> dict[str, float]:
        """The four headline metrics by name."""
        return {name: getattr(self, name) for name in HEADLINE_METRICS}


def predict_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label 1 (helmet) where P(helmet) >= threshold, else 0; shape (n_samples,)."""
    return (np.asarray(probabilities).ravel() >= threshold).astype(np.int64)


def performance(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> Scores:
    """Accuracy and weighted recall / precision / F1 (the study's table), plus per-class scores.

    `y_true` (n_samples,) of 0/1 and `probabilities` (n_samples,) of P(helmet); label 1 where P >= `threshold`.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = predict_labels(probabilities, threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average="weighted", zero_division=0
    )
    per_precision, per_recall, per_f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average=None, zero_division=0
    )
    return Scores(
        accuracy=float(accuracy_score(y_true, y_pred)),
        recall=float(recall),
        precision=float(precision),
        f1=float(f1),
        per_class={
            CLASS_NAMES[label]: ClassScores(
                recall=float(per_recall[label]),
                precision=float(per_precision[label]),
                f1=float(per_f1[label]),
                support=int(support[label]),
            )
            for label in (0, 1)
        },
        threshold=float(threshold),
        n=int(len(y_true)),
    )


def is_collapsed(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> bool:
    """True when a model's predictions are (nearly) one class or its probabilities barely vary.

    Nearly one class: a class is predicted for fewer than a tenth as many images as truly belong to the smaller
    class (none at all on tiny sets); barely vary: the probabilities' standard deviation is below 0.001.
    """
    y_true, probabilities = np.asarray(y_true).ravel(), np.asarray(probabilities, dtype=float).ravel()
    predicted = np.bincount(predict_labels(probabilities, threshold), minlength=2)
    smaller_class = np.bincount(y_true, minlength=2).min()
    return bool(predicted.min() < 0.1 * smaller_class or predicted.min() == 0 or probabilities.std() < 1e-3)


def confusion(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts, rows = true label (0 no helmet, 1 helmet), columns = predicted label."""
    return confusion_matrix(np.asarray(y_true).ravel(), predict_labels(probabilities, threshold), labels=[0, 1])


def performance_table(scores: dict[str, Scores]) -> pd.DataFrame:
    """One row per model (or part) with the study's four headline metrics and bare-head recall."""
    return pd.DataFrame(
        {name: {**result.headline(), "bare-head recall": result.bare_head_recall} for name, result in scores.items()}
    ).T


def per_class_table(scores: Scores) -> pd.DataFrame:
    """One row per class with recall, precision, F1 and support (an integer column)."""
    table = pd.DataFrame({name: vars(values) for name, values in scores.per_class.items()}).T
    return table.astype({"support": int})

"""Performance tables and confusion matrices at a decision threshold (computing only; drawing is in plots)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from helmetlib.data import CLASS_NAMES

HEADLINE_METRICS = ("accuracy", "recall", "precision", "f1")


def predict_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label 1 (helmet) where P(helmet) >= threshold, else 0."""
    return (np.asarray(probabilities).ravel() >= threshold).astype(np.int64)


def performance(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> dict:
    """Accuracy and weighted recall/precision/F1 (the study's table), plus per-class recall/precision/F1/support."""
    y_true = np.asarray(y_true).ravel()
    y_pred = predict_labels(probabilities, threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average="weighted", zero_division=0
    )
    per_precision, per_recall, per_f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "per_class": {
            CLASS_NAMES[label]: {
                "recall": float(per_recall[label]),
                "precision": float(per_precision[label]),
                "f1": float(per_f1[label]),
                "support": int(support[label]),
            }
            for label in (0, 1)
        },
        "threshold": float(threshold),
        "n": int(len(y_true)),
    }


def confusion(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """2x2 counts, rows = true label (0 no helmet, 1 helmet), columns = predicted label."""
    return confusion_matrix(np.asarray(y_true).ravel(), predict_labels(probabilities, threshold), labels=[0, 1])


def performance_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per model (or split) with the study's four headline metrics."""
    return pd.DataFrame({name: {key: result[key] for key in HEADLINE_METRICS} for name, result in results.items()}).T


def per_class_table(result: dict) -> pd.DataFrame:
    """One row per class with recall, precision, F1 and support."""
    return pd.DataFrame(result["per_class"]).T

"""How far a score can be trusted: ROC / PR curves, thresholds, calibration and bootstrap confidence intervals.

Probabilities are P(helmet); the bare head (label 0) is the safety violation, so "recall on bare heads" is the
share of violations a model catches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from helmetlib.metrics import HEADLINE_METRICS, performance, predict_labels


@dataclass(frozen=True)
class Curves:
    """ROC and precision-recall curves (helmet = positive class) with their areas."""

    fpr: np.ndarray
    tpr: np.ndarray
    roc_auc: float
    precision: np.ndarray
    recall: np.ndarray
    average_precision: float


def curves(y_true: np.ndarray, probabilities: np.ndarray) -> Curves:
    """ROC curve and AUC, precision-recall curve and average precision, for P(helmet)."""
    fpr, tpr, _ = roc_curve(y_true, probabilities)
    precision, recall, _ = precision_recall_curve(y_true, probabilities)
    return Curves(
        fpr=fpr,
        tpr=tpr,
        roc_auc=float(roc_auc_score(y_true, probabilities)),
        precision=precision,
        recall=recall,
        average_precision=float(average_precision_score(y_true, probabilities)),
    )


def bare_head_recall(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> float:
    """Share of bare heads (label 0) predicted as bare heads at `threshold`."""
    bare = np.asarray(y_true) == 0
    return float((predict_labels(probabilities, threshold)[bare] == 0).mean())


def choose_threshold(
    y_true: np.ndarray, probabilities: np.ndarray, *, target_bare_head_recall: float | None = None
) -> float:
    """A threshold picked on validation: max weighted F1, or the lowest that catches `target_bare_head_recall`.

    A higher threshold calls more images "no helmet", so it raises recall on bare heads at the cost of false alarms.
    """
    candidates = np.unique(np.concatenate([np.asarray(probabilities, dtype=float), [0.5]]))
    if target_bare_head_recall is None:
        scores = [performance(y_true, probabilities, threshold=t)["f1"] for t in candidates]
        return float(candidates[int(np.argmax(scores))])
    for threshold in candidates:  # ascending: the first that reaches the target keeps false alarms lowest
        if bare_head_recall(y_true, probabilities, threshold) >= target_bare_head_recall:
            return float(threshold)
    return float(np.nextafter(candidates[-1], np.inf))  # above every probability: everything is a bare head


def brier_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared difference between P(helmet) and the label (0 is perfect)."""
    return float(np.mean((np.asarray(probabilities, dtype=float) - np.asarray(y_true)) ** 2))


def reliability(y_true: np.ndarray, probabilities: np.ndarray, *, bins: int = 10) -> dict:
    """Equal-width bins of P(helmet): mean predicted probability, observed helmet rate, count; and the ECE."""
    probabilities = np.asarray(probabilities, dtype=float)
    y_true = np.asarray(y_true)
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    predicted, observed, counts = [], [], []
    for b in range(bins):
        members = index == b
        counts.append(int(members.sum()))
        predicted.append(float(probabilities[members].mean()) if members.any() else np.nan)
        observed.append(float(y_true[members].mean()) if members.any() else np.nan)
    counts_array = np.array(counts)
    gaps = np.abs(np.nan_to_num(np.array(predicted)) - np.nan_to_num(np.array(observed)))
    return {
        "predicted": predicted,
        "observed": observed,
        "counts": counts,
        "ece": float((counts_array * gaps).sum() / counts_array.sum()),
    }


def bootstrap_intervals(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    reference_probabilities: np.ndarray | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals of the headline metrics and bare-head recall, resampling images.

    With `reference_probabilities` (another model on the same images) it also gives intervals of the difference
    (this model minus the reference) on the same resamples.
    """
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(random_state)
    names = [*HEADLINE_METRICS, "bare_head_recall"]
    predicted = predict_labels(probabilities, threshold)
    reference = None if reference_probabilities is None else predict_labels(reference_probabilities, threshold)
    everything = np.arange(len(y_true))
    point = _scores(y_true, predicted, everything)
    samples, differences = [], []
    for _ in range(n_resamples):
        rows = rng.integers(len(y_true), size=len(y_true))
        if len(np.unique(y_true[rows])) < 2:
            continue  # a resample with one class has no per-class recall
        sample = _scores(y_true, predicted, rows)
        samples.append(sample)
        if reference is not None:
            differences.append(sample - _scores(y_true, reference, rows))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    intervals = {
        name: {"value": float(point[i]), "low": float(low[i]), "high": float(high[i])} for i, name in enumerate(names)
    }
    if reference is not None:
        reference_point = _scores(y_true, reference, everything)
        d_low, d_high = np.percentile(differences, [tail, 100 - tail], axis=0)
        for i, name in enumerate(names):
            intervals[f"{name}_difference"] = {
                "value": float(point[i] - reference_point[i]),
                "low": float(d_low[i]),
                "high": float(d_high[i]),
            }
    return intervals


def _scores(y_true: np.ndarray, y_pred: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Accuracy, weighted recall / precision / F1 and bare-head recall of `rows`, from confusion counts (fast)."""
    t, p = y_true[rows], y_pred[rows]
    support = np.array([(t == 0).sum(), (t == 1).sum()], dtype=float)
    predicted = np.array([(p == 0).sum(), (p == 1).sum()], dtype=float)
    hits = np.array([((t == 0) & (p == 0)).sum(), ((t == 1) & (p == 1)).sum()], dtype=float)
    recall = np.divide(hits, support, out=np.zeros(2), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(2), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(2), where=precision + recall > 0)
    weights = support / support.sum()
    return np.array([hits.sum() / len(t), weights @ recall, weights @ precision, weights @ f1, recall[0]])

"""How far a score can be trusted: ROC / PR curves, thresholds, calibration and bootstrap confidence intervals.

Probabilities are P(helmet); the bare head (label 0) is the safety violation, so "recall on bare heads" is the
share of violations a model catches. The statistics are scikit-learn's and SciPy's (`roc_curve`,
`precision_recall_curve`, `brier_score_loss`, `calibration_curve`, `scipy.stats.bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from helmetlib.core.records import Record, record
from helmetlib.evaluation.metrics import predict_labels

INTERVAL_METRICS = ("accuracy", "recall", "precision", "f1", "bare_head_recall")


@record
class Interval(Record):
    """A point estimate with a 95 % bootstrap interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} (95 % CI {self.low:.{digits}f} to {self.high:.{digits}f})"


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
    """ROC curve and AUC, precision-recall curve and average precision, for P(helmet) (n_samples,)."""
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
    All candidate thresholds are scored in one pass over `roc_curve`'s operating points. The value returned lies
    half-way between the chosen operating point and the next lower validation probability: the same decisions on
    validation, but no image sits exactly on the threshold, where float noise (TFLite, another machine) would flip it.
    """
    y_true = np.asarray(y_true).ravel()
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    fpr, tpr, thresholds = roc_curve(y_true, probabilities, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]  # label 1 where P >= threshold
    if target_bare_head_recall is not None:
        bare_recall = 1 - fpr  # bare heads below the threshold
        reaching = np.flatnonzero(bare_recall >= target_bare_head_recall)
        if len(reaching) == 0:
            return float(np.nextafter(probabilities.max(), np.inf))  # above every probability: all bare heads
        return _between(thresholds, reaching.max())  # the lowest keeps false alarms on helmets lowest
    positives, negatives = (y_true == 1).sum(), (y_true == 0).sum()
    tp, fp = tpr * positives, fpr * negatives
    fn, tn = positives - tp, negatives - fp
    f1_helmet = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)
    f1_bare = np.divide(2 * tn, 2 * tn + fn + fp, out=np.zeros_like(tn), where=2 * tn + fn + fp > 0)
    weighted = (negatives * f1_bare + positives * f1_helmet) / len(y_true)
    best = np.flatnonzero(weighted >= weighted.max() - 1e-12)
    return _between(thresholds, best[np.argmin(np.abs(thresholds[best] - 0.5))])  # ties: the one nearest 0.5


def _between(thresholds: np.ndarray, index: int) -> float:
    """Half-way from operating point `index` of `roc_curve`'s decreasing `thresholds` to the next lower one."""
    lower = thresholds[index + 1] if index + 1 < len(thresholds) else 0.0
    return float((thresholds[index] + lower) / 2)


def brier_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared difference between P(helmet) and the label (0 is perfect)."""
    return float(brier_score_loss(y_true, probabilities))


def reliability(y_true: np.ndarray, probabilities: np.ndarray, *, bins: int = 10) -> dict:
    """Equal-width bins of P(helmet): mean predicted probability, observed helmet rate, count; and the ECE.

    `predicted` / `observed` hold one value per non-empty bin (scikit-learn's `calibration_curve`), `counts`
    the images per bin (all bins), `ece` the count-weighted mean gap between predicted and observed.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    observed, predicted = calibration_curve(y_true, probabilities, n_bins=bins, strategy="uniform")
    counts, _ = np.histogram(probabilities, bins=np.linspace(0, 1, bins + 1))
    occupied = counts[counts > 0]
    return {
        "predicted": predicted.tolist(),
        "observed": observed.tolist(),
        "counts": counts.tolist(),
        "ece": float(np.sum(occupied * np.abs(predicted - observed)) / occupied.sum()),
    }


def bootstrap_intervals(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    reference_probabilities: np.ndarray | None = None,
    reference_threshold: float | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of the headline metrics and bare-head recall, resampling images.

    With `reference_probabilities` (another model, or the same model in an earlier run, on the same images) it
    also gives `<metric>_difference`: this model minus the reference, on the same resamples (paired).
    """
    y_true = np.asarray(y_true).ravel()
    predicted = predict_labels(probabilities, threshold)
    samples = [y_true, predicted]
    if reference_probabilities is not None:
        reference = predict_labels(
            reference_probabilities, threshold if reference_threshold is None else reference_threshold
        )
        samples.append(reference)

    def statistic(truth, labels, *other, axis=-1):
        values = _scores(truth, labels, axis)
        return np.concatenate([values, values - _scores(truth, other[0], axis)]) if other else values

    point = statistic(*samples)
    result = bootstrap(
        tuple(samples),
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=random_state,
    )
    low, high = result.confidence_interval
    names = [*INTERVAL_METRICS, *(f"{name}_difference" for name in INTERVAL_METRICS)]
    return {
        name: Interval(value=float(point[i]), low=float(low[i]), high=float(high[i]))
        for i, name in enumerate(names[: len(point)])
    }


def f1_difference(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    reference_probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    n_resamples: int = 2000,
) -> Interval:
    """Weighted F1 of `probabilities` minus that of `reference_probabilities` (both (n,), on the same images), with
    its paired bootstrap 95 % interval."""
    return bootstrap_intervals(
        y_true,
        probabilities,
        reference_probabilities=reference_probabilities,
        threshold=threshold,
        n_resamples=n_resamples,
    )["f1_difference"]


def _scores(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """Accuracy, weighted recall / precision / F1 and bare-head recall along `axis` (resamples vectorised).

    A resample without one of the classes gives that class's recall and precision 0 (as `zero_division=0`).
    """
    truth, pred = np.moveaxis(y_true, axis, -1), np.moveaxis(y_pred, axis, -1)
    n = truth.shape[-1]
    support = np.stack([(truth == 0).sum(-1), (truth == 1).sum(-1)]).astype(float)
    predicted = np.stack([(pred == 0).sum(-1), (pred == 1).sum(-1)]).astype(float)
    hits = np.stack([((truth == 0) & (pred == 0)).sum(-1), ((truth == 1) & (pred == 1)).sum(-1)]).astype(float)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(hits), where=denominator > 0)
    weights = support / n
    return np.stack(
        [hits.sum(0) / n, (weights * recall).sum(0), (weights * precision).sum(0), (weights * f1).sum(0), recall[0]]
    )

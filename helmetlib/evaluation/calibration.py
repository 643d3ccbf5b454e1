"""Calibrated P(helmet): Platt scaling fitted on validation, stored in the model card, applied by every reader.

A model's sigmoid output is a score, not a probability: the study's CNN says 0.48 for images that are bare heads
nine times in ten. `fit_calibration` fits calibrated = sigmoid(slope * logit(p) + intercept) on the validation
images (scikit-learn's logistic regression on the logit) and measures what it gains out of fold (k-fold within
validation), so the figures do not grade the calibration on the images it was fitted to. The mapping is
monotone (slope > 0): it changes no ranking, and a threshold moves with it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from helmetlib.core.records import Record, record
from helmetlib.evaluation.uncertainty import brier_score, reliability

CLIP = 1e-6  # probabilities are clipped to [CLIP, 1 - CLIP] before the logit
MAX_FOLDS = 5


@record
class Calibration(Record):
    """Platt scaling of P(helmet) and what it changed on validation.

    `ece_after` / `brier_after` are out of fold (`folds`-fold within the `fitted_on` validation images; 0 folds:
    too few images of a class, so in sample).
    """

    method: Literal["platt"]
    slope: float
    intercept: float
    fitted_on: int
    folds: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float

    def __post_init__(self):
        if not self.slope > 0:
            raise ValueError(f"slope must be positive (a monotone calibration), got {self.slope!r}")

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated P(helmet) (n,) float64 for raw model outputs (n,)."""
        return _platt(np.asarray(probabilities, dtype=float), self.slope, self.intercept)

    def text(self) -> str:
        """One line for reports: method, ECE and Brier score before and after."""
        where = f"{self.folds}-fold within validation" if self.folds else "in sample (too few images to fold)"
        return (
            f"Platt scaling fitted on {self.fitted_on} validation images: expected calibration error "
            f"{self.ece_before:.3f} → {self.ece_after:.3f}, Brier score {self.brier_before:.3f} → "
            f"{self.brier_after:.3f} ({where})"
        )


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, CLIP, 1 - CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _platt(probabilities: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(slope * _logit(probabilities) + intercept)))


def _fit(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    fit = LogisticRegression(C=1.0).fit(_logit(probabilities)[:, None], labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def calibrated_out_of_fold(
    labels: np.ndarray, probabilities: np.ndarray, *, random_state: int = 0
) -> tuple[int, np.ndarray]:
    """(folds, calibrated (n,)): each image's probability calibrated by Platt scaling fitted on the other folds of
    the same images (stratified k-fold, k = 5 or the smaller class's count), so that no image grades a calibration
    fitted to it; 0 folds (a class with fewer than 2 images): fitted in sample."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    folds = min(MAX_FOLDS, int(np.bincount(labels, minlength=2).min()))
    if folds < 2:
        slope, intercept = _fit(labels, probabilities)
        return 0, _platt(probabilities, max(slope, 0.0), intercept)
    out_of_fold = np.empty_like(probabilities)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for fit_rows, held_out in splitter.split(probabilities, labels):
        fold_slope, fold_intercept = _fit(labels[fit_rows], probabilities[fit_rows])
        out_of_fold[held_out] = _platt(probabilities[held_out], max(fold_slope, 0.0), fold_intercept)
    return folds, out_of_fold


def fit_calibration(labels: np.ndarray, probabilities: np.ndarray, *, random_state: int = 0) -> Calibration | None:
    """Platt scaling of `probabilities` (n,) for `labels` (n,) of 0/1, or None when the outputs cannot be
    calibrated monotonically (they do not rank the classes the right way round, or are constant)."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    if len(np.unique(labels)) < 2 or np.ptp(probabilities) == 0:
        return None
    slope, intercept = _fit(labels, probabilities)
    if not slope > 0:
        return None
    folds, out_of_fold = calibrated_out_of_fold(labels, probabilities, random_state=random_state)
    return Calibration(
        method="platt",
        slope=slope,
        intercept=intercept,
        fitted_on=len(labels),
        folds=folds,
        ece_before=reliability(labels, probabilities)["ece"],
        ece_after=reliability(labels, out_of_fold)["ece"],
        brier_before=brier_score(labels, probabilities),
        brier_after=brier_score(labels, out_of_fold),
    )

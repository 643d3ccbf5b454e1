"""Is an input a head crop like the ones the model was trained on? The check a deployed model's card carries.

`helmet-predict` judges head crops; given a whole site photo it would answer one confident number for a scene of
several people. The check has two parts, both learnt from the run's own data and recorded in the card:

- **content**: the input's features in the deployed model's own feature space (`models.feature_model`: the
  pooled output of its frozen backbone or of the CNN's convolutions), log-scaled and whitened by a PCA of the
  training crops' features; its distance (root mean square over the components) against a limit that 99 % of the
  crops the PCA did not see pass (the validation crops and, out of fold, the training crops: 90 validation crops
  alone cannot place a 99th percentile), widened by `CONTENT_MARGIN` for crops cut otherwise from the same kind
  of photos (on the VOC sample's crops the 99th percentile of helmet-dev's alone refused 4 %). It catches inputs
  unlike anything in training (a document, a wall, a mirrored letterbox band).
- **scale**: the native size of the windows the training crops were cut from (`provenance.csv` of an imported or
  helmet-dev folder: 48 to 306 pixels on helmet-dev), and the size they were stored at (200). An input larger than
  both by more than `SCALE_MARGIN` shows more than any training crop did: a whole photo (416 or 640 pixels) does.
  Crops and the whole photos they come from share scenes, people and light, so their content features overlap (on
  the VOC sample, the content part alone flags 5 to 26 % of whole photos, depending on the model); their scale does
  not.

The score of an input is the larger of its two ratios to their limits: at most 1 passes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from helmetlib.core.records import Record, record

UNSEEN_PASS = 0.99  # the share of crops the whitening did not see that the content limit lets through
COMPONENTS = 16  # principal components of the training crops' features (at most one per 20 training crops)
FOLDS = 5
CONTENT_MARGIN = 1.2
SCALE_MARGIN = 1.25  # an input up to 1.25 x the largest training window still counts as a crop
CHECK_SUFFIX = ".crop_check.npz"


@record
class CropCheck(Record):
    """How `helmet-predict` tells an input unlike the training crops (see the module).

    `features`: the feature space, in words; `file`: the arrays of the content part beside the card (`mean`,
    `components`, `scales`: the whitening PCA); `distance_limit`: `CONTENT_MARGIN` times the content distance that
    `unseen_pass` of the crops the whitening did not see stay under (`validation_pass`: the validation crops' share
    under the limit);
    `window_sides`: the smallest and largest native window the training crops were cut from, pixels (None when the
    data does not record it: no scale part); `scale_limit`: the largest input side that passes (`SCALE_MARGIN`
    times the largest window, or the crops' stored size when that is larger).
    """

    features: str
    file: str
    components: int
    distance_limit: float
    unseen_pass: float
    validation_pass: float
    fitted_on: int
    window_sides: tuple[int, int] | None = None
    scale_limit: int | None = None

    def __post_init__(self):
        if not (math.isfinite(self.distance_limit) and self.distance_limit > 0):
            raise ValueError(f"distance_limit must be a positive number, got {self.distance_limit!r}")

    def describe(self) -> str:
        """What the check compares, in one line for reports."""
        scale = (
            f"; inputs over {self.scale_limit} px (training windows {self.window_sides[0]}-{self.window_sides[1]} px)"
            if self.scale_limit
            else "; no scale part (the training data records no window sizes)"
        )
        return (
            f"content distance in {self.features}, limit {self.distance_limit:.2f} ({self.validation_pass:.0%} of the "
            f"validation crops pass){scale}"
        )


class CheckArrays:
    """The content part's whitening (from `CropCheck.file`): mean (F,), components (k, F), scales (k,)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, scales: np.ndarray):
        self.mean, self.components, self.scales = mean, components, scales

    @classmethod
    def read(cls, path: Path) -> CheckArrays:
        with np.load(path) as stored:
            return cls(stored["mean"], stored["components"], stored["scales"])

    def write(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, scales=self.scales)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Root mean square of the whitened components of features (n, F): about 1 for a typical training crop."""
        return self.distances_of_scaled(_scaled(features))

    def distances_of_scaled(self, scaled: np.ndarray) -> np.ndarray:
        whitened = ((scaled - self.mean) @ self.components.T) / self.scales
        return np.sqrt(np.mean(whitened**2, axis=1))


def _scaled(features: np.ndarray) -> np.ndarray:
    """Features are ReLU outputs (never negative), heavy-tailed: their logarithm is closer to a Gaussian cloud."""
    return np.log1p(np.maximum(np.asarray(features, dtype=np.float64), 0))


def fit_crop_check(
    train_features: np.ndarray,
    validation_features: np.ndarray,
    *,
    features: str,
    file: str,
    window_sides: np.ndarray | None = None,
    crop_side: int = 200,
) -> tuple[CropCheck, CheckArrays]:
    """The check of a model from its features of the training crops (n, F) and of the validation crops (m, F), the
    native window sides (pixels) the training crops were cut from (None when unknown) and the side they were
    stored at (`crop_side`)."""
    scaled = _scaled(train_features)
    count = max(2, min(COMPONENTS, scaled.shape[1], len(scaled) // 20))
    arrays = _whitening(scaled, count)
    validation = arrays.distances(validation_features)
    unseen = np.concatenate([validation, _out_of_fold(scaled, count)])
    limit = CONTENT_MARGIN * float(np.quantile(unseen, UNSEEN_PASS))
    known = window_sides is not None and len(window_sides) > 0
    sides = (int(np.min(window_sides)), int(np.max(window_sides))) if known else None
    check = CropCheck(
        features=features,
        file=file,
        components=count,
        distance_limit=limit,
        unseen_pass=UNSEEN_PASS,
        validation_pass=float(np.mean(validation <= limit)),
        fitted_on=len(scaled),
        window_sides=sides,
        scale_limit=None if sides is None else math.floor(SCALE_MARGIN * max(sides[1], crop_side)),
    )
    return check, arrays


def _whitening(scaled: np.ndarray, count: int) -> CheckArrays:
    """The PCA whitening of scaled features (n, F) by `count` components."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=count, random_state=0).fit(scaled)
    return CheckArrays(
        mean=pca.mean_, components=pca.components_, scales=np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    )


def _out_of_fold(scaled: np.ndarray, count: int) -> np.ndarray:
    """Each training crop's distance under a whitening fitted without it (`FOLDS`-fold)."""
    from sklearn.model_selection import KFold

    distances = np.empty(len(scaled))
    for fitted, held_out in KFold(FOLDS, shuffle=True, random_state=0).split(scaled):
        distances[held_out] = _whitening(scaled[fitted], count).distances_of_scaled(scaled[held_out])
    return distances


def crop_scores(
    check: CropCheck, arrays: CheckArrays, features: np.ndarray | None, sides: np.ndarray
) -> tuple[np.ndarray, list[str | None]]:
    """(score (n,), why each input fails or None) of inputs with their features (n, F) (None: not computed, e.g. a
    TensorFlow Lite model) and native longer sides (n,) in pixels. The score is the larger of the content distance
    over its limit and the side over the scale limit; above 1 fails."""
    sides = np.asarray(sides, dtype=float)
    content = arrays.distances(features) / check.distance_limit if features is not None else np.full(len(sides), np.nan)
    scale = sides / check.scale_limit if check.scale_limit else np.full(len(sides), np.nan)
    scores = np.fmax(content, scale)
    reasons = []
    for content_ratio, scale_ratio, side in zip(content, scale, sides, strict=True):
        why = []
        if scale_ratio > 1:
            why.append(
                f"{side:.0f} px, larger than any training crop's window ({check.window_sides[1]} px, limit "
                f"{check.scale_limit}): a whole photo?"
            )
        if content_ratio > 1:
            why.append(f"unlike the training crops (content {content_ratio:.2f} of its limit)")
        reasons.append("; ".join(why) or None)
    return scores, reasons

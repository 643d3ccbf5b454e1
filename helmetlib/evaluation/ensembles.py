"""The cross-architecture ensemble: the mean calibrated P(helmet) of the deployed models of the best two
architectures, weighed against the selected model on validation, and deployed only when validation prefers it.

Each member is calibrated by Platt scaling out of fold within validation (`calibrated_out_of_fold`), so neither
side is graded on images its calibration was fitted to. The comparison is on the Brier score, a proper scoring rule
(F1 at one threshold cannot see a better ranking or better probabilities): the ensemble is deployed when the paired
bootstrap 95 % interval of (selected minus ensemble) Brier score lies above 0, i.e. validation shows it clearly
better (`--cross-ensemble preferred`, the default), or unless it lies below 0 (`unless-worse`), or never (`off`).
On helmet-dev it was never clearly better on 90 validation images, though it ranked photos from elsewhere better in
5 runs of 5 (docs/seeds.md): the record says so, and the run page shows its numbers either way.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import bootstrap

from helmetlib.core.records import Record, record
from helmetlib.evaluation.calibration import calibrated_out_of_fold
from helmetlib.evaluation.metrics import Scores, performance
from helmetlib.evaluation.uncertainty import Interval, brier_score

ENSEMBLE_NAME = "ensemble"  # models/ensemble.keras and its card, when the ensemble is deployed
MEMBERS = 2


@record
class CrossEnsemble(Record):
    """The cross-architecture candidate of a run and the validation evidence for or against deploying it.

    `brier_gain` is the selected model's validation Brier score minus the ensemble's (positive: the ensemble's
    probabilities are better), both calibrated out of fold, with its paired bootstrap 95 % interval.
    """

    members: tuple[str, ...]
    validation: Scores
    selected_validation: Scores
    brier: float
    selected_brier: float
    brier_gain: Interval
    deployed: bool
    rule: Literal["preferred", "unless-worse", "off"] = "preferred"

    @property
    def text(self) -> str:
        """One sentence for the decision block: the rule in words, then the evidence."""
        rule = {
            "preferred": "it is deployed only when validation shows its probabilities clearly better (the 95 % "
            "interval of the Brier score's gain lies above 0)",
            "unless-worse": "it is deployed unless validation shows its probabilities clearly worse (the 95 % "
            "interval of the Brier score's gain lies below 0)",
            "off": "it is never deployed (--cross-ensemble off)",
        }[self.rule]
        verdict = "deployed" if self.deployed else "not deployed"
        f1 = (
            f"; its higher F1 ({self.validation.f1:.3f} vs {self.selected_validation.f1:.3f}) does not decide: F1 at "
            "one threshold cannot see better probabilities"
            if self.validation.f1 > self.selected_validation.f1 and not self.deployed
            else f"; F1 {self.validation.f1:.3f} vs {self.selected_validation.f1:.3f}"
        )
        return (
            f"The cross-architecture ensemble ({' + '.join(self.members)}, mean calibrated P(helmet)) is {verdict}: "
            f"{rule}. Validation Brier score {self.brier:.3f} against {self.selected_brier:.3f} for "
            f"{self.members[0]}, a gain of {self.brier_gain.text()} (paired bootstrap){f1}."
        )


def brier_gain(
    y_true: np.ndarray, reference: np.ndarray, candidate: np.ndarray, *, n_resamples: int = 2000
) -> Interval:
    """Brier score of `reference` minus that of `candidate` (both (n,), on the same images `y_true`), with its
    paired percentile bootstrap 95 % interval (resampling images)."""
    y_true = np.asarray(y_true, dtype=float)
    differences = (np.asarray(reference) - y_true) ** 2 - (np.asarray(candidate) - y_true) ** 2
    result = bootstrap(
        (differences,), np.mean, n_resamples=n_resamples, method="percentile", random_state=0, vectorized=True
    )
    low, high = result.confidence_interval
    return Interval(value=float(differences.mean()), low=float(low), high=float(high))


def cross_architecture(
    ranked: list[str],
    validation_labels: np.ndarray,
    validation: dict[str, np.ndarray],
    *,
    rule: Literal["preferred", "unless-worse", "off"] = "preferred",
    threshold: float = 0.5,
    n_resamples: int = 2000,
) -> CrossEnsemble | None:
    """The ensemble of the first `MEMBERS` of `ranked` (the selected model first, then the runner-up), weighed on
    the validation probabilities `validation` {name: (n,)} of the deployed models; None with fewer models.

    `rule`: deployed when the paired bootstrap interval of the Brier gain lies above 0 (`preferred`), when it does
    not lie below 0 (`unless-worse`), or never (`off`: weighed and reported only)."""
    if len(ranked) < MEMBERS:
        return None
    members = tuple(ranked[:MEMBERS])
    calibrated = {name: calibrated_out_of_fold(validation_labels, validation[name])[1] for name in members}
    ensemble = np.mean([calibrated[name] for name in members], axis=0)
    selected = calibrated[members[0]]
    gain = brier_gain(validation_labels, selected, ensemble, n_resamples=n_resamples)
    return CrossEnsemble(
        members=members,
        validation=performance(validation_labels, ensemble, threshold=threshold),
        selected_validation=performance(validation_labels, selected, threshold=threshold),
        brier=brier_score(validation_labels, ensemble),
        selected_brier=brier_score(validation_labels, selected),
        brier_gain=gain,
        deployed={"preferred": gain.low > 0, "unless-worse": gain.high >= 0, "off": False}[rule],
        rule=rule,
    )

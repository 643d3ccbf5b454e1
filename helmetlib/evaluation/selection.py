"""The selection rule over repeated results, the runner-up verdict, the threshold to deploy and the run's warnings.

Selection looks at train and validation only; the test part is scored once, for the selected model, afterwards.
"""

from __future__ import annotations

import numpy as np

from helmetlib.core.specs import MODEL_SPECS
from helmetlib.evaluation.calibration import Calibration
from helmetlib.evaluation.results import DeployThreshold, ModelResult, Verdict
from helmetlib.evaluation.uncertainty import bootstrap_intervals, choose_threshold, f1_difference

SELECTION_RULE = (
    "the deployed model (seed ensemble or single repeat) with the highest validation F1; every model validation "
    "cannot tell apart from it (F1 within 0.001, or a paired bootstrap 95 % interval of the F1 difference that "
    "includes 0) competes on the validation Brier score, a proper scoring rule that rewards probabilities meaning "
    "what they say: the lowest wins, then fewer parameters. Models whose every repeat collapsed are never selected"
)
TIE = 1e-3


def mean_f1(result: ModelResult) -> float:
    """Mean validation F1 over the repeats (collapsed repeats included), quoted beside the deployed model's."""
    return float(np.mean([repeat.validation.f1 for repeat in result.repeats]))


def f1_spread(result: ModelResult) -> str:
    """Mean validation F1 and what it is the mean of: "0.892 ± 0.026 over 3 repeats", "0.822 (deterministic: one
    fit)", "0.851 (one repeat)". A single fit has no spread to quote."""
    spec = MODEL_SPECS.get(result.name)  # None for a name this helmetlib does not know (a record from elsewhere)
    if spec is not None and spec.deterministic:
        return f"{mean_f1(result):.3f} (deterministic: one fit)"
    if len(result.repeats) == 1:
        return f"{mean_f1(result):.3f} (one repeat)"
    return f"{mean_f1(result):.3f} ± {result.summary['f1'].std:.3f} over {len(result.repeats)} repeats"


def excluded_models(results: dict[str, ModelResult]) -> dict[str, str]:
    """Models that can never be selected, with the reason."""
    return {
        name: f"collapsed in all {len(result.repeats)} repeats (predictions (nearly) one class)"
        for name, result in results.items()
        if result.collapsed
    }


def select_model(
    results: dict[str, ModelResult],
    validation_labels: np.ndarray | None = None,
    probabilities: dict[str, np.ndarray] | None = None,
    *,
    threshold: float = 0.5,
    n_resamples: int = 2000,
) -> str | None:
    """The model chosen by `SELECTION_RULE`, or None when every model collapsed.

    `probabilities` {name: (n,)} are the deployed models' on the same validation images `validation_labels` (n,),
    for the paired bootstrap; without them (repeats on different splits) only F1 ties within 0.001 compete.
    """
    candidates = [name for name, result in results.items() if not result.collapsed]
    if not candidates:
        return None
    f1 = {name: results[name].validation.f1 for name in candidates}
    brier = {name: results[name].validation_brier for name in candidates}
    unscored = [name for name, value in brier.items() if value is None]
    if unscored:
        raise ValueError(f"no validation Brier score in the results of {', '.join(unscored)}: retrain them")
    leader = max(candidates, key=lambda name: (f1[name], -brier[name]))

    def indistinguishable(name: str) -> bool:
        if f1[name] >= f1[leader] - TIE:
            return True
        if probabilities is None:
            return False
        difference = f1_difference(
            validation_labels, probabilities[leader], probabilities[name], threshold=threshold, n_resamples=n_resamples
        )
        return difference.low <= 0

    contenders = [name for name in candidates if indistinguishable(name)]
    return min(contenders, key=lambda name: (brier[name], results[name].parameters))


def runner_up(
    results: dict[str, ModelResult],
    selected: str | None,
    validation_labels: np.ndarray | None = None,
    probabilities: dict[str, np.ndarray] | None = None,
    **options,
) -> str | None:
    """The best of the other models by the same rule, or None when there is none."""
    others = {name: result for name, result in results.items() if name != selected}
    return select_model(others, validation_labels, probabilities, **options) if others and selected else None


def verdict(
    selected: str,
    second: str | None,
    validation_labels: np.ndarray,
    probabilities: dict[str, np.ndarray],
    results: dict[str, ModelResult],
    *,
    threshold: float,
    n_resamples: int = 2000,
) -> Verdict:
    """Does validation separate `selected` from `second`? Paired bootstrap of their deployed models' difference.

    Separated ("better") when the 95 % interval of the F1 difference excludes 0; otherwise "cannot tell them
    apart". The repeats' spread of mean F1 is quoted alongside.
    """
    if second is None:
        return Verdict(runner_up=None, difference={}, separated=False, text="Only one model could be compared.")
    intervals = bootstrap_intervals(
        validation_labels,
        probabilities[selected],
        reference_probabilities=probabilities[second],
        threshold=threshold,
        n_resamples=n_resamples,
    )
    difference = {key.removesuffix("_difference"): value for key, value in intervals.items() if "_difference" in key}
    f1 = difference["f1"]
    separated = f1.low > 0
    spread = ", ".join(f"{name} {f1_spread(results[name])}" for name in (selected, second))
    words = "is better than" if separated else "cannot be told apart from"
    text = (
        f"{selected} {words} {second} on validation: F1 difference {f1.text()} "
        f"(paired bootstrap, {len(validation_labels)} images). Mean validation F1: {spread}."
    )
    return Verdict(runner_up=second, difference=difference, separated=separated, text=text)


def threshold_by_rule(
    validation_labels: np.ndarray,
    probabilities: np.ndarray,
    calibration: Calibration | None = None,
    *,
    rule: str,
    threshold: float,
    target_bare_head_recall: float,
) -> DeployThreshold:
    """The threshold to write into the selected model's card, by the threshold rule `rule`, on the calibrated
    validation `probabilities` (n,) (`calibration`, None: the model's own output); `threshold` is the study's,
    `target_bare_head_recall` the `bare_head_recall` rule's target.

    `fixed` keeps the study's decisions: its threshold on the model's own output, carried onto the calibrated
    scale (the calibration is monotone); `calibrated` puts it on the calibrated probability (0.5: helmet when more
    likely than not); the rules chosen on validation work on the calibrated probabilities.
    """
    scale = "calibrated P(helmet)" if calibration else "P(helmet)"
    if rule == "calibrated":
        return DeployThreshold(
            value=threshold,
            rule="calibrated",
            description=f"the study's threshold {threshold:g} on {scale}",
        )
    if rule == "fixed":
        if calibration is None:
            value, where = threshold, ""
        else:
            value = float(calibration.apply(np.array([threshold]))[0])
            where = f" on the model's output, {value:.3f} in calibrated P(helmet)"
        return DeployThreshold(
            value=value, rule="fixed", description=f"the study's fixed threshold {threshold:g}{where}"
        )
    if rule == "max_f1":
        value = choose_threshold(validation_labels, probabilities)
        description = f"chosen on validation: the highest weighted F1 ({len(validation_labels)} images, {scale})"
    else:
        value = choose_threshold(validation_labels, probabilities, target_bare_head_recall=target_bare_head_recall)
        description = (
            f"chosen on validation: the lowest threshold that catches {target_bare_head_recall:.0%} of bare "
            f"heads ({len(validation_labels)} images, {scale})"
        )
    return DeployThreshold(value=value, rule=rule, description=description)

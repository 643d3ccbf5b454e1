"""The selection rule over repeated results, the runner-up verdict, the threshold to deploy and the run's warnings.

Selection looks at train and validation only; the test part is scored once, for the selected model, afterwards.
"""

from __future__ import annotations

import numpy as np

from helmetlib.runs import Audit, DeployThreshold, ModelResult, RunConfig, Selection, Verdict
from helmetlib.uncertainty import bootstrap_intervals, choose_threshold

SELECTION_RULE = (
    "highest mean validation F1 over the repeats (models whose every repeat collapsed are never selected); "
    "ties (within 0.001) go to the smaller train-validation F1 gap, then to fewer parameters"
)
TIE = 1e-3


def mean_f1(result: ModelResult) -> float:
    """Mean validation F1 over the repeats (collapsed repeats included: an unstable architecture pays for it)."""
    return float(np.mean([repeat.validation.f1 for repeat in result.repeats]))


def train_gap(result: ModelResult) -> float:
    """Mean |train F1 - validation F1| over the repeats."""
    return float(np.mean([abs(repeat.train.f1 - repeat.validation.f1) for repeat in result.repeats]))


def excluded_models(results: dict[str, ModelResult]) -> dict[str, str]:
    """Models that can never be selected, with the reason."""
    return {
        name: f"collapsed in all {len(result.repeats)} repeats (predictions (nearly) one class)"
        for name, result in results.items()
        if result.collapsed
    }


def select_model(results: dict[str, ModelResult]) -> str | None:
    """The model chosen by `SELECTION_RULE`, or None when every model collapsed."""
    candidates = {name: result for name, result in results.items() if not result.collapsed}
    if not candidates:
        return None
    best = max(mean_f1(result) for result in candidates.values())
    tied = [name for name, result in candidates.items() if mean_f1(result) >= best - TIE]
    return min(tied, key=lambda name: (round(train_gap(candidates[name]), 3), candidates[name].parameters))


def runner_up(results: dict[str, ModelResult], selected: str | None) -> str | None:
    """The best of the other models by the same rule, or None when there is none."""
    others = {name: result for name, result in results.items() if name != selected}
    return select_model(others) if others and selected else None


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
    spread = ", ".join(
        f"{name} {mean_f1(results[name]):.3f} ± {results[name].summary['f1'].std:.3f} over "
        f"{len(results[name].repeats)} repeat(s)"
        for name in (selected, second)
    )
    words = "is better than" if separated else "cannot be told apart from"
    text = (
        f"{selected} {words} {second} on validation: F1 difference {f1.text()} "
        f"(paired bootstrap, {len(validation_labels)} images). Mean validation F1: {spread}."
    )
    return Verdict(runner_up=second, difference=difference, separated=separated, text=text)


def deploy_threshold(config: RunConfig, validation_labels: np.ndarray, probabilities: np.ndarray) -> DeployThreshold:
    """The threshold to write into the selected model's card, by the run's `threshold_rule`."""
    if config.threshold_rule == "fixed":
        return DeployThreshold(
            value=config.threshold,
            rule="fixed",
            description=f"the study's fixed threshold {config.threshold:g}",
        )
    if config.threshold_rule == "max_f1":
        value = choose_threshold(validation_labels, probabilities)
        description = f"chosen on validation: the highest weighted F1 ({len(validation_labels)} images)"
    else:
        value = choose_threshold(
            validation_labels, probabilities, target_bare_head_recall=config.target_bare_head_recall
        )
        description = (
            f"chosen on validation: the lowest threshold that catches {config.target_bare_head_recall:.0%} of bare "
            f"heads ({len(validation_labels)} images)"
        )
    return DeployThreshold(value=value, rule=config.threshold_rule, description=description)


def run_warnings(
    config: RunConfig, results: dict[str, ModelResult], selection: Selection | None, audit: Audit | None
) -> list[tuple[str, str]]:
    """What a reader must know before trusting the decision, most serious first: (level, text) with level
    `danger`, `warning` or `info` (the banners' styles)."""
    warnings = []
    if selection is not None and selection.selected_model is None and results:
        warnings.append(("danger", "No model selected: every model collapsed to (nearly) one class. Deploy nothing."))
    if config.weights.banner() and any(result.weights for result in results.values()):
        warnings.append((config.weights.banner_level, config.weights.banner()))
    for name, result in results.items():
        collapsed = [repeat for repeat in result.repeats if repeat.collapsed]
        restarts = sum(len(repeat.restarts) for repeat in result.repeats)
        if result.collapsed:
            warnings.append(("danger", f"{name} collapsed in every repeat (one-class predictions): never selected."))
        elif collapsed:
            warnings.append(
                (
                    "warning",
                    f"{name}: {len(collapsed)} of {len(result.repeats)} repeats collapsed (one-class predictions); "
                    "the deployed model is a non-collapsed one.",
                )
            )
        if restarts:
            warnings.append(
                ("info", f"{name}: {restarts} training restart(s) after a collapse (dead units); see its report.")
            )
    if selection is not None and selection.missing:
        warnings.append(("warning", f"Not compared (no results in this run folder): {', '.join(selection.missing)}."))
    if audit is not None and audit.leakage:
        warnings.append(("danger", audit.verdict))
    if config.demo:
        warnings.append(("info", config.demo_note))
    return warnings

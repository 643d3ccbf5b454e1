"""The words and tables the notebooks show: conclusions first, then the numbers behind them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helmetlib.data import CLASS_NAMES, Dataset
from helmetlib.results import Audit, ModelResult
from helmetlib.specs import get_spec
from helmetlib.splits import Split

SHORTCUT_EFFECT = 0.5  # |standardised mean difference| between the classes above which a statistic is a shortcut


def data_conclusion(dataset: Dataset, parts: Split, audit: Audit, statistics: pd.DataFrame, source: str) -> str:
    """The EDA's conclusion in a few Markdown lines: validity, balance, split, leakage, shortcuts."""
    counts = dataset.class_counts
    sizes = parts.sizes()
    height, width = dataset.images.shape[1:3]
    lines = [
        f"- **Valid:** {len(dataset)} images of {height}×{width} RGB from `{source}` (content hash "
        f"`{dataset.content_hash}`).",
        f"- **Classes:** {counts[0]} {CLASS_NAMES[0]} (label 0, the violation) and {counts[1]} {CLASS_NAMES[1]}.",
        f"- **Split ({parts.kind}, random state {parts.random_state}):** train {sizes['train']}, validation "
        f"{sizes['validation']}, test {sizes['test']}; the test part is looked at once, in the comparison.",
        f"- **Leakage:** {audit.verdict}",
    ]
    if audit.shared_groups is not None:
        lines.append(
            f"- **Related images:** {audit.shared_groups} groups (e.g. source photos) straddle the random split; "
            "scores on it are optimistic (see the grouped split below)."
        )
    shortcuts = shortcut_statistics(statistics)
    if shortcuts:
        lines.append(
            "- **Possible shortcuts:** "
            + ", ".join(f"{name} (standardised difference {effect:+.2f})" for name, effect in shortcuts.items())
            + " differ between the classes; a model may learn them instead of the helmet."
        )
    else:
        lines.append("- **Shortcuts:** brightness, contrast and sharpness are alike in both classes.")
    return "\n".join(lines)


def shortcut_statistics(statistics: pd.DataFrame) -> dict[str, float]:
    """Image statistics whose class means differ by more than `SHORTCUT_EFFECT` pooled standard deviations
    (helmet minus bare head)."""
    found = {}
    for column in ("brightness", "contrast", "sharpness"):
        bare = statistics.loc[statistics["class"] == CLASS_NAMES[0], column]
        helmet = statistics.loc[statistics["class"] == CLASS_NAMES[1], column]
        pooled = np.sqrt((bare.var() + helmet.var()) / 2)
        effect = float((helmet.mean() - bare.mean()) / pooled) if pooled > 0 else 0.0
        if abs(effect) > SHORTCUT_EFFECT:
            found[column] = effect
    return found


def model_conclusion(result: ModelResult) -> str:
    """A model report's first lines: collapse, spread over seeds, the deployed model, fit, bare heads."""
    repeats = result.repeats
    summary = result.summary
    seeds = ", ".join(str(repeat.seed) for repeat in repeats)
    lines = []
    if result.collapsed:
        lines.append(f"**COLLAPSED: every repeat of {result.name} predicts (nearly) one class.** It is never selected.")
    collapsed = [repeat.seed for repeat in repeats if repeat.collapsed]
    if collapsed and not result.collapsed:
        lines.append(f"**{len(collapsed)} of {len(repeats)} repeats collapsed** (seeds {collapsed}); not deployed.")
    restarts = [(repeat.seed, restart) for repeat in repeats for restart in repeat.restarts]
    if restarts:
        lines.append(
            f"**{len(restarts)} {'restart' if len(restarts) == 1 else 'restarts'} after a collapse:** "
            + "; ".join(f"seed {seed} died at epoch {r.epoch} ({r.reason}), retried" for seed, r in restarts)
            + "."
        )
    accuracy, f1, bare = summary["accuracy"], summary["f1"], summary["bare_head_recall"]
    if get_spec(result.name).deterministic:
        lines.append(
            f"**{result.name}** is deterministic (its seed changes nothing): one fit per split, not repeats. "
            f"Validation accuracy {accuracy.mean:.3f}, F1 {f1.mean:.3f}, bare-head recall {bare.mean:.3f}."
        )
    elif len(repeats) == 1:
        lines.append(
            f"**{result.name}**, one repeat (seed {seeds}): validation accuracy {accuracy.mean:.3f}, F1 "
            f"{f1.mean:.3f}, bare-head recall {bare.mean:.3f}; `--repeats` 3 or more shows how much the seed matters."
        )
    else:
        lines.append(
            f"**{result.name}** over {len(repeats)} repeats (seeds {seeds}): validation accuracy "
            f"{accuracy.mean:.3f} ± {accuracy.std:.3f} (range {accuracy.min:.3f}–{accuracy.max:.3f}), "
            f"F1 {f1.mean:.3f} ± {f1.std:.3f}, bare-head recall {bare.mean:.3f} ± {bare.std:.3f}."
        )
    validation, train = result.validation, result.train
    gap = train.accuracy - validation.accuracy
    fit = (
        "it overfits (train accuracy well above validation)"
        if gap > 0.1
        else "it underfits or has not converged (validation accuracy below 70 %)"
        if validation.accuracy < 0.7
        else "it generalises to validation about as well as it fits the training set"
    )
    problem = result.deployed_health.problem if result.deployed_health else None
    if problem:
        lines.append(f"**Unhealthy:** the deployed model {problem}.")
    lines.append(
        f"Deployed: **{result.deployed}**{f' ({result.deployed_reason})' if result.deployed_reason else ''}: "
        f"train accuracy {train.accuracy:.3f}, "
        f"validation {validation.accuracy:.3f} "
        f"(F1 {validation.f1:.3f}); {fit}. It misses {1 - validation.bare_head_recall:.1%} of the bare heads in "
        "validation; a missed bare head is the costly error."
    )
    return "\n\n".join(lines)


def repeats_table(result: ModelResult) -> pd.DataFrame:
    """One row per repeat: seed, seed used after restarts, validation scores, epochs, collapse, restarts."""
    return pd.DataFrame(
        [
            {
                "seed": repeat.seed,
                "seed used": repeat.seed_used,
                "validation accuracy": round(repeat.validation.accuracy, 3),
                "validation F1": round(repeat.validation.f1, 3),
                "bare-head recall": round(repeat.validation.bare_head_recall, 3),
                "epochs": repeat.epochs_run,
                "collapsed": "yes" if repeat.collapsed else "no",
                "restarts": len(repeat.restarts),
                "dead ReLU units": _dead_units(repeat.health),
                "identical outputs": f"{repeat.health.identical_share:.0%}" if repeat.health else "",
                "seconds": round(repeat.seconds, 1),
            }
            for repeat in result.repeats
        ]
    ).set_index("seed")


def _dead_units(health) -> str:
    """'3/4 bottleneck (no helmet 4, helmet 3)' per ReLU layer feeding the output; '' when none or unknown."""
    if health is None:
        return ""
    return "; ".join(
        f"{layer.dead}/{layer.units} {layer.layer} ("
        + ", ".join(f"{name} {count}" for name, count in layer.dead_by_class.items())
        + ")"
        for layer in health.layers
    )


def architecture_table(model) -> pd.DataFrame:
    """One row per layer (the head's layers expanded; the frozen backbone as one row): kind, parameters."""
    from helmetlib.models import HEAD_LAYER

    def row(layer, name: str) -> dict:
        return {
            "layer": name,
            "kind": layer.__class__.__name__,
            "parameters": int(layer.count_params()),
            "trainable": bool(layer.trainable),
        }

    rows = []
    for layer in model.layers:
        if layer.__class__.__name__ == "InputLayer":
            continue
        rows.append(row(layer, layer.name))
        if layer.name == HEAD_LAYER:
            rows += [
                row(sub, f"{HEAD_LAYER}/{sub.name}") for sub in layer.layers if sub.__class__.__name__ != "InputLayer"
            ]
    return pd.DataFrame(rows).set_index("layer")


def training_table(results: dict[str, ModelResult]) -> pd.DataFrame:
    """How each model was trained: what it was trained on, weights, precision, repeats, epochs, size, time, notes."""
    return pd.DataFrame(
        {
            name: {
                "trained on": result.trained_on,
                "weights": result.weights.used if result.weights else "-",
                "precision": result.precision + (f", views {result.view_precision}" if result.view_precision else ""),
                "repeats": len(result.repeats),
                "epochs": result.epochs_run,
                "parameters": result.parameters,
                "trainable": result.trainable_parameters,
                "seconds": round(result.train_seconds, 1),
                "notes": "; ".join(result.notes),
            }
            for name, result in results.items()
        }
    ).T


def comparison_tables(results: dict[str, ModelResult]) -> dict[str, pd.DataFrame]:
    """Train, validation and train-minus-validation tables of the deployed models (models as rows)."""
    from helmetlib.metrics import performance_table

    tables = {
        part: performance_table({name: getattr(result, part) for name, result in results.items()})
        for part in ("train", "validation")
    }
    tables["difference"] = tables["train"] - tables["validation"]
    return {part: table.round(3) for part, table in tables.items()}


def spread_table(results: dict[str, ModelResult]) -> pd.DataFrame:
    """Mean ± sd and range of validation F1 and accuracy over the repeats, per model ("—" for a single fit)."""
    rows = {}
    for name, result in results.items():
        f1, accuracy = result.summary["f1"], result.summary["accuracy"]
        spread = len(result.repeats) > 1  # a single fit has no sd or range
        rows[name] = {
            "repeats": len(result.repeats),
            "F1 mean": f"{f1.mean:.3f}",
            "F1 sd": f"{f1.std:.3f}" if spread else "—",
            "F1 min": f"{f1.min:.3f}" if spread else "—",
            "F1 max": f"{f1.max:.3f}" if spread else "—",
            "accuracy mean": f"{accuracy.mean:.3f}",
            "collapsed repeats": sum(repeat.collapsed for repeat in result.repeats),
            "deployed": result.deployed,
        }
    return pd.DataFrame(rows).T  # scores as text with 3 decimals: "0.800", never "0.8"


SCORE_ROWS = {
    "train": "train scores",
    "validation": "validation scores",
    "test": "test scores",
    "test_at_threshold": "test scores at the deployed threshold",
}


def card_table(folder, name: str) -> pd.DataFrame:
    """The deployed model's card as a short table: files, input, threshold, training data, test scores."""
    from helmetlib.cards import read_card

    card = read_card(folder.model_file(name))
    rows = {
        "files": ", ".join(f"{ref.file} (sha256 {ref.sha256[:12]})" for ref in card.files.values()),
        "input": f"{card.input.height}x{card.input.width} RGB, {card.input.normalization_description}",
        "threshold": f"{card.threshold.value:.3f}: {card.threshold.description}",
        "output": card.output,
        "training data": f"{card.training_data.path} (hash {card.training_data.content_hash}, "
        f"{card.training_data.images} images)",
        "weights": card.weights.describe() if card.weights else "none (trained end to end)",
        "deployed": f"{card.training.deployed} (seeds {', '.join(map(str, card.training.seeds))})",
    }
    for part, scores in card.metrics.items():
        rows[SCORE_ROWS.get(part, f"{part} scores")] = (
            f"accuracy {scores.accuracy:.3f}, F1 {scores.f1:.3f}, bare-head recall {scores.bare_head_recall:.3f} "
            f"(threshold {scores.threshold:.3f}, {scores.n} images)"
        )
    return pd.DataFrame({"": rows})


def calibration_summary(selection) -> str:
    """The selected model's validation Brier score and ECE, what its calibration changed, the deployed threshold."""
    before = (
        f"Model output: Brier score {selection.validation_brier:.3f}, expected calibration error "
        f"{selection.validation_ece:.3f}."
    )
    calibrated = (
        f"Calibrated: {selection.calibration.text()}."
        if selection.calibration
        else "Not calibrated: its output does not rank the classes (constant, or the wrong way round)."
        if selection.deployed == selection.selected_model
        else "Calibrated inside: each member of the ensemble by its own Platt scaling, fitted on validation."
    )
    threshold = selection.threshold
    return f"{before} {calibrated} Threshold to deploy: **{threshold.value:.3f}** ({threshold.description})."


def interval_table(selection) -> pd.DataFrame:
    """The selected model's test scores with 95 % intervals, at the study's and at the deployed threshold."""
    columns = {f"at {selection.test.threshold:g}": selection.test_intervals}
    if selection.threshold.value != selection.test.threshold:
        columns[f"at the deployed {selection.threshold.value:.3f}"] = selection.test_intervals_at_threshold
    return pd.DataFrame(
        {
            label: {
                metric.replace("_", " "): f"{interval.value:.3f} [{interval.low:.3f}–{interval.high:.3f}]"
                for metric, interval in intervals.items()
            }
            for label, intervals in columns.items()
        }
    )

"""The words and tables the notebooks show: conclusions first, then the numbers behind them."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pandas as pd

from helmetlib.core.specs import get_spec
from helmetlib.data.dataset import CLASS_NAMES, Dataset
from helmetlib.data.splits import Split
from helmetlib.evaluation.metrics import METRIC_LABELS
from helmetlib.evaluation.results import Audit, ModelResult, Selection

if TYPE_CHECKING:
    from helmetlib.run.config import RunConfig


def data_conclusion(dataset: Dataset, parts: Split, audit, source: str) -> str:
    """The EDA's conclusion in a few Markdown lines: validity, balance, split, leakage, related images, shortcuts;
    each claim decided by the rule stated with its numbers (`eda.ClassDifference`, `eda.SplitCheck`)."""
    counts = dataset.class_counts
    sizes = parts.sizes()
    height, width = dataset.images.shape[1:3]
    record = audit.record
    lines = [
        f"- **Valid:** {len(dataset):,} images of {height}×{width} RGB from `{source}` (content hash "
        f"`{dataset.content_hash}`).",
        f"- **Classes:** {counts[0]:,} {CLASS_NAMES[0]} (label 0, the violation) and {counts[1]:,} {CLASS_NAMES[1]}.",
        f"- **Split ({parts.kind}, random state {parts.random_state}):** train {sizes['train']}, validation "
        f"{sizes['validation']}, test {sizes['test']}; the test part is looked at once, in the comparison.",
        f"- **Leakage:** {record.verdict}",
    ]
    if audit.split_check is not None:
        check = audit.split_check
        lines.append(
            f"- **Related images:** {record.shared_groups} of {check.groups} groups (e.g. source photos) straddle the "
            f"random split; {check.verdict} ({check.model} trained on each split, see below)."
        )
    verdicts = {difference.statistic: difference for difference in audit.differences}
    differing = [name for name, difference in verdicts.items() if difference.verdict != "alike"]
    described = ", ".join(
        f"{name} {verdicts[name].verdict} (standardised difference {verdicts[name].effect.text(2)})"
        for name in verdicts
    )
    if any(verdicts[name].verdict == "differ" for name in differing):
        lines.append(f"- **Possible shortcuts:** {described}; a model may learn what differs instead of the helmet.")
    else:
        lines.append(f"- **Image statistics:** {described}.")
    return "\n".join(lines)


def model_conclusion(result: ModelResult) -> str:
    """A model report's first lines: collapse, left-out and restarted repeats, spread over seeds, the deployed
    model, fit, bare heads."""
    lines = _repeat_warnings(result)
    lines.append(_spread_sentence(result))
    problem = result.deployed_health.problem if result.deployed_health else None
    if problem:
        lines.append(f"**Unhealthy:** the deployed model {problem}.")
    lines.append(_deployed_sentence(result))
    return "\n\n".join(lines)


def _repeat_warnings(result: ModelResult) -> list[str]:
    """What went wrong with the repeats: every one collapsed, some collapsed, some left out, restarts."""
    repeats, lines = result.repeats, []
    if result.collapsed:
        lines.append(f"**COLLAPSED: every repeat of {result.name} predicts (nearly) one class.** It is never selected.")
    collapsed = [repeat.seed for repeat in repeats if repeat.collapsed]
    if collapsed and not result.collapsed:
        lines.append(f"**{len(collapsed)} of {len(repeats)} repeats collapsed** (seeds {collapsed}); not deployed.")
    unhealthy = {seed: why for seed, why in result.left_out.items() if why.startswith("unhealthy")}
    if unhealthy and not result.unhealthy:
        lines.append(
            "**Left out of the seed ensemble:** "
            + "; ".join(f"seed {seed} ({why.split(': it cannot')[0]})" for seed, why in unhealthy.items())
            + "."
        )
    restarts = [(repeat.seed, restart) for repeat in repeats for restart in repeat.restarts]
    if restarts:
        lines.append(
            f"**{len(restarts)} {'restart' if len(restarts) == 1 else 'restarts'}:** "
            + "; ".join(
                f"the repeat of seed {seed}: its training with seed {r.seed} was stopped after epoch {r.epoch} "
                f"({r.reason}) and trained again with the next restart seed"
                for seed, r in restarts
            )
            + "."
        )
    return lines


def _spread_sentence(result: ModelResult) -> str:
    """The model's validation scores over its repeats (or its one fit)."""
    repeats, summary = result.repeats, result.summary
    seeds = ", ".join(str(repeat.seed) for repeat in repeats)
    accuracy, f1, bare = summary["accuracy"], summary["f1"], summary["bare_head_recall"]
    if get_spec(result.name).deterministic:
        return (
            f"**{result.name}** is deterministic (its seed changes nothing): one fit per split, not repeats. "
            f"Validation accuracy {accuracy.mean:.3f}, F1 {f1.mean:.3f}, bare-head recall {bare.mean:.3f}."
        )
    if len(repeats) == 1:
        return (
            f"**{result.name}**, one repeat (seed {seeds}): validation accuracy {accuracy.mean:.3f}, F1 "
            f"{f1.mean:.3f}, bare-head recall {bare.mean:.3f}; `--repeats` 3 or more shows how much the seed matters."
        )
    return (
        f"**{result.name}** over {len(repeats)} repeats (seeds {seeds}): validation accuracy "
        f"{accuracy.mean:.3f} ± {accuracy.std:.3f} (range {accuracy.min:.3f} to {accuracy.max:.3f}), "
        f"F1 {f1.mean:.3f} ± {f1.std:.3f}, bare-head recall {bare.mean:.3f} ± {bare.std:.3f}."
    )


def _deployed_sentence(result: ModelResult) -> str:
    """What is deployed for the architecture, how it fits, and the bare heads it misses (or the one class it
    answers)."""
    validation, train = result.validation, result.train
    deployed = f"Deployed: **{result.deployed}**{f' ({result.deployed_reason})' if result.deployed_reason else ''}"
    if result.collapsed:
        return f"{deployed}: it answers one class, {predicted_classes(validation)}; never selected."
    gap = train.accuracy - validation.accuracy
    fit = (
        "it overfits (train accuracy well above validation)"
        if gap > 0.1
        else "it underfits or has not converged (validation accuracy below 70 %)"
        if validation.accuracy < 0.7
        else "it generalises to validation about as well as it fits the training set"
    )
    return (
        f"{deployed}: train accuracy {train.accuracy:.3f}, validation {validation.accuracy:.3f} "
        f"(F1 {validation.f1:.3f}); {fit}. It misses {1 - validation.bare_head_recall:.1%} of the bare heads in "
        "validation; a missed bare head is the costly error."
    )


def predicted_classes(scores) -> str:
    """How many of the images behind `scores` are called each class ("89 of 90 validation images called helmet")."""
    bare, helmet = scores.per_class[CLASS_NAMES[0]], scores.per_class[CLASS_NAMES[1]]
    called_bare = round(bare.support * bare.recall + helmet.support * (1 - helmet.recall))
    called, count = (
        (CLASS_NAMES[0], called_bare) if 2 * called_bare >= scores.n else (CLASS_NAMES[1], scores.n - called_bare)
    )
    return f"{count} of {scores.n} validation images called {called}"


def repeats_table(result: ModelResult) -> pd.DataFrame:
    """One row per repeat (the repeat's seed): validation scores (3 decimals), epochs, collapse, restarts (with the
    restart seed the kept training ran with), health, in the ensemble or left out."""
    return pd.DataFrame(
        [
            {
                "seed": repeat.seed,
                "validation accuracy": f"{repeat.validation.accuracy:.3f}",
                "validation F1": f"{repeat.validation.f1:.3f}",
                "bare-head recall": f"{repeat.validation.bare_head_recall:.3f}",
                "epochs": repeat.epochs_run,
                "collapsed": "yes" if repeat.collapsed else "no",
                "restarts": f"{len(repeat.restarts)} (kept: restart seed {repeat.seed_used})"
                if repeat.restarts
                else "0",
                "dead ReLU units": _dead_units(repeat.health),
                "identical outputs": f"{repeat.health.identical_share:.0%}" if repeat.health else "",
                "deployed": "left out"
                if str(repeat.seed) in result.left_out
                else ("yes" if repeat.seed in result.deployed_seeds else "no"),
                "seconds": round(repeat.seconds, 1),
            }
            for repeat in result.repeats
        ]
    ).set_index("seed")


def _restarts(repeat) -> str:
    """'0', or '2 (kept: restart seed 200818)'."""
    return f"{len(repeat.restarts)} (kept: restart seed {repeat.seed_used})" if repeat.restarts else "0"


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
    from helmetlib.models.builders import HEAD_LAYER

    def row(layer, name: str) -> dict:
        return {
            "layer": name,
            "kind": layer.__class__.__name__,
            "parameters": f"{int(layer.count_params()):,}",
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
                "parameters": parameter_count(result.parameters, len(result.deployed_seeds)),
                "trainable": parameter_count(result.trainable_parameters, len(result.deployed_seeds)),
                "seconds": round(result.train_seconds, 1),
                "notes": "; ".join(trainer_notes(result)),
            }
            for name, result in results.items()
        }
    ).T


def parameter_count(per_member: int, members: int) -> str:
    """'413,257', or '413,257 per member × 3' for a seed ensemble."""
    return f"{per_member:,}" + (f" per member × {members}" if members > 1 else "")


def training_notes(result: ModelResult) -> str:
    """How a model was trained, as Markdown bullets in words: what it was trained on, then the trainer's notes."""
    return "\n".join(f"- {note}" for note in [f"trained on {result.trained_on}", *trainer_notes(result)])


def trainer_notes(result: ModelResult) -> list[str]:
    """How the model's trainer ran (`TrainingDetails`), in a few sentences for the pages."""
    details, notes = result.details, []
    if details.family == "cnn":
        notes.append(
            "healthy start: bottleneck units centred on the training images (each fires on half of them) and the "
            "prediction layer's kernel at zero, so the Dense(4, relu) bottleneck stays alive; architecture, optimizer "
            "and learning rate are the study's (the faithful mode starts as the study did)"
            if details.healthy_start
            else "the study's start: Keras' default initialisation (faithful mode)"
        )
    if details.family != "cnn" and not details.faithful:
        notes.append(
            f"head trained on frozen VGG16 features computed once in {result.precision} "
            f"(cache: {details.cache_reused} reused, {details.cache_computed} computed)"
        )
    if details.family == "augmented_views":
        notes.append(
            "augmentation applied on the fly to every batch (study-faithful)"
            if details.faithful
            else f"augmentation approximated by {details.augmented_views} pre-drawn augmented views per training "
            f"image (features in {result.view_precision}, drawn from seed {details.views_seed}), one drawn at random "
            "per image and epoch (fast mode; the faithful mode augments every batch on the fly)"
        )
    if details.early_stopping_patience:
        weights = ", ".join(f"{label}: {weight:.2f}" for label, weight in (details.class_weights or {}).items())
        notes.append(
            f"early stopping on validation loss (patience {details.early_stopping_patience}, best weights kept), "
            "learning rate halved on plateau" + (f", class weights {weights}" if weights else "")
        )
    if details.logistic_chosen:
        grid, chosen = (
            ", ".join(f"{c:g}" for c in values) for values in (details.logistic_grid, details.logistic_chosen)
        )
        notes.append(
            "logistic head fitted by L-BFGS, L2 penalty C chosen by 5-fold cross-validation on the training part "
            f"(grid {grid}; chosen {chosen}); validation stays unseen"
        )
    return notes + list(details.cache_warnings)


def comparison_tables(results: dict[str, ModelResult]) -> dict[str, pd.DataFrame]:
    """Train, validation and train-minus-validation tables of the deployed models (models as rows)."""
    from helmetlib.evaluation.metrics import performance_table

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
    "test": "test scores (the deployed decision)",
    "test_at_study_threshold": "test scores at the study's threshold on the model's output",
}


def card_table(folder, name: str) -> pd.DataFrame:
    """The deployed model's card as a short table: files, input, threshold, training data, test scores."""
    from helmetlib.deploy.cards import read_card

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
    """The deployed model's test scores with 95 % intervals: the deployed decision, and the study's own decision
    (its threshold on the model's output) when the deployed threshold decides otherwise."""
    columns = {f"deployed: {selection.threshold.value:.3f}": selection.test_intervals}
    if selection.threshold.rule != "fixed":
        study = selection.test_at_study_threshold.threshold
        columns[f"the study's {study:g} on the model's output"] = selection.test_intervals_at_study_threshold
    return pd.DataFrame(
        {
            label: {
                METRIC_LABELS.get(metric, metric.replace("_", " ")): interval.text()
                for metric, interval in intervals.items()
            }
            for label, intervals in columns.items()
        }
    )


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def run_warnings(
    config: RunConfig, results: dict[str, ModelResult], selection: Selection | None, audit: Audit | None
) -> list[tuple[str, str]]:
    """What a reader must know before trusting the decision, most serious first: (level, text) with level
    `danger`, `warning` or `info` (the banners' styles)."""
    warnings = []
    if selection is not None and selection.selected_model is None and results:
        warnings.append(("danger", "Nothing deployed: every model collapsed to (nearly) one class."))
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
            kinds = Counter(restart.reason.split(":")[0] for repeat in result.repeats for restart in repeat.restarts)
            why = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
            warnings.append(
                ("info", f"{name}: {restarts} training {_plural(restarts, 'restart')} ({why}); see its report.")
            )
        problem = result.deployed_health.problem if result.deployed_health else None
        if result.unhealthy and not result.collapsed:
            warnings.append(("danger", f"{name}: no repeat is healthy; the deployed {result.deployed} {problem}."))
        elif problem and not result.collapsed:
            warnings.append(("warning", f"{name}: the deployed model ({result.deployed}) {problem}."))
        if result.left_out and not result.unhealthy and not result.collapsed:
            left = "; ".join(f"seed {seed} ({why})" for seed, why in result.left_out.items())
            warnings.append(("info", f"{name}: left out of the seed ensemble: {left}."))
    if selection is not None and selection.missing:
        warnings.append(("warning", f"Not compared (no results in this run folder): {', '.join(selection.missing)}."))
    if audit is not None and audit.leakage:
        warnings.append(("danger", audit.verdict))
    if config.demo:
        warnings.append(("info", config.demo_note))
    return warnings

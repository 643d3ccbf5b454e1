"""The three stages the notebooks narrate, as library calls: audit the data, train one model, compare and select.

Each stage computes, writes its record into the run folder and returns what the notebook shows; the notebooks
hold no logic of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helmetlib.data.dataset import Dataset, select_rows
from helmetlib.data.splits import Split, indices_digest
from helmetlib.evaluation.calibration import Calibration
from helmetlib.evaluation.ensembles import ENSEMBLE_NAME, cross_architecture
from helmetlib.evaluation.metrics import Scores, performance
from helmetlib.evaluation.results import Audit, DataInfo, DeployThreshold, ModelResult, Selection
from helmetlib.reports.notebook import NotebookRun
from helmetlib.run.config import package_versions

# ---------------------------------------------------------------------------------------------------------- the EDA


@dataclass
class DataAudit:
    """What the EDA found: image statistics and how the classes differ in them, duplicates and look-alikes across
    the split, groups on two sides with a grouped split and the random-vs-grouped check, and the verdict."""

    statistics: pd.DataFrame
    differences: list
    duplicates: pd.DataFrame
    closest: pd.DataFrame
    look_alikes: pd.DataFrame | None
    shared: pd.DataFrame | None
    grouped: Split | None
    split_check: object | None
    record: Audit


def audit_data(run: NotebookRun, dataset: Dataset, parts: Split, features: np.ndarray | None) -> DataAudit:
    """Image statistics by class, duplicate and look-alike images across the split, and with groups (e.g. the
    photos of imported crops) the groups on two sides and a reference model's scores on the random and the grouped
    split; the verdict is written to `audit.json` for the decision block."""
    from helmetlib.data.audit import (
        across_parts,
        closest_cross_split_pairs,
        embedding_neighbours,
        fingerprints,
        near_duplicate_pairs,
        verdict,
    )
    from helmetlib.reports.eda import class_differences, image_statistics

    config = run.config
    statistics = image_statistics(dataset.images, dataset.labels)
    prints = fingerprints(dataset.images)  # one read of the images serves every pixel check
    duplicates = near_duplicate_pairs(dataset.images, parts, prints=prints)
    across = across_parts(duplicates)
    look_alikes = embedding_neighbours(features, parts) if features is not None else None
    shared, grouped, check = _related_images(run, dataset) if config.groups_csv else (None, None, None)
    record = Audit(
        verdict=verdict(duplicates, look_alikes),
        leakage=bool(len(across)),
        exact_pairs_across=int(across["exact"].sum()),
        near_pairs_across=int((~across["exact"]).sum()),
        look_alike_pairs_across=None if look_alikes is None else len(look_alikes),
        shared_groups=int(shared["shared groups"].sum()) if shared is not None else None,
    )
    record.write(run.folder.audit_file)
    return DataAudit(
        statistics=statistics,
        differences=class_differences(statistics),
        duplicates=duplicates,
        closest=closest_cross_split_pairs(dataset.images, parts, n=4, prints=prints),
        look_alikes=look_alikes,
        shared=shared,
        grouped=grouped,
        split_check=check,
        record=record,
    )


def _related_images(run: NotebookRun, dataset: Dataset):
    """(groups shared by the parts of the random split, a grouped split, the reference model's `SplitCheck`)."""
    from helmetlib.data.splits import grouped_split, read_groups, shared_groups, split
    from helmetlib.reports.eda import reference_model, split_check

    config = run.config
    groups = read_groups(config.groups_csv, config.group_column, expected_rows=len(dataset))
    random = split(dataset.labels, random_state=config.split_seed)
    grouped = grouped_split(dataset.labels, groups, random_state=config.split_seed)
    check = split_check(
        dataset,
        {"random split": random, "grouped split": grouped},
        len(set(groups)),
        model_name=reference_model(config),
        weights=config.weights,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        cache_dir=config.cache_dir,
    )
    return shared_groups(random, groups), grouped, check


# ------------------------------------------------------------------------------------------------------ one model


@dataclass
class ModelOutcome:
    """An architecture's repeats, the deployed model and its saved result record, and how its card decides: the
    calibration of its P(helmet) (None: not calibrated) and the threshold, as `helmet-predict` answers."""

    repeats: list
    deployed: object
    result: ModelResult
    parts: Split
    calibration: Calibration | None
    threshold: DeployThreshold

    def answered(self, part: str) -> np.ndarray:
        """The deployed model's P(helmet) on `part` (train or validation) as `helmet-predict` answers it."""
        probabilities = self.deployed.probabilities[part]
        return self.calibration.apply(probabilities) if self.calibration else probabilities


def train_and_save(run: NotebookRun, name: str, dataset: Dataset) -> ModelOutcome:
    """Train `name` `REPEATS` times (restarting collapses), keep the seed ensemble (or the best repeat when the
    ensemble is clearly worse), and save
    the model, its card and its result record in the run folder."""
    from helmetlib.deploy.artifacts import save_model_outputs
    from helmetlib.training.repeats import train_repeats
    from helmetlib.training.seed_ensemble import choose_seed_ensemble, model_result

    config = run.config
    splits = [run.split(dataset, repeat) for repeat in range(config.repeats)] if config.resplit else run.split(dataset)
    repeats = train_repeats(
        name,
        dataset,
        splits,
        repeats=config.repeats,
        seed=config.seed,
        weights=config.weights,
        epochs=config.epochs,
        batch_size=config.batch_size,
        faithful=config.faithful,
        augmented_views=config.augmented_views,
        cache_dir=config.cache_dir,
        max_restarts=config.max_restarts,
        threshold=config.threshold,
    )
    from helmetlib.evaluation.calibration import fit_calibration

    deployed = choose_seed_ensemble(
        repeats, dataset, threshold=config.threshold, n_resamples=config.bootstrap_resamples
    )
    result = model_result(
        repeats, deployed, dataset, DataInfo.of(dataset, run.config.data_dir), threshold=config.threshold
    )
    parts = deployed.best_repeat.split
    labels, validation = dataset.labels[parts.validation], deployed.probabilities["validation"]
    calibration = fit_calibration(labels, validation)
    answered = calibration.apply(validation) if calibration else validation
    threshold = config.threshold_for(labels, answered, calibration)
    options = {"cache_dir": config.cache_dir, "versions": package_versions()}
    save_model_outputs(run.folder, result, deployed, repeats, threshold=threshold, calibration=calibration, **options)
    return ModelOutcome(repeats, deployed, result, parts, calibration=calibration, threshold=threshold)


# ----------------------------------------------------------------------------------------------- the comparison


@dataclass
class ModelComparison:
    """What the comparison decided and the numbers behind it (validation for the choice, test once)."""

    results: dict[str, ModelResult]
    selection: Selection
    validation_indices: np.ndarray
    validation_labels: np.ndarray
    validation: dict[str, np.ndarray]
    trained_here: list[str] = field(default_factory=list)
    test_labels: np.ndarray | None = None
    test_probabilities: np.ndarray | None = None
    calibration: dict | None = None
    deployed_validation: np.ndarray | None = None  # the deployed model's validation output (n,)


def compare_and_select(run: NotebookRun, dataset: Dataset) -> ModelComparison:
    """Compare the models whose results exist in the run folder (training them all when none exist), select one
    on validation, weigh the cross-architecture ensemble against it, calibrate what is deployed there (Platt),
    choose the threshold to deploy on its calibrated probability, score it once on test, write it self-contained
    (and TFLite) with its card, and save `selection.json`."""
    from helmetlib.evaluation.selection import runner_up, select_model, verdict
    from helmetlib.evaluation.uncertainty import brier_score

    config, folder = run.config, run.folder
    results, trained_here = _results_to_compare(run, dataset)
    parts = run.split(dataset)
    labels = dataset.labels[parts.validation]
    validation = {name: folder.probabilities(name)["validation"] for name in results}
    rule_options = {"threshold": config.threshold, "n_resamples": config.bootstrap_resamples}
    paired = None if config.resplit else validation  # with RESPLIT each model saw other validation images
    selected = select_model(results, labels, paired, **rule_options)
    comparison = ModelComparison(results, None, parts.validation, labels, validation, trained_here=trained_here)
    considered = _considered(results, config.models, labels)
    if selected is None:
        comparison.selection = Selection(selected_model=None, **considered)
        comparison.selection.write(folder.selection_file)
        return comparison
    second = None if config.resplit else runner_up(results, selected, labels, paired, **rule_options)
    cross_options = {**rule_options, "rule": config.cross_ensemble}
    cross = cross_architecture([selected, second], labels, validation, **cross_options) if second else None
    deployed = _selected_or_cross_ensemble(run, selected, cross, labels, validation)
    calibrated = deployed.calibration.apply if deployed.calibration else np.asarray
    threshold = config.threshold_for(labels, calibrated(deployed.validation), deployed.calibration)
    scored = _score_on_test(run, dataset, deployed.name, results[selected], parts, calibrated, threshold.value)
    export = _save_selected(run, dataset, deployed.name, list(results), parts, scored, threshold, deployed.calibration)
    comparison.selection = Selection(
        selected_model=selected,
        **considered,
        verdict=verdict(selected, second, labels, validation, results, **rule_options) if second else None,
        threshold=threshold,
        test=scored.test,
        test_intervals=scored.intervals,
        test_at_study_threshold=scored.at_study_threshold,
        test_intervals_at_study_threshold=scored.intervals_at_study_threshold,
        test_probabilities=tuple(float(p) for p in scored.probabilities),
        test_model_output=tuple(float(p) for p in scored.model_output),
        test_labels=tuple(int(v) for v in scored.labels),
        test_indices_hash=indices_digest(scored.split.test),
        validation_brier=brier_score(labels, deployed.validation),
        validation_ece=deployed.reliability["ece"],
        export=export,
        calibration=deployed.calibration,
        deployed_model=deployed.name,
        cross_ensemble=cross,
    )
    comparison.selection.write(folder.selection_file)
    comparison.test_labels, comparison.test_probabilities = scored.labels, scored.probabilities
    comparison.calibration = deployed.reliability
    comparison.deployed_validation = deployed.validation
    return comparison


@dataclass
class _Candidate:
    """What the comparison deploys: the selected model or the cross-architecture ensemble (`ENSEMBLE_NAME`), its
    validation output (n,) and the calibration applied to it (None for the ensemble: its members are calibrated
    inside)."""

    name: str
    validation: np.ndarray
    calibration: Calibration | None
    reliability: dict  # of `validation`: the reliability curve and its expected calibration error


def _selected_or_cross_ensemble(run, selected: str, cross, labels: np.ndarray, validation: dict) -> _Candidate:
    """The selected model with the calibration its card records (fitted on validation when it was trained), or the
    cross-architecture ensemble of the members with theirs, saved self-contained."""
    from helmetlib.deploy.cards import read_card
    from helmetlib.evaluation.uncertainty import reliability

    def calibration_of(name: str) -> Calibration | None:
        return read_card(run.folder.loadable_file(name)).calibration

    if cross is None or not cross.deployed:
        output = validation[selected]
        return _Candidate(selected, output, calibration_of(selected), reliability(labels, output))
    from helmetlib.deploy.artifacts import save_ensemble

    calibrations = [calibration_of(name) for name in cross.members]
    save_ensemble(run.folder, cross.members, calibrations, validation=cross.validation)
    outputs = [validation[name] for name in cross.members]
    calibrated = [c.apply(p) if c else p for p, c in zip(outputs, calibrations, strict=True)]
    averaged = np.mean(calibrated, axis=0)
    return _Candidate(ENSEMBLE_NAME, averaged, None, reliability(labels, averaged))


def _considered(results: dict[str, ModelResult], models: tuple[str, ...], validation_labels: np.ndarray) -> dict:
    """What the selection looked at: the rule, the candidates, those excluded and why, those missing."""
    from helmetlib.evaluation.selection import SELECTION_RULE, excluded_models

    return {
        "rule": SELECTION_RULE,
        "candidates": tuple(results),
        "excluded": excluded_models(results),
        "missing": tuple(name for name in models if name not in results),
        "validation_labels": tuple(int(v) for v in validation_labels),
    }


def _results_to_compare(run: NotebookRun, dataset: Dataset) -> tuple[dict[str, ModelResult], list[str]]:
    """The results in the run folder, and the models trained here first when there were none (a comparison run
    on its own)."""
    results = run.folder.results(run.config.models)
    if results:
        return results, []
    for name in run.config.models:
        train_and_save(run, name, dataset)
    return run.folder.results(run.config.models), list(run.config.models)


@dataclass
class _TestScores:
    """The deployed model's one look at test: the deployed decision (P(helmet) as `helmet-predict` answers it, at
    the deployed threshold) and the study's (its threshold on the model's own output), with intervals."""

    split: Split
    labels: np.ndarray
    probabilities: np.ndarray  # as helmet-predict answers: calibrated as the card says
    model_output: np.ndarray
    test: Scores
    intervals: dict
    at_study_threshold: Scores
    intervals_at_study_threshold: dict


def _score_on_test(run, dataset, selected, result, parts, calibrated, deployed_threshold: float) -> _TestScores:
    from helmetlib.evaluation.uncertainty import bootstrap_intervals

    config = run.config
    test_split = _deployed_split(run, dataset, result, parts)
    labels = dataset.labels[test_split.test]
    model_output = _test_probabilities(run, dataset, selected, test_split)
    probabilities = np.asarray(calibrated(model_output), dtype=float)
    resamples = config.bootstrap_resamples
    return _TestScores(
        split=test_split,
        labels=labels,
        probabilities=probabilities,
        model_output=model_output,
        test=performance(labels, probabilities, threshold=deployed_threshold),
        intervals=bootstrap_intervals(labels, probabilities, threshold=deployed_threshold, n_resamples=resamples),
        at_study_threshold=performance(labels, model_output, threshold=config.threshold),
        intervals_at_study_threshold=bootstrap_intervals(
            labels, model_output, threshold=config.threshold, n_resamples=resamples
        ),
    )


def _save_selected(run, dataset, selected, names, parts, scored: _TestScores, threshold, calibration):
    """Write the selected model self-contained with its card (threshold, calibration, test scores), archive the
    others' heads in float16, and export TensorFlow Lite when asked; the export record or None."""
    from helmetlib.data.dataset import window_sides
    from helmetlib.deploy.artifacts import archive_unselected, save_crop_check, save_selected

    folder = run.folder
    save_selected(
        folder,
        selected,
        threshold=threshold,
        test=scored.test,
        test_at_study_threshold=scored.at_study_threshold,
        calibration=calibration,
    )
    archive_unselected(folder, selected, names)
    sides = window_sides(run.config.data_dir) if run.config.data_dir else None
    save_crop_check(folder, selected, dataset, scored.split, window_sides=sides)
    if not run.config.export_tflite:
        return None
    from helmetlib.deploy.export import export_tflite

    return export_tflite(folder.model_file(selected), select_rows(dataset.images, parts.validation))


def _deployed_split(run: NotebookRun, dataset: Dataset, result: ModelResult, parts: Split) -> Split:
    """The split the deployed model was trained on (another one per repeat with RESPLIT)."""
    if not run.config.resplit:
        return parts
    seed = result.deployed_seeds[0]
    repeat = next(r for r in result.repeats if r.seed == seed)
    return run.split(dataset, repeat.split_seed - run.config.split_seed)


def _test_probabilities(run: NotebookRun, dataset: Dataset, name: str, parts: Split) -> np.ndarray:
    from helmetlib.deploy.artifacts import load_run_model
    from helmetlib.training.repeats import predict_proba

    model, card = load_run_model(run.folder, name)
    return predict_proba(model, select_rows(dataset.images, parts.test), normalization=card.input.normalization)


def look_alike_features(run: NotebookRun, dataset: Dataset) -> np.ndarray | None:
    """The frozen VGG16's features of every image (N, 6, 6, 512) as vgg16_linear, vgg16_mlp and vgg16_mlp_aug see
    them, from the shared cache; None when no model of the run uses the backbone (its weights are not loaded: no
    look-alike audit)."""
    if run.config.weights.used == "unused":
        return None  # before the imports: an EDA without the backbone never loads TensorFlow
    from helmetlib.models.builders import vgg16_backbone
    from helmetlib.models.features import FeatureCache, cached_features, feature_precision

    vgg16 = vgg16_backbone(run.config.weights, dataset.images.shape[1:])
    cache = FeatureCache(run.config.cache_dir)
    precision = feature_precision(faithful=run.config.faithful)
    return cached_features(dataset.images, dataset.content_hash, vgg16, cache, kind="block5", precision=precision)

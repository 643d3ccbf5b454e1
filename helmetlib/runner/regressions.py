"""Each ok run against the newest earlier ok run on the same data: what changed, and whether it is a regression.

Per model, the change in validation accuracy, F1 and bare-head recall of the deployed models; for the selected
model, the change in test scores. Both with paired bootstrap intervals (the same images scored by both runs); a
change whose interval lies entirely below 0 is a regression.
"""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np

from helmetlib.evaluation.results import MetricChange, PreviousRunComparison
from helmetlib.evaluation.uncertainty import bootstrap_intervals
from helmetlib.run.folder import ReportsFolder, RunFolder, RunRecord

COMPARED = ("accuracy", "f1", "bare_head_recall")


def previous_ok_runs(out: ReportsFolder, current: RunRecord) -> list[tuple[RunFolder, RunRecord]]:
    """The ok runs in `out` on the same data as `current` (content hash) started before it, newest first."""
    data = current.data.content_hash if current.data else None
    return [
        (folder, record)
        for folder, record in out.runs()
        if record.status == "ok"
        and record.run_id != current.run_id
        and record.started <= current.started
        and record.data is not None
        and record.data.content_hash == data
    ]


def compare_with_previous(out: ReportsFolder, folder: RunFolder, current: RunRecord) -> PreviousRunComparison:
    """This run against the newest earlier ok run on the same data; says so instead when there is none or the
    split differs. An earlier run whose files cannot be read is skipped, and the note names it and why."""
    skipped = []
    for previous_folder, previous in previous_ok_runs(out, current):
        try:
            comparison = _compare(folder, current, previous_folder, previous)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:  # damaged or foreign: never a failure
            skipped.append(f"run {previous.run_id} skipped, its files are unreadable ({type(error).__name__}: {error})")
            continue
        note = comparison.note + "".join(f" ({reason}.)" for reason in skipped)
        return dataclasses.replace(comparison, note=note)
    first = "First ok run on this data" if not skipped else "No readable earlier ok run on this data"
    return PreviousRunComparison(
        previous_run=None,
        same_data=False,
        note=f"{first} (hash {current.data.content_hash if current.data else '?'}) in this folder: nothing to compare."
        + "".join(f" ({reason}.)" for reason in skipped),
        validation={},
        test=(),
    )


def _compare(
    folder: RunFolder, current: RunRecord, previous_folder: RunFolder, previous: RunRecord
) -> PreviousRunComparison:
    problems = []
    split_settings = ["split", "split_seed", "image_size", "resplit"]
    if current.config.split == "grouped":
        split_settings += ["groups_csv", "group_column"]
    if any(getattr(previous.config, key) != getattr(current.config, key) for key in split_settings):
        problems.append("the split or image size changed")
    if problems:
        return PreviousRunComparison(
            previous_run=previous.run_id,
            same_data=False,
            note=f"Not compared with run {previous.run_id}: {' and '.join(problems)}.",
            validation={},
            test=(),
        )
    threshold = current.config.threshold
    resamples = current.config.bootstrap_resamples
    validation = {}
    labels = np.asarray(current.selection.validation_labels) if current.selection else None
    for name in current.models:
        if name not in previous.models or labels is None or not len(labels):
            continue
        now = folder.probabilities(name)["validation"]
        before = previous_folder.probabilities(name)["validation"]
        if len(now) != len(before) or len(now) != len(labels):
            continue
        validation[name] = _changes(labels, now, before, threshold, threshold, resamples)
    test = ()
    selection, old = current.selection, previous.selection
    if selection and old and selection.test_model_output and (old.test_model_output or old.test_probabilities):
        if selection.test_indices_hash == old.test_indices_hash:
            test = _changes(  # the models' own outputs at the study's threshold (older records kept only those)
                np.asarray(selection.test_labels),
                np.asarray(selection.test_model_output),
                np.asarray(old.test_model_output or old.test_probabilities),
                threshold,
                threshold,
                resamples,
            )
    caveats = ""
    if set(previous.models) != set(current.models):
        caveats = f" Models differ (then {', '.join(previous.models)}; now {', '.join(current.models)})."
    caveats += _changed_training(previous, current)
    return PreviousRunComparison(
        previous_run=previous.run_id,
        same_data=True,
        selection_lost=previous.selected_model if previous.selected_model and not current.selected_model else None,
        note=(
            f"Compared with run {previous.run_id}, the newest earlier ok run on the same data and split: selected then "
            f"{previous.selected_model or 'none'}, now {current.selected_model or 'none'}.{caveats}"
        ),
        validation=validation,
        test=test,
    )


TRAINING_SETTINGS = ("seed", "repeats", "epochs", "batch_size", "max_restarts", "augmented_views", "faithful")


def _changed_training(previous: RunRecord, current: RunRecord) -> str:
    """A sentence naming the training settings that differ between the runs (a change may come from them)."""
    differ = [
        f"{key} {getattr(previous.config, key)} -> {getattr(current.config, key)}"
        for key in TRAINING_SETTINGS
        if getattr(previous.config, key) != getattr(current.config, key)
    ]
    if previous.config.weights.sha256 != current.config.weights.sha256:
        differ.append("weights")
    return f" Training settings differ ({', '.join(differ)}): changes may come from them." if differ else ""


def _changes(labels, now, before, threshold_now, threshold_before, resamples) -> tuple[MetricChange, ...]:
    intervals = bootstrap_intervals(
        labels,
        now,
        threshold=threshold_now,
        reference_probabilities=before,
        reference_threshold=threshold_before,
        n_resamples=resamples,
    )
    return tuple(
        MetricChange(
            metric=metric,
            previous=intervals[metric].value - intervals[f"{metric}_difference"].value,
            current=intervals[metric].value,
            change=intervals[f"{metric}_difference"],
            regression=intervals[f"{metric}_difference"].high < 0,
        )
        for metric in COMPARED
    )

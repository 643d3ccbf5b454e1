"""Cross-architecture ensemble against the selected model, in finished runs: what validation says (the deploy
rule), and how both score on the run's test part and on photos from elsewhere.

For each run folder: the selected model and the runner-up (from its run record), the validation evidence
(`helmetlib.evaluation.ensembles.cross_architecture`: Brier scores calibrated out of fold, the paired bootstrap interval
of the gain, deployed or not), then for the selected model (Platt-calibrated on validation) and the ensemble (the mean
of both members, each calibrated on validation): accuracy at 0.5, ROC AUC and Brier score on test and on
`--outside` (e.g. crops imported by `helmet-import` from another source). Last, how often the ensemble wins.

    python benchmarks/cross_ensemble.py reports/seed812 reports/seed1 --outside data/voc-crops
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from helmetlib.data.dataset import load_run_data, select_rows
from helmetlib.deploy.artifacts import load_run_model
from helmetlib.deploy.cards import read_card
from helmetlib.evaluation.calibration import fit_calibration
from helmetlib.evaluation.ensembles import cross_architecture
from helmetlib.evaluation.uncertainty import brier_score
from helmetlib.reports.notebook import NotebookRun
from helmetlib.run.folder import RunFolder
from helmetlib.training.repeats import predict_proba


def scores(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float, float]:
    """(accuracy at 0.5, ROC AUC, Brier score)."""
    return (
        float(np.mean((probabilities >= 0.5) == labels)),
        float(roc_auc_score(labels, probabilities)),
        brier_score(labels, probabilities),
    )


def member_outputs(folder: RunFolder, name: str, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A deployed model's raw P(helmet) on each image set."""
    path = folder.loadable_file(name)
    card = read_card(path)
    model = load_run_model(path, card)
    return {part: predict_proba(model, x, normalization=card.input.normalization) for part, x in images.items()}


def measure(run_dir: Path, outside) -> list[tuple[str, str, tuple[float, float, float]]]:
    folder = RunFolder(run_dir)
    record = folder.read_record()
    run = NotebookRun(config=record.config, folder=folder)
    dataset = run.dataset()
    parts = run.split(dataset)
    labels = {"validation": dataset.labels[parts.validation], "test": dataset.labels[parts.test]}
    images = {"test": select_rows(dataset.images, parts.test)}
    if outside is not None:
        labels["outside"], images["outside"] = outside.labels, outside.images
    selected, second = record.selected_model, record.selection.verdict.runner_up
    validation = {name: folder.probabilities(name)["validation"] for name in (selected, second)}
    cross = cross_architecture([selected, second], labels["validation"], validation)
    print(f"{run_dir.name}: {cross.text}")
    calibrated = {}
    for name in (selected, second):
        calibration = fit_calibration(labels["validation"], validation[name])
        raw = member_outputs(folder, name, images)
        calibrated[name] = {part: calibration.apply(p) if calibration else p for part, p in raw.items()}
    rows = []
    for part in images:
        ensemble = np.mean([calibrated[name][part] for name in (selected, second)], axis=0)
        rows.append((part, selected, scores(labels[part], calibrated[selected][part])))
        rows.append((part, f"{selected} + {second}", scores(labels[part], ensemble)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished helmet-reports run folders")
    parser.add_argument("--outside", help="a dataset folder of photos from elsewhere")
    args = parser.parse_args()
    outside = load_run_data(args.outside) if args.outside else None
    wins: dict[str, list[float]] = {}
    print("| run | images | model | accuracy | ROC AUC | Brier |\n|---|---|---|---|---|---|")
    for run_dir in args.runs:
        rows = measure(run_dir, outside)
        for part, name, (accuracy, auc, brier) in rows:
            print(f"| {run_dir.name} | {part} | {name} | {accuracy:.3f} | {auc:.3f} | {brier:.3f} |")
        for (part, _, single), (_, _, ensemble) in zip(rows[::2], rows[1::2], strict=True):
            wins.setdefault(part, []).append(ensemble[1] - single[1])
    for part, gains in wins.items():
        better = sum(gain > 0 for gain in gains)
        print(f"{part}: the ensemble ranks better (ROC AUC) in {better} of {len(gains)} runs, by {np.mean(gains):+.3f}")


if __name__ == "__main__":
    main()

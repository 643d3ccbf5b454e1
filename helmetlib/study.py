"""The study's steps that the notebooks share: data for a run, per-model results on disk, model selection."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helmetlib.data import Dataset, load_dataset, make_demo_dataset
from helmetlib.metrics import HEADLINE_METRICS, performance
from helmetlib.preprocess import resize
from helmetlib.specs import get_spec
from helmetlib.splits import Split

if TYPE_CHECKING:
    import pandas as pd

    from helmetlib.train import TrainedModel

MODELS_FOLDER = "models"
SELECTION_FILE = "selection.json"
SELECTION_RULE = (
    "highest validation F1; ties (within 0.001) go to the smaller train-validation F1 gap, then to fewer parameters"
)


def study_dataset(data_dir: str | Path | None, *, image_size: int = 0, demo_size: int = 160) -> Dataset:
    """The run's data: the validated set in `data_dir` (demo set when empty), resized when `image_size` > 0."""
    dataset = make_demo_dataset(demo_size) if not data_dir else load_dataset(data_dir)
    if not image_size or dataset.images.shape[1] == image_size:
        return dataset
    return replace(dataset, images=resize(dataset.images, image_size))  # the hash still names the source files


def study_split(
    labels: np.ndarray,
    *,
    groups_csv: str | Path = "",
    group_column: str = "path",
    grouped: bool = False,
    images: np.ndarray | None = None,
    random_state: int = 42,
) -> Split:
    """The run's split: the study's stratified random split, or with `grouped` one that keeps groups together.

    Groups come from `groups_csv`; without one, from clusters of near-duplicate images (which needs `images`).
    """
    from helmetlib.splits import grouped_split, read_groups, split

    if not grouped:
        return split(labels, random_state=random_state)
    if groups_csv:
        groups = read_groups(groups_csv, group_column)
    elif images is not None:
        from helmetlib.audit import duplicate_groups, near_duplicate_pairs

        pairs = near_duplicate_pairs(images, split(labels, random_state=random_state))
        groups = duplicate_groups(len(labels), pairs)
    else:
        raise ValueError("a grouped split needs a groups CSV (GROUPS_CSV / --groups) or the images")
    return grouped_split(labels, groups, random_state=random_state)


def split_score_change(
    dataset: Dataset, splits: dict[str, Split], *, model_name: str = "vgg16_linear", **train_options
) -> pd.DataFrame:
    """Validation scores of one reference model trained on each split (e.g. random vs grouped), side by side."""
    import pandas as pd

    from helmetlib.train import train_model

    rows = {}
    for kind, parts in splits.items():
        trained = train_model(model_name, dataset, parts, **train_options)
        scores = performance(dataset.labels[parts.validation], trained.probabilities["validation"])
        rows[kind] = {key: scores[key] for key in HEADLINE_METRICS} | {
            "bare-head recall": scores["per_class"]["no helmet"]["recall"],
            "validation images": len(parts.validation),
        }
    return pd.DataFrame(rows).T


def model_results(trained: TrainedModel, dataset: Dataset, split: Split, *, threshold: float = 0.5) -> dict:
    """Train and validation metrics of a trained model, with how it was trained (the comparison's input)."""
    model = trained.model
    spec = get_spec(trained.name)
    return {
        "name": trained.name,
        "description": spec.description,
        "train": performance(dataset.labels[split.train], trained.probabilities["train"], threshold=threshold),
        "validation": performance(
            dataset.labels[split.validation], trained.probabilities["validation"], threshold=threshold
        ),
        "parameters": int(model.count_params()),
        "trainable_parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "normalization": spec.normalization,
        "input_shape": list(model.input_shape[1:]),
        "epochs_run": len(trained.history.get("loss", [])),
        "weights": trained.weights.to_dict() if spec.uses_backbone else None,
        "mode": trained.mode,
        "precision": trained.precision,
        "view_precision": trained.view_precision,
        "train_seconds": round(trained.seconds, 2),
        "notes": trained.notes,
        "threshold": threshold,
        "data": {
            "content_hash": dataset.content_hash,
            "images": len(dataset),
            "class_counts": {str(label): count for label, count in dataset.class_counts.items()},
            "path": str(dataset.images_path.parent) if dataset.images_path else "synthetic demo set",
        },
        "split": split.sizes(),
    }


def save_model_results(trained: TrainedModel, results: dict, run_dir: str | Path) -> Path:
    """Write the model, its card, history, probabilities and `<name>.metrics.json` under `run_dir/models/`."""
    from helmetlib.inference import card_path, make_card
    from helmetlib.train import save_trained

    folder = Path(run_dir) / MODELS_FOLDER
    model_file = save_trained(trained, folder)["model"]
    card = make_card(results, versions=package_versions(), model_file=model_file.name)
    card_path(model_file).write_text(json.dumps(card, indent=2))
    path = folder / f"{trained.name}.metrics.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def load_model_results(run_dir: str | Path, names: list[str]) -> dict[str, dict]:
    """The saved `<name>.metrics.json` of each model, by name; a clear error for a model not trained yet."""
    folder = Path(run_dir) / MODELS_FOLDER
    results = {}
    for name in names:
        path = folder / f"{name}.metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results for model {name!r}; run its model notebook first")
        results[name] = json.loads(path.read_text())
    return results


def load_probabilities(run_dir: str | Path, name: str) -> dict[str, np.ndarray]:
    """The saved train and validation P(helmet) of a model, by part."""
    with np.load(Path(run_dir) / MODELS_FOLDER / f"{name}.probabilities.npz") as saved:
        return {part: saved[part] for part in saved.files}


def runner_up(results: dict[str, dict], selected: str) -> str | None:
    """The best of the other models by the same rule, or None when there is only one model."""
    others = {name: result for name, result in results.items() if name != selected}
    return select_model(others) if others else None


def select_model(results: dict[str, dict]) -> str:
    """Pick a model by the documented rule (`SELECTION_RULE`), looking at train and validation only."""

    def gap(name: str) -> float:
        return abs(results[name]["train"]["f1"] - results[name]["validation"]["f1"])

    best_f1 = max(result["validation"]["f1"] for result in results.values())
    tied = [name for name, result in results.items() if result["validation"]["f1"] >= best_f1 - 1e-3]
    return min(tied, key=lambda name: (round(gap(name), 3), results[name]["parameters"]))


def comparison_tables(results: dict[str, dict]) -> dict:
    """The study's train, validation and train-minus-validation tables (models as rows)."""
    import pandas as pd

    tables = {
        part: pd.DataFrame({name: {k: r[part][k] for k in HEADLINE_METRICS} for name, r in results.items()}).T
        for part in ("train", "validation")
    }
    tables["difference"] = tables["train"] - tables["validation"]
    return tables


def training_table(results: dict[str, dict]) -> pd.DataFrame:
    """How each model was trained: mode (fast / faithful / direct), backbone weights and precision, size, time."""
    import pandas as pd

    return pd.DataFrame(
        {
            name: {
                "mode": result["mode"],
                "weights": result["weights"]["used"] if result["weights"] else "-",
                "precision": result["precision"]
                + (f", views {result['view_precision']}" if result.get("view_precision") else ""),
                "epochs": result["epochs_run"],
                "parameters": result["parameters"],
                "trainable": result["trainable_parameters"],
                "seconds": result["train_seconds"],
                "notes": "; ".join(result["notes"]),
            }
            for name, result in results.items()
        }
    ).T


def observation(results: dict) -> str:
    """A short generated reading of a model's train/validation numbers."""
    train, validation = results["train"], results["validation"]
    gap = train["accuracy"] - validation["accuracy"]
    missed = 1 - validation["per_class"]["no helmet"]["recall"]
    fit = (
        "overfits (train accuracy well above validation)"
        if gap > 0.1
        else "underfits or has not converged (accuracy below 70 %)"
        if validation["accuracy"] < 0.7
        else "generalises to the validation set about as well as it fits the training set"
    )
    return (
        f"**{results['name']}** reaches {train['accuracy']:.1%} accuracy on train and {validation['accuracy']:.1%} on "
        f"validation (weighted F1 {validation['f1']:.3f}) after {results['epochs_run']} epochs: it {fit}. "
        f"It misses {missed:.1%} of the bare heads in validation (recall on 'no helmet' "
        f"{validation['per_class']['no helmet']['recall']:.1%}); a missed bare head is the costly error."
    )


def save_selection(
    run_dir: str | Path,
    selected: str,
    test: dict,
    results: dict[str, dict],
    export: dict | None = None,
    evaluation: dict | None = None,
) -> Path:
    """Write `selection.json` (selected model, rule, test metrics, evaluation, exports); mark its card selected."""
    from helmetlib.inference import card_path

    path = Path(run_dir) / SELECTION_FILE
    selection = {"selected_model": selected, "rule": SELECTION_RULE, "candidates": sorted(results), "test": test}
    path.write_text(json.dumps({**selection, "evaluation": evaluation, "export": export}, indent=2))
    card_file = card_path(Path(run_dir) / MODELS_FOLDER / f"{selected}.keras")
    card = json.loads(card_file.read_text())
    card["selected"] = True
    card["metrics"]["test"] = {key: test[key] for key in ("accuracy", "recall", "precision", "f1", "per_class")}
    card["export"] = export
    card_file.write_text(json.dumps(card, indent=2))
    return path


PACKAGES = ("helmetlib", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "papermill", "nbconvert", "jupytext")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on, and Python's."""
    import platform
    from importlib import metadata

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return versions

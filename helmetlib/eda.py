"""Per-image statistics, split summaries and the random-vs-grouped score check for the exploration report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib.data import CLASS_NAMES, Dataset, batches
from helmetlib.preprocess import to_grayscale
from helmetlib.splits import Split


def image_statistics(images_rgb: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per image: class, brightness (mean gray), contrast (gray std), sharpness (Laplacian variance).

    Images are read batch by batch, so a memory-mapped set larger than memory is fine.
    """
    brightness, contrast, sharpness = [], [], []
    for batch in batches(images_rgb, 64):
        gray = to_grayscale(batch)
        brightness.append(gray.mean(axis=(1, 2)))
        contrast.append(gray.std(axis=(1, 2)))
        sharpness.append([float(cv2.Laplacian(image, cv2.CV_64F).var()) for image in gray])
    return pd.DataFrame(
        {
            "class": [CLASS_NAMES[label] for label in labels],
            "brightness": np.concatenate(brightness),
            "contrast": np.concatenate(contrast),
            "sharpness": np.concatenate(sharpness),
        }
    )


def split_table(split: Split, labels: np.ndarray) -> pd.DataFrame:
    """Images per part and class (integers), with each part's share of the data."""
    rows = {}
    for name, indices in split.parts().items():
        part_labels = np.asarray(labels)[indices]
        rows[name] = {
            "images": len(indices),
            CLASS_NAMES[0]: int((part_labels == 0).sum()),
            CLASS_NAMES[1]: int((part_labels == 1).sum()),
            "share": f"{len(indices) / len(labels):.1%}",
        }
    return pd.DataFrame(rows).T


def reference_model(config) -> str:
    """The model the EDA trains on each split: `vgg16_linear` (its backbone features are cached for the run's
    models), or the CNN when no model of the run uses the backbone (its weights are then never loaded)."""
    return "cnn" if config.weights.used == "unused" else "vgg16_linear"


def split_score_change(
    dataset: Dataset, splits: dict[str, Split], *, model_name: str = "vgg16_linear", **train_options
) -> pd.DataFrame:
    """Validation scores of one reference model trained on each split (e.g. random vs grouped), side by side."""
    from helmetlib.metrics import performance
    from helmetlib.train import train_model

    rows = {}
    for kind, parts in splits.items():
        trained = train_model(model_name, dataset, parts, **train_options)
        scores = performance(dataset.labels[parts.validation], trained.probabilities["validation"])
        rows[kind] = {**scores.headline(), "bare-head recall": scores.bare_head_recall}
        rows[kind] = {key: round(value, 3) for key, value in rows[kind].items()}
        rows[kind]["validation images"] = len(parts.validation)
    return pd.DataFrame(rows).T.astype({"validation images": int})


def split_description(kind: str, random_state: int, groups_csv: str, group_column: str) -> str:
    """Which split a run used, in one sentence (and where its groups came from)."""
    if kind == "grouped":
        source = f"column `{group_column}` of `{groups_csv}`" if groups_csv else "clusters of near-duplicate images"
        return (
            f"**Split used: grouped** (random state {random_state}): no group on two sides, groups from {source}; "
            "sizes are close to 70 / 15 / 15."
        )
    return f"**Split used: random**, stratified 70 / 15 / 15 with random state {random_state}, as in the study."


@dataclass(frozen=True)
class SourcePhoto:
    """A source photo of an imported data folder (RGB) and its rows of `provenance.csv` (boxes, windows)."""

    name: str
    photo: np.ndarray
    rows: pd.DataFrame


def source_photo_examples(
    data_dir: str | Path, *, count: int = 3, per_photo: int = 4, seed: int = 0
) -> list[SourcePhoto]:
    """Up to `count` photos of an imported data folder that are still reachable (from `manifest.json`'s source
    and `provenance.csv`'s paths), the photos with most crops first, each with up to `per_photo` of its rows;
    [] when the folder was not imported or its photos are gone."""
    from helmetlib.data import PROVENANCE_FILE
    from helmetlib.photos import read_image_file
    from helmetlib.records import RecordError, read_json

    data_dir = Path(data_dir) if data_dir else None
    if data_dir is None or not (data_dir / PROVENANCE_FILE).is_file():
        return []
    try:
        source = Path(read_json(data_dir / "manifest.json")["source"])
    except (RecordError, KeyError, TypeError):
        return []
    provenance = pd.read_csv(data_dir / PROVENANCE_FILE)
    needed = {"row", "Label", "path", "xmin", "ymin", "xmax", "ymax", "window_left", "window_top", "window_side"}
    if not needed <= set(provenance.columns):
        return []
    root = source if source.is_dir() else source.parent
    busiest = provenance["path"].value_counts()
    examples = []
    for name in busiest.index[: 4 * count]:
        photo, error = read_image_file(root / name)
        if error is None:
            rows = provenance[provenance["path"] == name].sample(frac=1, random_state=seed).head(per_photo)
            examples.append(SourcePhoto(name=str(name), photo=photo, rows=rows))
        if len(examples) == count:
            break
    return examples

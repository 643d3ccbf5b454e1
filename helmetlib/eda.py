"""Per-image statistics, split summaries and the random-vs-grouped score check for the exploration report."""

from __future__ import annotations

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

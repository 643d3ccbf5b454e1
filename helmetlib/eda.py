"""Per-image statistics and split summaries for the exploration report."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from helmetlib.data import CLASS_NAMES
from helmetlib.preprocess import to_grayscale
from helmetlib.splits import Split


def image_statistics(images_rgb: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per image: class, brightness (mean gray), contrast (gray std), sharpness (Laplacian variance)."""
    gray = to_grayscale(images_rgb)
    sharpness = [float(cv2.Laplacian(image, cv2.CV_64F).var()) for image in gray]
    return pd.DataFrame(
        {
            "class": [CLASS_NAMES[label] for label in labels],
            "brightness": gray.mean(axis=(1, 2)),
            "contrast": gray.std(axis=(1, 2)),
            "sharpness": sharpness,
        }
    )


def split_table(split: Split, labels: np.ndarray) -> pd.DataFrame:
    """Images per part and class, with the share of helmets."""
    rows = {}
    for name, indices in split.parts().items():
        part_labels = np.asarray(labels)[indices]
        rows[name] = {
            "images": len(indices),
            CLASS_NAMES[0]: int((part_labels == 0).sum()),
            CLASS_NAMES[1]: int((part_labels == 1).sum()),
            "share": round(len(indices) / len(labels), 3),
        }
    return pd.DataFrame(rows).T

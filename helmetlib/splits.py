"""Stratified train / validation / test split, as in the study (70/15/15, random_state=42)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Index arrays into the dataset for each part."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """Number of images in each part."""
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    def parts(self) -> dict[str, np.ndarray]:
        """Index arrays by part name, in the order train, validation, test."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


def split(
    labels: np.ndarray,
    *,
    validation_size: float = 0.15,
    test_size: float = 0.15,
    random_state: int = 42,
) -> Split:
    """Stratified split of `labels` into index arrays, the study's two-step way (631 images give 441/95/95)."""
    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    train_val, test = train_test_split(indices, test_size=test_size, stratify=labels, random_state=random_state)
    train, validation = train_test_split(
        train_val,
        test_size=validation_size / (1 - test_size),
        stratify=labels[train_val],
        random_state=random_state,
    )
    return Split(train=train, validation=validation, test=test)

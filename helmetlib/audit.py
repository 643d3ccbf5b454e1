"""Leakage audit: exact and near-duplicate images within and across the train / validation / test parts."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd

from helmetlib.preprocess import to_grayscale
from helmetlib.splits import Split

NEAR_DUPLICATE_BITS = 10  # of 64: shifted, re-encoded or slightly rescaled copies of one crop stay below this


def perceptual_hashes(images_rgb: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash per image (N, 64) bool: low frequencies of a 32x32 gray copy above their median."""
    gray = to_grayscale(images_rgb)
    hashes = np.empty((len(gray), 64), dtype=bool)
    for index, image in enumerate(gray):
        small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        low = cv2.dct(small)[:8, :8].ravel()
        hashes[index] = low > np.median(low[1:])
    return hashes


def near_duplicate_pairs(
    images_rgb: np.ndarray, split: Split, *, max_distance: int = NEAR_DUPLICATE_BITS
) -> pd.DataFrame:
    """Every pair of images whose perceptual hashes differ in at most `max_distance` bits, with their parts.

    Columns: first, second (row indices), distance (bits), exact (identical pixels), parts ("train/test" ...).
    """
    hashes = perceptual_hashes(images_rgb).astype(np.uint8)
    distances = (hashes[:, None, :] != hashes[None, :, :]).sum(axis=2)
    first, second = np.nonzero(np.triu(distances <= max_distance, k=1))
    part_of = np.empty(len(images_rgb), dtype=object)
    for name, indices in split.parts().items():
        part_of[indices] = name
    digests = [hashlib.sha1(image.tobytes()).hexdigest() for image in images_rgb]
    return pd.DataFrame(
        {
            "first": first,
            "second": second,
            "distance": distances[first, second],
            "exact": [digests[a] == digests[b] for a, b in zip(first, second, strict=True)],
            "parts": ["/".join(sorted((part_of[a], part_of[b]))) for a, b in zip(first, second, strict=True)],
        }
    ).sort_values(["distance", "first", "second"], ignore_index=True)


def closest_cross_split_pairs(images_rgb: np.ndarray, split: Split, *, n: int = 6) -> pd.DataFrame:
    """The `n` most similar pairs (by hash distance) whose images lie in different parts, duplicates or not."""
    pairs = near_duplicate_pairs(images_rgb, split, max_distance=64)
    across = pairs[pairs["parts"].str.split("/").map(lambda p: p[0] != p[1])]
    return across.head(n).reset_index(drop=True)


def leakage_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Exact and near-duplicate pair counts per combination of parts (within and across)."""
    if pairs.empty:
        return pd.DataFrame(columns=["exact", "near", "images involved"])
    rows = {}
    for parts, group in pairs.groupby("parts"):
        rows[parts] = {
            "exact": int(group["exact"].sum()),
            "near": int((~group["exact"]).sum()),
            "images involved": len(set(group["first"]) | set(group["second"])),
        }
    return pd.DataFrame(rows).T


def verdict(pairs: pd.DataFrame) -> str:
    """One sentence: is there cross-split duplication that inflates validation or test scores?"""
    across = pairs[pairs["parts"].str.split("/").map(lambda p: p[0] != p[1])] if not pairs.empty else pairs
    if across.empty:
        return "No exact or near-duplicate images across train, validation and test (perceptual hash)."
    exact = int(across["exact"].sum())
    return (
        f"LEAKAGE: {len(across)} image pairs straddle the split ({exact} exact copies, {len(across) - exact} near "
        f"duplicates within {NEAR_DUPLICATE_BITS} of 64 hash bits); validation and test scores are optimistic."
    )


EMBEDDING_SIMILARITY = 0.9  # cosine similarity of standardised backbone features above which two crops look alike


def embedding_neighbours(
    features: np.ndarray, split: Split, *, similarity: float = EMBEDDING_SIMILARITY
) -> pd.DataFrame:
    """Cross-split pairs whose backbone features (N, ...) have cosine similarity >= `similarity`, sorted.

    Features are standardised per dimension first, so "alike" means alike beyond what every crop shares (raw VGG16
    activations of head crops are all nearly parallel). Catches what pixel hashes miss: the same scene or person.
    """
    flat = features.reshape(len(features), -1).astype(np.float64)
    flat = (flat - flat.mean(axis=0)) / (flat.std(axis=0) + 1e-6)
    pooled = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    part_of = np.empty(len(features), dtype=object)
    for name, indices in split.parts().items():
        part_of[indices] = name
    cosine = pooled @ pooled.T
    first, second = np.nonzero(np.triu(cosine >= similarity, k=1))
    across = part_of[first] != part_of[second]
    first, second = first[across], second[across]
    return pd.DataFrame(
        {
            "first": first,
            "second": second,
            "similarity": cosine[first, second].round(4),
            "parts": ["/".join(sorted((part_of[a], part_of[b]))) for a, b in zip(first, second, strict=True)],
        }
    ).sort_values("similarity", ascending=False, ignore_index=True)


def duplicate_groups(n_images: int, pairs: pd.DataFrame) -> np.ndarray:
    """Group ids (N,) joining every image to its near duplicates (connected components of `pairs`)."""
    parent = list(range(n_images))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first, second in zip(pairs["first"], pairs["second"], strict=True):
        parent[root(int(first))] = root(int(second))
    return np.array([root(index) for index in range(n_images)])

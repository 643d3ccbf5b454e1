"""Leakage audit: exact and near-duplicate images, and look-alikes, within and across the train / validation /
test parts, in bounded memory.

Near duplicates are found in two steps: 64-bit DCT perceptual hashes compared block by block (Hamming distance
by XOR and popcount, never an N x N x 64 array), then each candidate confirmed on pixels: the correlation of
their 64 x 64 grayscale thumbnails, aligned by up to 3 pixels, must reach 0.975. That removes pairs that merely
share a layout. Calibrated on five sets (helmet-dev, the demo set at 200 and 48 px, smooth random photos at 96
and 64 px): shifted (2 px), re-encoded (JPEG 60) and rescaled (0.75) copies correlate at 0.982 or more; the distinct
pairs within 10 hash bits (82 in the demo set, none in helmet-dev) at 0.966 at most. Look-alikes come from a radius
search on standardised backbone features (`sklearn.neighbors.NearestNeighbors`); groups of copies from
`scipy.sparse.csgraph.connected_components`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from helmetlib.core.preprocess import to_grayscale
from helmetlib.data.dataset import batches

if TYPE_CHECKING:  # splits uses the near-duplicate search for grouped splits: no import back at run time
    from helmetlib.data.splits import Split

NEAR_DUPLICATE_BITS = 10  # of 64: shifted, re-encoded or slightly rescaled copies of one crop stay below this
PIXEL_CORRELATION = 0.975  # and their 64 x 64 thumbnails, aligned, correlate at least this much
CONFIRM_SIZE, ALIGNMENT = 64, 3
CONFIRM_CHUNK = 4096  # candidate pairs confirmed at once
EMBEDDING_SIMILARITY = 0.9  # cosine similarity of standardised backbone features above which two crops look alike
BLOCK = 256  # rows compared at once: memory O(BLOCK x N), 128 MB of XORed hashes at 60,000 images


@dataclass(frozen=True)
class Fingerprints:
    """What the pixel audit needs of each image, from one streaming pass: the packed 64-bit perceptual hash (N,),
    a 64 x 64 grayscale thumbnail (N, 64, 64) uint8 for confirming candidates, and a SHA-1 of the pixels (N,)."""

    hashes: np.ndarray
    thumbnails: np.ndarray
    digests: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)


def fingerprints(images_rgb: np.ndarray) -> Fingerprints:
    """Read the images once, batch by batch (memory: 4 kB of thumbnail per image), and fingerprint them."""
    n = len(images_rgb)
    bits = np.empty((n, 64), dtype=bool)
    thumbnails = np.empty((n, CONFIRM_SIZE, CONFIRM_SIZE), dtype=np.uint8)
    digests = np.empty(n, dtype=object)
    row = 0
    for batch in batches(images_rgb, 64):
        for image, gray in zip(batch, to_grayscale(batch), strict=True):
            small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
            low = cv2.dct(small)[:8, :8].ravel()
            bits[row] = low > np.median(low[1:])
            thumbnails[row] = cv2.resize(gray, (CONFIRM_SIZE, CONFIRM_SIZE), interpolation=cv2.INTER_AREA)
            digests[row] = hashlib.sha1(image.tobytes()).hexdigest()
            row += 1
    return Fingerprints(hashes=_packed(bits), thumbnails=thumbnails, digests=digests)


def perceptual_hashes(images_rgb: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash per image (N, 64) bool: low frequencies of a 32x32 gray copy above their median."""
    return np.unpackbits(fingerprints(images_rgb).hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(
        bool
    )


def _packed(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _part_names(n: int, split: Split) -> np.ndarray:
    part_of = np.empty(n, dtype=object)
    for name, indices in split.parts().items():
        part_of[indices] = name
    return part_of


def _hamming_pairs(packed: np.ndarray, max_distance: int):
    """(first, second, distance) of every pair i < j within `max_distance` bits, block by block."""
    firsts, seconds, distances = [], [], []
    for start in range(0, len(packed), BLOCK):
        block = packed[start : start + BLOCK]
        distance = np.bitwise_count(block[:, None] ^ packed[None, start:])  # (block, N - start)
        rows, columns = np.nonzero(distance <= max_distance)
        keep = columns > rows  # upper triangle: j > i
        firsts.append(start + rows[keep])
        seconds.append(start + columns[keep])
        distances.append(distance[rows[keep], columns[keep]])
    join = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)  # noqa: E731
    return join(firsts, np.int64), join(seconds, np.int64), join(distances, np.int64)


def _aligned_correlation(thumbnails: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """For each candidate pair, the highest correlation of their 64 x 64 grayscale thumbnails over relative shifts
    of up to `ALIGNMENT` pixels (a shifted copy correlates almost perfectly once aligned); in chunks of pairs."""
    size, best = CONFIRM_SIZE, np.full(len(first), -1.0)
    for start in range(0, len(first), CONFIRM_CHUNK):
        a_all = thumbnails[first[start : start + CONFIRM_CHUNK]].astype(np.float32)
        b_all = thumbnails[second[start : start + CONFIRM_CHUNK]].astype(np.float32)
        for dy in range(-ALIGNMENT, ALIGNMENT + 1):
            for dx in range(-ALIGNMENT, ALIGNMENT + 1):
                a = a_all[:, max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)]
                b = b_all[:, max(-dy, 0) : size + min(-dy, 0), max(-dx, 0) : size + min(-dx, 0)]
                chunk = best[start : start + CONFIRM_CHUNK]
                np.maximum(chunk, _correlation(a, b), out=chunk)
    return best


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of rows of `a` and `b` (k, ...)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-6)
    b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-6)
    return (a * b).mean(1)


def near_duplicate_pairs(
    images_rgb: np.ndarray,
    split: Split,
    *,
    max_distance: int = NEAR_DUPLICATE_BITS,
    min_correlation: float = PIXEL_CORRELATION,
    prints: Fingerprints | None = None,
) -> pd.DataFrame:
    """Every pair of images whose perceptual hashes differ in at most `max_distance` bits and whose aligned
    thumbnails correlate at least `min_correlation` (-1 keeps every hash candidate), with their parts.

    Columns: first, second (row indices), distance (bits), exact (identical pixels), parts ("train/test" ...).
    `prints` (from `fingerprints`) saves reading the images again.
    """
    prints = prints or fingerprints(images_rgb)
    first, second, distance = _hamming_pairs(prints.hashes, max_distance)
    confirmed = _aligned_correlation(prints.thumbnails, first, second) >= min_correlation
    return _pairs_table(prints, split, first[confirmed], second[confirmed], distance[confirmed])


def _pairs_table(prints: Fingerprints, split, first, second, distance) -> pd.DataFrame:
    part_of = _part_names(len(prints), split)
    return pd.DataFrame(
        {
            "first": first,
            "second": second,
            "distance": distance,
            "exact": prints.digests[first] == prints.digests[second],
            "parts": ["/".join(sorted((part_of[a], part_of[b]))) for a, b in zip(first, second, strict=True)],
        }
    ).sort_values(["distance", "first", "second"], ignore_index=True)


def closest_cross_split_pairs(
    images_rgb: np.ndarray, split: Split, *, n: int = 6, prints: Fingerprints | None = None
) -> pd.DataFrame:
    """The `n` most similar pairs (by hash distance) whose images lie in different parts, duplicates or not.

    Only the best `n` per block are kept, so memory stays O(block x N).
    """
    prints = prints or fingerprints(images_rgb)
    packed = prints.hashes
    part_index = np.empty(len(packed), dtype=np.int8)
    for code, indices in enumerate(split.parts().values()):
        part_index[indices] = code
    columns = np.arange(len(packed))
    best = []
    for start in range(0, len(packed), BLOCK):
        block = packed[start : start + BLOCK]
        rows = np.arange(start, start + len(block))
        distance = np.bitwise_count(block[:, None] ^ packed[None, :])  # uint8 (block, N)
        valid = (columns[None, :] > rows[:, None]) & (part_index[rows, None] != part_index[None, :])
        distance[~valid] = 255
        flat = distance.ravel()
        keep = np.argpartition(flat, min(n, len(flat) - 1))[:n] if len(flat) else []
        best += [(int(flat[k]), start + int(k // len(packed)), int(k % len(packed))) for k in keep if flat[k] < 255]
    chosen = sorted(best)[:n]
    first = np.array([a for _, a, _ in chosen], dtype=np.int64)
    second = np.array([b for _, _, b in chosen], dtype=np.int64)
    distance = np.array([d for d, _, _ in chosen], dtype=np.int64)
    return _pairs_table(prints, split, first, second, distance).reset_index(drop=True)


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


def across_parts(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs whose two images lie in different parts."""
    if pairs.empty:
        return pairs
    return pairs[pairs["parts"].map(lambda parts: len(set(parts.split("/"))) == 2)]


def verdict(pairs: pd.DataFrame, look_alikes: pd.DataFrame | None = None) -> str:
    """One sentence: is there cross-split duplication that inflates validation or test scores? (and look-alikes)"""
    across = across_parts(pairs)
    if across.empty:
        text = "No exact or near-duplicate images across train, validation and test (perceptual hash and pixels)."
    else:
        exact = int(across["exact"].sum())
        text = (
            f"LEAKAGE: {len(across)} image pairs straddle the split ({exact} exact copies, {len(across) - exact} "
            f"near duplicates); validation and test scores are optimistic."
        )
    if look_alikes is not None and len(look_alikes):
        text += (
            f" {len(look_alikes)} cross-split pairs look alike to the frozen VGG16 (cosine ≥ {EMBEDDING_SIMILARITY}):"
            " likely the same scene or person, so scores may be optimistic."
        )
    return text


def embedding_neighbours(
    features: np.ndarray, split: Split, *, similarity: float = EMBEDDING_SIMILARITY
) -> pd.DataFrame:
    """Cross-split pairs whose backbone features (N, ...) have cosine similarity >= `similarity`, sorted.

    Features are standardised per dimension first, so "alike" means alike beyond what every crop shares (raw VGG16
    activations of head crops are all nearly parallel). Catches what pixel hashes miss: the same scene or person.
    """
    from sklearn.neighbors import NearestNeighbors

    flat = _standardised(features)
    neighbours = NearestNeighbors(radius=1 - similarity, metric="cosine", algorithm="brute").fit(flat)
    graph = neighbours.radius_neighbors_graph(flat, mode="distance", sort_results=False).tocoo()
    part_of = _part_names(len(features), split)
    keep = (graph.col > graph.row) & (part_of[graph.row] != part_of[graph.col])
    first, second = graph.row[keep].astype(np.int64), graph.col[keep].astype(np.int64)
    return pd.DataFrame(
        {
            "first": first,
            "second": second,
            "similarity": (1 - graph.data[keep]).round(4),
            "parts": ["/".join(sorted((part_of[a], part_of[b]))) for a, b in zip(first, second, strict=True)],
        }
    ).sort_values(["similarity", "first"], ascending=[False, True], ignore_index=True)


def _standardised(features: np.ndarray) -> np.ndarray:
    """(N, D) float32 copy, each dimension centred and scaled by its standard deviation (computed in chunks)."""
    n = len(features)
    total = np.zeros(int(np.prod(features.shape[1:])), np.float64)
    squares = np.zeros_like(total)
    for chunk in batches(features, 1024):
        flat = chunk.reshape(len(chunk), -1).astype(np.float64)
        total += flat.sum(0)
        squares += (flat**2).sum(0)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0))
    out = np.empty((n, len(total)), np.float32)
    for start, chunk in zip(range(0, n, 1024), batches(features, 1024), strict=True):
        out[start : start + len(chunk)] = (chunk.reshape(len(chunk), -1) - mean) / (std + 1e-6)
    return out


def duplicate_groups(n_images: int, pairs: pd.DataFrame) -> np.ndarray:
    """Group ids (N,) joining every image to its near duplicates (connected components of `pairs`)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = coo_matrix(
        (np.ones(len(pairs)), (pairs["first"].to_numpy(int), pairs["second"].to_numpy(int))),
        shape=(n_images, n_images),
    )
    return connected_components(edges, directed=False)[1]

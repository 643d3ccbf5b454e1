"""The leakage audit finds planted copies across the split and nothing on a clean set."""

import cv2
import numpy as np

from helmetlib.audit import (
    closest_cross_split_pairs,
    embedding_neighbours,
    leakage_summary,
    near_duplicate_pairs,
    perceptual_hashes,
    verdict,
)
from helmetlib.splits import Split


def clean_photos(n=24, size=96, seed=0):
    """Smooth random 'photos' that differ from each other at low frequencies."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC) for image in coarse])


def three_parts(n):
    indices = np.arange(n)
    return Split(train=indices[: n // 2], validation=indices[n // 2 : 3 * n // 4], test=indices[3 * n // 4 :])


def test_clean_set_has_no_duplicates():
    images = clean_photos()
    pairs = near_duplicate_pairs(images, three_parts(len(images)))
    assert pairs.empty
    assert verdict(pairs).startswith("No exact or near-duplicate")
    assert perceptual_hashes(images).shape == (24, 64)


def test_planted_exact_shifted_and_reencoded_copies_are_found_across_splits():
    images = clean_photos()
    parts = three_parts(len(images))  # train 0-11, validation 12-17, test 18-23
    images[20] = images[3]  # exact copy in test
    images[15] = np.roll(images[5], 2, axis=1)  # shifted by 2 px into validation
    encoded = cv2.imencode(".jpg", images[7], [cv2.IMWRITE_JPEG_QUALITY, 60])[1]
    images[22] = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)  # re-encoded copy in test
    pairs = near_duplicate_pairs(images, parts)
    found = {
        (int(a), int(b)): row for a, b, row in zip(pairs["first"], pairs["second"], pairs.itertuples(), strict=True)
    }
    assert {(3, 20), (5, 15), (7, 22)} <= set(found)
    assert found[(3, 20)].exact and found[(3, 20)].parts == "test/train" and found[(3, 20)].distance == 0
    assert not found[(5, 15)].exact and found[(5, 15)].parts == "train/validation"
    summary = leakage_summary(pairs)
    assert summary.loc["test/train", "exact"] == 1 and summary.loc["test/train", "near"] >= 1
    assert verdict(pairs).startswith("LEAKAGE: ")


def test_closest_cross_split_pairs_are_across_and_sorted():
    images = clean_photos()
    closest = closest_cross_split_pairs(images, three_parts(len(images)), n=4)
    assert len(closest) == 4
    assert all(first != second for first, second in closest["parts"].str.split("/"))
    assert closest["distance"].is_monotonic_increasing


def test_embedding_neighbours_find_similar_features_across_parts_only():
    rng = np.random.default_rng(1)
    features = rng.random((12, 2, 2, 8)).astype(np.float32)
    features[9] = features[2] * 1.01  # the same scene, a little brighter, in test
    features[3] = features[1]  # a look-alike inside train only
    parts = three_parts(12)  # train 0-5, validation 6-8, test 9-11
    neighbours = embedding_neighbours(features, parts, similarity=0.95)
    assert list(zip(neighbours["first"], neighbours["second"], strict=True)) == [(2, 9)]
    assert neighbours.loc[0, "parts"] == "test/train" and neighbours.loc[0, "similarity"] >= 0.95


def test_duplicate_groups_join_chains_of_copies():
    import pandas as pd

    from helmetlib.audit import duplicate_groups

    pairs = pd.DataFrame({"first": [0, 1, 4], "second": [1, 2, 5]})
    groups = duplicate_groups(6, pairs)
    assert groups[0] == groups[1] == groups[2] and groups[4] == groups[5]
    assert len({groups[0], groups[3], groups[4]}) == 3

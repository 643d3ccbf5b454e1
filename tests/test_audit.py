"""The leakage audit finds planted copies across the split, nothing on clean or synthetic sets, and gives the
same pairs as the quadratic reference computation in bounded memory."""

import cv2
import numpy as np
import pytest
from conftest import HELMET_DEV, require

from helmetlib import load_dataset, make_demo_dataset, split
from helmetlib.data import audit
from helmetlib.data.audit import (
    closest_cross_split_pairs,
    embedding_neighbours,
    leakage_summary,
    near_duplicate_pairs,
    perceptual_hashes,
    verdict,
)
from helmetlib.data.splits import Split


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

    from helmetlib.data.audit import duplicate_groups

    pairs = pd.DataFrame({"first": [0, 1, 4], "second": [1, 2, 5]})
    groups = duplicate_groups(6, pairs)
    assert groups[0] == groups[1] == groups[2] and groups[4] == groups[5]
    assert len({groups[0], groups[3], groups[4]}) == 3


def planted_set(n=300, seed=1):
    """Distinct photos with copies planted across the split: exact, shifted, re-encoded, rescaled."""
    images = clean_photos(n, seed=seed)
    rng = np.random.default_rng(seed)
    sources = rng.choice(n // 2, size=20, replace=False)
    targets = rng.choice(np.arange(n // 2, n), size=20, replace=False)
    for index, (source, target) in enumerate(zip(sources, targets, strict=True)):
        image = images[source]
        variants = [
            image,
            np.roll(image, 1, axis=1),
            cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_UNCHANGED),
            cv2.resize(cv2.resize(image, (72, 72)), (96, 96)),
        ]
        images[target] = variants[index % 4]
    return images, set(zip(sources.tolist(), targets.tolist(), strict=True))


def quadratic_reference(images, max_distance):
    """The earlier implementation: every pair's hash distance from an N x N x 64 comparison."""
    hashes = perceptual_hashes(images).astype(np.uint8)
    distances = (hashes[:, None, :] != hashes[None, :, :]).sum(axis=2)
    first, second = np.nonzero(np.triu(distances <= max_distance, k=1))
    return {(int(a), int(b)): int(distances[a, b]) for a, b in zip(first, second, strict=True)}


def test_blockwise_hamming_search_equals_the_quadratic_reference(monkeypatch):
    monkeypatch.setattr(audit, "BLOCK", 37)  # many blocks, one of them ragged
    images, planted = planted_set()
    parts = three_parts(len(images))
    pairs = near_duplicate_pairs(images, parts, min_correlation=-1)  # hash stage only
    found = {(a, b): d for a, b, d in zip(pairs["first"], pairs["second"], pairs["distance"], strict=True)}
    assert found == quadratic_reference(images, audit.NEAR_DUPLICATE_BITS)
    confirmed = near_duplicate_pairs(images, parts)
    assert planted <= set(zip(confirmed["first"], confirmed["second"], strict=True))


def test_closest_pairs_and_look_alikes_equal_their_quadratic_references(monkeypatch):
    monkeypatch.setattr(audit, "BLOCK", 37)
    images, _ = planted_set(120, seed=3)
    parts = three_parts(len(images))
    reference = quadratic_reference(images, 64)
    part_of = {index: name for name, part in parts.parts().items() for index in part}
    across = sorted((d, a, b) for (a, b), d in reference.items() if part_of[a] != part_of[b])
    closest = closest_cross_split_pairs(images, parts, n=5)
    assert list(closest["distance"]) == [d for d, _, _ in across[:5]]

    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 4, 4, 8)).astype(np.float32)
    features[100] = features[3] * 1.02 + 0.01
    features[70] = features[10]
    flat = features.reshape(120, -1)
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-6)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    cosine = flat @ flat.T
    expected = {
        (a, b) for a, b in zip(*np.nonzero(np.triu(cosine >= 0.9, k=1)), strict=True) if part_of[a] != part_of[b]
    }
    neighbours = embedding_neighbours(features, parts)
    assert set(zip(neighbours["first"], neighbours["second"], strict=True)) == expected == {(3, 100), (10, 70)}


def test_no_false_alarm_on_the_synthetic_demo_set():
    demo = make_demo_dataset(160)
    pairs = near_duplicate_pairs(demo.images, split(demo.labels))
    assert pairs.empty, pairs.head()  # distinct drawings that share a layout are not duplicates
    assert verdict(pairs).startswith("No exact or near-duplicate")


def test_no_false_alarm_on_helmet_dev_but_its_planted_copies_are_found():
    dataset = load_dataset(require(HELMET_DEV, "helmet-dev photo set"))
    parts = split(dataset.labels)
    assert near_duplicate_pairs(dataset.images, parts).empty
    images = np.array(dataset.images[:60])
    images[50] = np.roll(images[5], 2, axis=1)
    images[55] = cv2.imdecode(cv2.imencode(".jpg", images[7], [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED)
    pairs = near_duplicate_pairs(images, three_parts(60))
    assert {(5, 50), (7, 55)} <= set(zip(pairs["first"], pairs["second"], strict=True))


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_sets(n):
    images = clean_photos(max(n, 1))[:n]
    parts = Split(train=np.arange(n), validation=np.array([], int), test=np.array([], int))
    assert near_duplicate_pairs(images, parts).empty

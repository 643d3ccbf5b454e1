"""Colour order, grayscale, normalisation and the split."""

import cv2
import numpy as np
import pytest
from keras.applications.vgg16 import preprocess_input

from helmetlib import normalize, split, to_grayscale, to_rgb
from helmetlib.core.preprocess import resize


def test_to_rgb_swaps_known_pixels():
    bgr = np.array([[[[255, 0, 0], [0, 0, 255], [10, 20, 30]]]], dtype=np.uint8)
    rgb = to_rgb(bgr)
    assert rgb.tolist() == [[[[0, 0, 255], [255, 0, 0], [30, 20, 10]]]]
    assert rgb.flags["C_CONTIGUOUS"] and rgb.dtype == np.uint8
    np.testing.assert_array_equal(to_rgb(rgb), bgr)


def test_grayscale_equals_opencv(demo_small):
    gray = to_grayscale(demo_small.images)
    assert gray.shape == demo_small.images.shape[:3] and gray.dtype == np.uint8
    for image, expected in zip(demo_small.images[:5], gray[:5], strict=True):
        np.testing.assert_array_equal(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), expected)
    white_red = np.array([[[[255, 255, 255], [255, 0, 0]]]], dtype=np.uint8)
    assert to_grayscale(white_red).tolist() == [[[255, 76]]]  # 0.299 * 255 rounds to 76


def test_unit_normalisation_range_and_dtype(demo_small):
    x = normalize(demo_small.images)
    assert x.dtype == np.float32 and x.shape == demo_small.images.shape
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() == pytest.approx(demo_small.images.max() / 255)


def test_vgg16_normalisation_matches_keras(demo_small):
    x = normalize(demo_small.images[:3], "vgg16")
    np.testing.assert_allclose(x, preprocess_input(demo_small.images[:3].astype(np.float32)))
    assert x[0, 0, 0, 0] == pytest.approx(demo_small.images[0, 0, 0, 2] - 103.939, abs=1e-3)  # BGR, mean removed


def test_unknown_normalisation():
    with pytest.raises(ValueError, match="unknown normalisation 'zscore'"):
        normalize(np.zeros((1, 2, 2, 3), np.uint8), "zscore")


def test_resize(demo_small):
    assert resize(demo_small.images[:2], 32).shape == (2, 32, 32, 3)
    assert resize(demo_small.images, 48) is demo_small.images


def test_split_sizes_of_the_study():
    labels = np.array([1] * 311 + [0] * 320)
    parts = split(labels)
    assert parts.sizes() == {"train": 441, "validation": 95, "test": 95}
    everything = np.concatenate(list(parts.parts().values()))
    assert sorted(everything.tolist()) == list(range(631))


def test_split_is_stratified_and_deterministic():
    labels = np.random.default_rng(0).permutation(np.array([1] * 300 + [0] * 300))
    first, second = split(labels), split(labels)
    for name, indices in first.parts().items():
        np.testing.assert_array_equal(indices, second.parts()[name])
        assert abs(labels[indices].mean() - 0.5) < 0.02
    assert not np.array_equal(first.test, split(labels, random_state=0).test)

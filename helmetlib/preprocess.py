"""Colour order, grayscale, resizing and normalisation of image batches (N, H, W, 3)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Normalization = Literal["unit", "vgg16", "pixels"]
NORMALIZATIONS: dict[str, str] = {
    "unit": "float32 RGB divided by 255, in [0, 1] (the study's convention for every model)",
    "vgg16": "keras.applications.vgg16.preprocess_input: RGB to BGR, ImageNet channel means subtracted",
    "pixels": "float32 RGB in [0, 255]; the model normalises inside, for each of its members",
}
VGG16_MEANS_BGR = (103.939, 116.779, 123.68)  # what preprocess_input subtracts after the swap to BGR


def to_rgb(images_bgr: np.ndarray) -> np.ndarray:
    """Swap BGR to RGB (the same swap turns RGB back into BGR); returns a new contiguous array."""
    return np.ascontiguousarray(images_bgr[..., ::-1])


def to_grayscale(images_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 images (N, H, W, 3) to grayscale (N, H, W), exactly as `cv2.cvtColor(..., COLOR_RGB2GRAY)`."""
    n, height, width, _ = images_rgb.shape
    stacked = np.ascontiguousarray(images_rgb).reshape(n * height, width, 3)
    return cv2.cvtColor(stacked, cv2.COLOR_RGB2GRAY).reshape(n, height, width)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a batch to size x size pixels with area interpolation (a no-op when already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images])


def normalize(images_rgb: np.ndarray, mode: Normalization = "unit") -> np.ndarray:
    """Scale RGB uint8 images to float32: `unit` = /255 (the study), `vgg16` = VGG16's `preprocess_input`,
    `pixels` = unscaled (a model that normalises inside)."""
    if mode == "unit":
        return images_rgb.astype(np.float32) / 255.0
    if mode == "pixels":
        return images_rgb.astype(np.float32)
    if mode == "vgg16":
        from keras.applications.vgg16 import preprocess_input

        return preprocess_input(images_rgb.astype(np.float32))
    raise ValueError(f"unknown normalisation {mode!r}; choose one of {sorted(NORMALIZATIONS)}")

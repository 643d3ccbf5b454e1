"""Colour order, grayscale, resizing and normalisation of image batches (N, H, W, 3)."""

from __future__ import annotations

import cv2
import numpy as np

from helmetlib.core.backbones import BACKBONES

Normalization = str  # a key of NORMALIZATIONS
NORMALIZATIONS: dict[str, str] = {
    "unit": "float32 RGB divided by 255, in [0, 1] (the study's convention for every model)",
    **{
        name: f"{backbone.preprocess}.preprocess_input: RGB to BGR, ImageNet channel means subtracted"
        for name, backbone in BACKBONES.items()
    },
    "pixels": "float32 RGB in [0, 255]; the model normalises inside, for each of its members",
}


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
    if mode in BACKBONES:
        return BACKBONES[mode].normalize(images_rgb)
    raise ValueError(f"unknown normalisation {mode!r}; choose one of {sorted(NORMALIZATIONS)}")

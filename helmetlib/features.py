"""Frozen-backbone features computed once per data, weights, preprocessing, size and precision, cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helmetlib.preprocess import Normalization, normalize

if TYPE_CHECKING:
    import keras

PRECISION_ENV = "HELMETLIB_PRECISION"
PRECISIONS = ("float32", "bfloat16", "float16")


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), where bfloat16 inference pays off."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(cpuinfo.split())
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def precision_override() -> str | None:
    """The precision forced by the environment variable HELMETLIB_PRECISION, if set (for all backbone features)."""
    override = os.environ.get(PRECISION_ENV)
    if override and override not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV}={override!r}; choose one of {PRECISIONS}")
    return override or None


def backbone_precision() -> str:
    """The faster precision for backbone inference here: `bfloat16` on a GPU or a bf16-capable CPU, else `float32`."""
    return precision_override() or ("bfloat16" if gpu_available() or cpu_supports_bfloat16() else "float32")


def weights_fingerprint(model: keras.Model) -> str:
    """Short sha256 of a model's weight values (changes whenever any weight does)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def feature_extractor(backbone: keras.Model, precision: str) -> keras.Model:
    """The VGG16 backbone itself for float32, else a VGG16 computing in `mixed_<precision>` with the same weights."""
    if precision == "float32":
        return backbone
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(f"mixed_{precision}")  # clone_model would keep each layer's saved float32 policy
    try:
        extractor = keras.applications.VGG16(include_top=False, weights=None, input_shape=backbone.input_shape[1:])
    finally:
        keras.config.set_dtype_policy(previous)
    extractor.set_weights(backbone.get_weights())
    return extractor


def compute_features(
    extractor: keras.Model,
    images_rgb: np.ndarray,
    *,
    normalization: Normalization,
    augmenter: keras.Layer | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Backbone outputs (N, ...) as float32 for uint8 RGB images, normalised (and augmented) batch by batch."""
    outputs = []
    for start in range(0, len(images_rgb), batch_size):
        batch = normalize(images_rgb[start : start + batch_size], normalization)
        if augmenter is not None:
            batch = augmenter(batch, training=True)
        outputs.append(np.asarray(extractor(batch, training=False), dtype=np.float32))
    return np.concatenate(outputs)


def feature_key(data_hash: str, backbone: keras.Model, normalization: str, precision: str, view: str) -> dict:
    """What identifies a feature array: data, backbone weights, preprocessing, input size, precision and view."""
    return {
        "data": data_hash,
        "weights": weights_fingerprint(backbone),
        "normalization": normalization,
        "input_shape": list(backbone.input_shape[1:]),
        "precision": precision,
        "view": view,
    }


def cached_features(
    images_rgb: np.ndarray,
    data_hash: str,
    backbone: keras.Model,
    cache: FeatureCache,
    *,
    normalization: Normalization = "unit",
    precision: str = "float32",
) -> np.ndarray:
    """Backbone features of all images, from `cache` when the same data, weights and settings were seen before."""
    return cache.get_or_compute(
        feature_key(data_hash, backbone, normalization, precision, "original"),
        lambda: compute_features(feature_extractor(backbone, precision), images_rgb, normalization=normalization),
    )


class FeatureCache:
    """Feature arrays on disk under `folder`, one `.npy` per key; a changed key part means a recomputation."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0
        self.misses = 0

    def path(self, key: dict) -> Path | None:
        """Where the features for `key` live (None without a folder)."""
        if self.folder is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.folder / f"features-{digest}.npy"

    def get_or_compute(self, key: dict, compute) -> np.ndarray:
        """Load the array stored for `key`, or call `compute()` and store its result atomically."""
        path = self.path(key)
        if path is not None and path.is_file():
            try:
                features = np.load(path, allow_pickle=False)
                self.hits += 1
                return features
            except (ValueError, OSError, EOFError):
                path.unlink(missing_ok=True)  # a damaged cache file is recomputed, never trusted
        features = compute()
        self.misses += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            with partial.open("wb") as f:
                np.save(f, features, allow_pickle=False)
            partial.replace(path)
            path.with_suffix(".json").write_text(json.dumps(key, indent=2, sort_keys=True))
        return features

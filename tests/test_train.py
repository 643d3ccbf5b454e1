"""Training: the CNN learns the demo set; the fast (cached features) path equals the study-faithful one."""

import json

import keras
import numpy as np
import pytest
from conftest import HELMET_DEV, STAND_IN_WEIGHTS, require

from helmetlib import Dataset, load_dataset, make_demo_dataset, performance, predict_proba, split, train_model
from helmetlib.features import (
    FeatureCache,
    backbone_precision,
    compute_features,
    cpu_supports_bfloat16,
    feature_extractor,
    gpu_available,
    precision_override,
)
from helmetlib.models import vgg16_backbone
from helmetlib.train import save_trained
from helmetlib.weights import resolve_weights


@pytest.fixture(scope="module")
def demo_64():
    return make_demo_dataset(160, seed=1, image_size=64)


def test_cnn_learns_the_demo_set(demo_64):
    parts = split(demo_64.labels)
    trained = train_model("cnn", demo_64, parts, epochs=15, batch_size=16)
    validation = performance(demo_64.labels[parts.validation], trained.probabilities["validation"])
    assert validation["accuracy"] > 0.8
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    assert set(trained.probabilities) == {"train", "validation"}  # the test part is never predicted here
    assert trained.mode == "direct" and len(trained.history["val_accuracy"]) == 15


def test_fast_head_equals_faithful_training(demo_small, tmp_path):
    parts = split(demo_small.labels)
    options = {"weights": None, "epochs": 3, "batch_size": 8, "precision": "float32"}
    fast = train_model("vgg16_linear", demo_small, parts, cache_dir=tmp_path, **options)
    faithful = train_model("vgg16_linear", demo_small, parts, faithful=True, **options)
    assert (fast.mode, faithful.mode) == ("fast", "faithful")
    for part in ("train", "validation"):
        np.testing.assert_allclose(fast.probabilities[part], faithful.probabilities[part], atol=1e-4)
    np.testing.assert_allclose(fast.history["loss"], faithful.history["loss"], rtol=1e-4)


def test_feature_cache_reuse_and_invalidation(demo_small, tmp_path):
    parts = split(demo_small.labels)
    options = {"epochs": 2, "batch_size": 8, "precision": "float32", "cache_dir": tmp_path}

    def cached_files():
        return sorted(path.name for path in tmp_path.glob("features-*.npy"))

    first = train_model("vgg16_linear", demo_small, parts, weights=None, **options)
    assert len(cached_files()) == 1 and "1 computed" in first.notes[-1]
    again = train_model("vgg16_mlp", demo_small, parts, weights=None, **options)
    assert len(cached_files()) == 1 and "1 reused" in again.notes[-1]
    uncached = train_model("vgg16_mlp", demo_small, parts, weights=None, **{**options, "cache_dir": None})
    np.testing.assert_allclose(again.probabilities["validation"], uncached.probabilities["validation"], atol=1e-6)

    key = json.loads(next(tmp_path.glob("features-*.json")).read_text())
    assert key["data"] == demo_small.content_hash and key["precision"] == "float32"
    other_data = make_demo_dataset(48, seed=4, image_size=48)
    train_model("vgg16_linear", other_data, split(other_data.labels), weights=None, **options)
    assert len(cached_files()) == 2  # changed data
    keras.utils.set_random_seed(0)
    weights_file = tmp_path / "other.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3)).save_weights(weights_file)
    train_model("vgg16_linear", demo_small, parts, weights=weights_file, **options)
    assert len(cached_files()) == 3  # changed weights
    train_model("vgg16_linear", demo_small, parts, weights=None, **{**options, "precision": "bfloat16"})
    assert len(cached_files()) == 4  # changed precision


def test_fast_augmented_views_are_cached(demo_small, tmp_path):
    parts = split(demo_small.labels)
    trained = train_model(
        "vgg16_mlp_aug",
        demo_small,
        parts,
        weights=None,
        epochs=2,
        batch_size=8,
        precision="float32",
        cache_dir=tmp_path,
        augmented_views=2,
    )
    assert len(list(tmp_path.glob("features-*.npy"))) == 3  # original + 2 augmented views of the train part
    assert any("2 pre-drawn augmented views" in note for note in trained.notes)
    assert len(trained.history["loss"]) == 2


def test_saved_model_reproduces_probabilities(demo_small, tmp_path):
    parts = split(demo_small.labels)
    trained = train_model("vgg16_mlp", demo_small, parts, weights=None, epochs=1, batch_size=8, precision="float32")
    paths = save_trained(trained, tmp_path)
    loaded = keras.saving.load_model(paths["model"], safe_mode=True)
    probabilities = predict_proba(loaded, demo_small.images[parts.validation])
    np.testing.assert_allclose(probabilities, trained.probabilities["validation"], atol=1e-4)
    assert json.loads(paths["history"].read_text())["loss"] == trained.history["loss"]
    assert sorted(np.load(paths["probabilities"]).files) == ["train", "validation"]


def test_transfer_head_learns_real_photos_with_stand_in_weights(tmp_path):
    """Opt-in when ../shared is present: 240 real crops through the pretrained stand-in backbone."""
    weights = require(STAND_IN_WEIGHTS, "stand-in VGG16 weights")
    full = load_dataset(require(HELMET_DEV, "helmet-dev photo set"))
    rows = np.concatenate([np.flatnonzero(full.labels == label)[:120] for label in (0, 1)])
    subset = Dataset(full.images[rows], full.labels[rows], None, None, full.content_hash + "-240")
    parts = split(subset.labels)
    trained = train_model("vgg16_linear", subset, parts, weights=weights, epochs=40, batch_size=16, cache_dir=tmp_path)
    assert performance(subset.labels[parts.train], trained.probabilities["train"])["accuracy"] > 0.8
    assert performance(subset.labels[parts.validation], trained.probabilities["validation"])["accuracy"] > 0.75


def test_bfloat16_extractor_computes_in_bfloat16_with_the_same_weights(demo_small):
    backbone = vgg16_backbone(resolve_weights(None), demo_small.images.shape[1:])
    extractor = feature_extractor(backbone, "bfloat16")
    assert {layer.compute_dtype for layer in extractor.layers if layer.weights} == {"bfloat16"}
    assert all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), extractor.get_weights(), strict=True))
    reference = compute_features(backbone, demo_small.images[:4], normalization="unit")
    reduced = compute_features(extractor, demo_small.images[:4], normalization="unit")
    assert reduced.dtype == np.float32 and reduced.shape == reference.shape
    assert np.abs(reduced - reference).max() <= 0.05 * np.abs(reference).max() + 1e-6


def test_feature_cache_keys_and_damaged_files(tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"data": "abc", "weights": "w", "normalization": "unit", "input_shape": [48, 48, 3], "precision": "float32"}
    calls = []

    def compute():
        calls.append(1)
        return np.full((2, 3), len(calls), dtype=np.float32)

    first = cache.get_or_compute(key, compute)
    np.testing.assert_array_equal(cache.get_or_compute(key, compute), first)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    cache.get_or_compute({**key, "normalization": "vgg16"}, compute)  # changed preprocessing
    cache.get_or_compute({**key, "input_shape": [64, 64, 3]}, compute)  # changed input size
    assert len(calls) == 3 and len(list(tmp_path.glob("features-*.npy"))) == 3
    cache.path(key).write_bytes(b"damaged")
    assert cache.get_or_compute(key, compute)[0, 0] == 4  # a damaged file is recomputed, not trusted
    assert not list(tmp_path.glob("*.partial"))


def test_precision_environment_override(monkeypatch):
    monkeypatch.setenv("HELMETLIB_PRECISION", "float32")
    assert backbone_precision() == "float32" and precision_override() == "float32"
    monkeypatch.setenv("HELMETLIB_PRECISION", "int4")
    with pytest.raises(ValueError, match="HELMETLIB_PRECISION='int4'; choose one of"):
        backbone_precision()
    monkeypatch.delenv("HELMETLIB_PRECISION")
    assert precision_override() is None
    assert backbone_precision() == ("bfloat16" if cpu_supports_bfloat16() or gpu_available() else "float32")


def test_balanced_class_weights_only_when_imbalanced():
    from helmetlib.train import balanced_class_weights

    assert balanced_class_weights(np.array([0, 1] * 10)) is None
    weights = balanced_class_weights(np.array([0] * 30 + [1] * 10))
    assert weights == pytest.approx({0: 40 / 60, 1: 40 / 20})


def test_recommended_model_stops_early_on_its_own_features(demo_small, tmp_path):
    parts = split(demo_small.labels)
    trained = train_model(
        "vgg16_gap", demo_small, parts, weights=None, epochs=30, batch_size=8, precision="float32", cache_dir=tmp_path
    )
    key = json.loads(next(tmp_path.glob("features-*.json")).read_text())
    assert key["normalization"] == "vgg16"  # its own preprocessing, so its own cached features
    assert any("early stopping" in note for note in trained.notes)
    assert 1 <= len(trained.history["loss"]) <= 30 and "learning_rate" in trained.history

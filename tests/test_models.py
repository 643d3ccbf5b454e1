"""The four study builders, weights resolution and the augmentation."""

import keras
import numpy as np
import pytest
from conftest import STAND_IN_WEIGHTS, require

from helmetlib import MODEL_NAMES, augmentation, build_model, resolve_weights
from helmetlib.models import BACKBONE_LAYER, HEAD_LAYER
from helmetlib.weights import WeightsFallbackWarning

UNREACHABLE = "http://127.0.0.1:9/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def trainable_count(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


@pytest.mark.parametrize(
    ("name", "total", "trainable", "learning_rate"),
    [
        ("cnn", 413_257, 413_257, 1e-3),
        ("vgg16_linear", 14_733_121, 18_433, 1e-4),
        ("vgg16_mlp", 19_466_561, 4_751_873, 1e-4),
        ("vgg16_mlp_aug", 19_466_561, 4_751_873, 1e-4),
        ("vgg16_gap", 14_715_201, 513, 1e-3),
    ],
)
def test_study_parameter_counts(name, total, trainable, learning_rate):
    model = build_model(name, weights=None)
    assert model.count_params() == total
    assert trainable_count(model) == trainable
    assert model.input_shape == (None, 200, 200, 3) and model.output_shape == (None, 1)
    assert float(model.optimizer.learning_rate) == pytest.approx(learning_rate)
    assert model.loss == "binary_crossentropy"
    assert model.layers[-1].name == "prediction" or model.get_layer(HEAD_LAYER).layers[-1].name == "prediction"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_small_input_predicts_probabilities_and_trains(name):
    model = build_model(name, weights=None, input_shape=(48, 48, 3))
    x = np.random.default_rng(0).random((4, 48, 48, 3), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (4, 1) and ((probabilities >= 0) & (probabilities <= 1)).all()
    model.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert any(changed)
    if name != "cnn":
        backbone = model.get_layer(BACKBONE_LAYER)
        assert not backbone.trainable
        assert not any(changed[: len(backbone.get_weights())])  # the frozen backbone did not move


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of cnn, vgg16_linear"):
        build_model("resnet", weights=None)


def test_imagenet_fallback_is_loud_and_recorded(tmp_path):
    with pytest.warns(WeightsFallbackWarning, match="RANDOM"):
        choice = resolve_weights("imagenet", url=UNREACHABLE, cache_dir=tmp_path)
    assert (choice.requested, choice.used, choice.is_fallback) == ("imagenet", "random", True)
    assert "could not download" in choice.fallback_reason
    assert "RANDOMLY INITIALISED" in choice.banner() and choice.banner_html().startswith("<div")
    assert choice.to_dict()["fallback_reason"] == choice.fallback_reason
    model = build_model("vgg16_linear", weights=choice, input_shape=(32, 32, 3))
    assert model.count_params() == 14_714_688 + 513


def test_none_weights_are_not_a_fallback():
    choice = resolve_weights(None)
    assert (choice.used, choice.is_fallback, choice.banner(), choice.banner_html()) == ("random", False, None, "")
    assert resolve_weights("none") == choice


def test_local_weights_file_round_trip(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16.weights.h5"
    source.save_weights(path)
    choice = resolve_weights(path)
    assert choice.used == "file" and choice.path == str(path.resolve()) and len(choice.sha256) == 64
    model = build_model("vgg16_mlp", weights=path, input_shape=(32, 32, 3))
    for expected, loaded in zip(source.get_weights(), model.get_layer(BACKBONE_LAYER).get_weights(), strict=True):
        np.testing.assert_array_equal(expected, loaded)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5: weights file not found"):
        resolve_weights(tmp_path / "nope.h5")


def test_stand_in_weights_load():
    path = require(STAND_IN_WEIGHTS, "stand-in VGG16 weights")
    model = build_model("vgg16_linear", weights=path)
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(200, 200, 3))
    reference.load_weights(path)
    np.testing.assert_array_equal(model.get_layer(BACKBONE_LAYER).get_weights()[0], reference.get_weights()[0])


def test_augmentation_changes_images_but_keeps_shape_and_fills_nearest(demo_small):
    x = demo_small.images[:8].astype(np.float32) / 255
    augmented = np.asarray(augmentation(seed=1)(x, training=True))
    assert augmented.shape == x.shape
    assert np.abs(augmented - x).mean() > 0.02
    constant = np.full((2, 48, 48, 3), 0.6, np.float32)  # nearest fill never brings in black borders
    np.testing.assert_allclose(np.asarray(augmentation(seed=2)(constant, training=True)), constant, atol=1e-5)

"""The builders (the study's four, models 5 and 6), weights resolution, ensembles and the augmentation."""

import numpy as np
import pytest
from conftest import STAND_IN_WEIGHTS, require

from helmetlib import MODEL_NAMES, augmentation, build_model, resolve_weights
from helmetlib.core.backend import keras
from helmetlib.core.weights import WeightsFallbackWarning
from helmetlib.models.builders import BACKBONE_LAYER, HEAD_LAYER, average_of, simple_cnn, vgg16_backbone

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
        ("vgg16_gap", 14_715_201, 513, None),
        ("vgg16_multiscale", 14_717_249, 2_561, None),
    ],
)
def test_study_parameter_counts(name, total, trainable, learning_rate):
    model = build_model(name, weights=None)
    assert model.count_params() == total
    assert trainable_count(model) == trainable
    assert model.input_shape == (None, 200, 200, 3) and model.output_shape == (None, 1)
    if learning_rate is not None:  # the study's optimisers; models 5 and 6 are tuned (see specs)
        assert float(model.optimizer.learning_rate) == pytest.approx(learning_rate)
    assert model.loss == "binary_crossentropy"
    assert model.layers[-1].name == "prediction" or model.get_layer(HEAD_LAYER).layers[-1].name == "prediction"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_small_input_predicts_probabilities_and_trains(name):
    keras.utils.set_random_seed(0)
    model = build_model(name, weights=None, input_shape=(48, 48, 3))
    x = np.random.default_rng(0).random((4, 48, 48, 3), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (4, 1) and ((probabilities >= 0) & (probabilities <= 1)).all()
    # unbalanced labels: with every ReLU of a random start dead the output is sigmoid(0) = 0.5, and balanced labels
    # would give the output bias a zero gradient (nothing would move)
    model.fit(x, np.array([0, 1, 1, 1]), epochs=1, verbose=0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert any(changed)
    if name != "cnn":
        backbone = model.get_layer(BACKBONE_LAYER)
        assert not backbone.trainable
        assert not any(changed[: len(backbone.get_weights())])  # the frozen backbone did not move


def test_multiscale_backbone_pools_blocks_3_to_5():
    model = build_model("vgg16_multiscale", weights=None, input_shape=(64, 64, 3))
    backbone = model.get_layer(BACKBONE_LAYER)
    assert backbone.output_shape == (None, 2 * (256 + 512 + 512))
    assert backbone.get_layer("block5_conv3") is not None  # Grad-CAM's layer stays reachable
    assert model.get_layer(HEAD_LAYER).get_layer("standardise") is not None


def test_random_backbone_is_the_same_for_every_seed():
    keras.utils.set_random_seed(1)
    first = vgg16_backbone(resolve_weights(None), (32, 32, 3)).get_weights()
    keras.utils.set_random_seed(2)
    second = vgg16_backbone(resolve_weights(None), (32, 32, 3)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.std(first[0]) > 0.01  # Glorot-uniform, not zeros


def test_seed_ensemble_averages_its_members():
    members = [simple_cnn((32, 32, 3)) for _ in range(3)]
    x = np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)
    expected = np.mean([member.predict(x, verbose=0) for member in members], axis=0)
    ensemble = average_of(members, name="cnn")
    assert ensemble.name == "cnn" and ensemble.output_shape == (None, 1)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    assert average_of(members[:1], name="cnn") is members[0]


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of cnn, vgg16_linear"):
        build_model("resnet", weights=None)


def test_imagenet_fallback_is_loud_and_recorded(tmp_path, capsys):
    with pytest.warns(WeightsFallbackWarning, match="RANDOM"):
        choice = resolve_weights("imagenet", url=UNREACHABLE, cache_dir=tmp_path)
    assert capsys.readouterr().out == ""  # a warning, not Keras' "Downloading data from ..." in a report
    assert (choice.requested, choice.used, choice.is_fallback) == ("imagenet", "random", True)
    assert "could not download" in choice.fallback_reason
    assert "RANDOMLY INITIALISED" in choice.banner() and choice.banner_level == "danger"
    assert choice.to_json()["fallback_reason"] == choice.fallback_reason
    model = build_model("vgg16_linear", weights=choice, input_shape=(32, 32, 3))
    assert model.count_params() == 14_714_688 + 513


def test_none_weights_are_not_a_fallback_but_still_get_a_banner():
    choice = resolve_weights(None)
    assert (choice.used, choice.is_fallback) == ("random", False)
    assert "RANDOMLY INITIALISED (--weights none)" in choice.banner() and choice.banner_level == "danger"
    assert resolve_weights("none") == choice


def test_local_weights_file_round_trip(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16.weights.h5"
    source.save_weights(path)
    choice = resolve_weights(path)
    assert choice.used == "file" and choice.path == str(path.resolve()) and len(choice.sha256) == 64
    assert f"vgg16.weights.h5 (sha256 {choice.sha256[:12]})" in choice.banner() and choice.banner_level == "warning"
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

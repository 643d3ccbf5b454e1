"""Grad-CAM maps and the mistake gallery."""

import numpy as np

from helmetlib import build_model, normalize
from helmetlib.core.backend import keras
from helmetlib.deploy.artifacts import inference_copy
from helmetlib.models.builders import average_of
from helmetlib.reports.explain import confident_mistakes, explanation_examples, grad_cam


def test_grad_cam_of_a_trained_cnn_has_the_image_size_and_is_not_constant(demo_64, learnt_cnn, tmp_path):
    demo, trained = demo_64, learnt_cnn
    maps = grad_cam(trained.model, normalize(demo.images[:6]))
    assert maps.shape == (6, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(cam.std() > 0.01 for cam in maps)  # logits: even saturated (P = 1.00) predictions have a map
    probabilities = trained.model.predict(normalize(demo.images[:6]), verbose=0)
    assert probabilities.min() >= 0 and probabilities.max() <= 1  # the sigmoid is back after the maps
    inference_copy(trained.model).save(tmp_path / "cnn.keras")  # the saved (functional) copy gives the same maps
    reloaded = keras.saving.load_model(tmp_path / "cnn.keras", safe_mode=True)
    np.testing.assert_allclose(grad_cam(reloaded, normalize(demo.images[:6])), maps, atol=1e-4)
    ensemble = average_of([trained.model, reloaded], name="cnn")  # two equal members: the members' map
    np.testing.assert_allclose(grad_cam(ensemble, normalize(demo.images[:6])), maps, atol=1e-4)
    helmets = [cam for cam, label in zip(maps, demo.labels[:6], strict=True) if label == 1 and cam.std() > 0.01]
    assert helmets and all(cam[:38].mean() > cam[38:].mean() for cam in helmets)  # on the head, not the shirt


def test_grad_cam_of_a_vgg16_model(demo_64):
    demo = demo_64
    model = build_model("vgg16_mlp", weights=None, input_shape=(64, 64, 3))
    maps = grad_cam(model, normalize(demo.images[:3]))
    assert maps.shape == (3, 64, 64)
    assert any(cam.std() > 0.01 for cam in maps)


def test_confident_mistakes_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.9, 0.2, 0.45, 0.05, 0.8])  # wrong: 0 (by 0.4), 2 (by 0.05), 3 (by 0.45)
    assert confident_mistakes(y, p).tolist() == [3, 0, 2]
    assert confident_mistakes(y, p, n=1).tolist() == [3]


def test_explanation_examples_put_confident_right_answers_before_mistakes():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.9, 0.2, 0.45, 0.05, 0.8])
    assert explanation_examples(y, p, n=2).tolist() == [4, 1, 3, 0]

"""Grad-CAM heat maps (where a model looks) and the most confident mistakes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.backend import keras, tf
from helmetlib.core.timings import timed
from helmetlib.evaluation.metrics import predict_labels
from helmetlib.models.builders import BACKBONE_LAYER, HEAD_LAYER


def grad_cam(model: keras.Model, x: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for normalised inputs `x`, explaining each image's predicted class.

    Uses the last convolution (the backbone's `last_conv`, VGG16's `block5_conv3`, or the CNN's last Conv2D) and
    weights each position by its positive gradients (the LayerCAM form of Grad-CAM): with the study's Flatten heads,
    channel-averaged gradients cancel out and classic Grad-CAM maps are often empty. The gradients are those of
    the predicted class's logit, not its probability: a confident prediction (P = 1.00) has a saturated sigmoid
    and no probability gradient. A seed ensemble of CNNs is explained by the mean of its members' maps.
    """
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if BACKBONE_LAYER not in [layer.name for layer in model.layers] and members:
        return _normalised(np.mean([grad_cam(member, x, threshold=threshold) for member in members], axis=0))
    before, after, at = _split_at_last_conv(model)
    with timed("inference"):
        tensors = before(tf.convert_to_tensor(x, dtype=tf.float32))  # no gradient needed: outside the tape
        activations = tensors[at]
        with _sigmoid_outputs_as_logits(model), tf.GradientTape() as tape:
            tape.watch(activations)
            helmet = after(tensors)[:, 0]
            # the predicted class's logit (P >= threshold is logit >= logit(threshold))
            score = tf.where(helmet >= math.log(threshold / (1 - threshold)), helmet, -helmet)
        gradients = tape.gradient(score, activations)
    maps = tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1).numpy()
    height, width = x.shape[1:3]
    resized = np.stack([cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR) for cam in maps])
    return _normalised(resized)


def _split_at_last_conv(model: keras.Model):
    """(before, after, at): `before(batch)` computes the tensors a model's output reads from its last convolution
    on, `after(tensors)` the output from them, and `tensors[at]` are the last convolution's activations.

    A VGG16 model is split at its backbone's taps (the multi-scale pooling reads blocks 3 and 4 too) and the last
    convolution; the CNN at its last Conv2D, its layers called one by one (a loaded Sequential's layer.output is
    stale). Only `after` runs under the gradient tape: recording the whole forward pass made the gradient cost
    twice the pass (1.7-2.1 s against 0.1 s for six images through VGG16)."""
    if BACKBONE_LAYER in [layer.name for layer in model.layers]:
        backbone, head = model.get_layer(BACKBONE_LAYER), model.get_layer(HEAD_LAYER)
        names = list(dict.fromkeys((*BACKBONE.multiscale_taps, BACKBONE.last_conv)))
        taps = [backbone.get_layer(name).output for name in names]
        probe, tail = keras.Model(backbone.inputs, taps), keras.Model(taps, backbone.output)

        def before(batch):
            return list(probe(batch))

        def after(tensors):
            return head(tail(tensors))

        return before, after, names.index(BACKBONE.last_conv)

    cnn_layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    split = 1 + max(index for index, layer in enumerate(cnn_layers) if isinstance(layer, keras.layers.Conv2D))

    def before(batch):
        for layer in cnn_layers[:split]:
            batch = layer(batch)
        return [batch]

    def after(tensors):
        [hidden] = tensors
        for layer in cnn_layers[split:]:
            hidden = layer(hidden)
        return hidden

    return before, after, 0


@contextmanager
def _sigmoid_outputs_as_logits(model: keras.Model) -> Iterator[None]:
    """Within the block, every sigmoid Dense layer of `model` (nested models included) outputs its logit."""
    swapped = [layer for layer in _layers(model) if getattr(layer, "activation", None) is keras.activations.sigmoid]
    for layer in swapped:
        layer.activation = keras.activations.linear
    try:
        yield
    finally:
        for layer in swapped:
            layer.activation = keras.activations.sigmoid


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _normalised(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] (a constant map becomes 0), float32."""
    result = np.zeros(maps.shape, dtype=np.float32)
    for index, cam in enumerate(maps):
        span = cam.max() - cam.min()
        if span > 0:
            result[index] = (cam - cam.min()) / span
    return result


def confident_mistakes(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5, n: int = 6):
    """Indices of the wrong predictions, most confident first (largest distance of P(helmet) from the threshold)."""
    probabilities = np.asarray(probabilities)
    wrong = np.flatnonzero(predict_labels(probabilities, threshold) != np.asarray(y_true))
    return wrong[np.argsort(-np.abs(probabilities[wrong] - threshold))][:n]


def explanation_examples(y_true: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5, n: int = 4):
    """Up to `n` correct predictions (most confident first) followed by up to `n` confident mistakes (row indices)."""
    probabilities = np.asarray(probabilities)
    right = np.flatnonzero(predict_labels(probabilities, threshold) == np.asarray(y_true))
    right = right[np.argsort(-np.abs(probabilities[right] - threshold))][:n]
    return np.concatenate([right, confident_mistakes(y_true, probabilities, threshold=threshold, n=n)]).astype(int)


def explanation_grid(run, dataset, name: str, comparison, *, n: int = 3):
    """A figure of Grad-CAM maps of model `name` on its `n` most confident right and `n` most confident wrong
    validation images (a run's saved model, loaded through its card), titled with P(helmet) as `helmet-predict`
    answers it and judged at the card's threshold."""
    from helmetlib.core.preprocess import normalize
    from helmetlib.deploy.artifacts import load_run_model
    from helmetlib.reports.plots import described, heat_map_grid

    model, card = load_run_model(run.folder, name)
    labels, output = comparison.validation_labels, comparison.validation[name]
    answered = card.calibration.apply(output) if card.calibration else np.asarray(output)
    threshold = card.threshold.value
    rows = explanation_examples(labels, answered, threshold=threshold, n=n)
    images = dataset.images[comparison.validation_indices[rows]]
    maps = grad_cam(model, normalize(images, card.input.normalization), threshold=run.config.threshold)
    titles = [
        f"{'right' if (answered[r] >= threshold) == labels[r] else 'WRONG'}, P(helmet) {answered[r]:.2f}" for r in rows
    ]
    figure = heat_map_grid(images, maps, titles, columns=2 * n)
    figure.suptitle(f"{name}: confident right answers, then confident mistakes", x=0.01, ha="left", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9))  # the model's name above the tiles' own titles
    return described(
        figure,
        f"Grad-CAM of {name} on {len(rows)} validation images (its most confident right answers, then its "
        "most confident mistakes): red is where the evidence lies",
    )

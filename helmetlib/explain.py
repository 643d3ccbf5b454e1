"""Grad-CAM heat maps (where a model looks) and the most confident mistakes."""

from __future__ import annotations

import cv2
import keras
import numpy as np

from helmetlib.metrics import predict_labels
from helmetlib.models import BACKBONE_LAYER, HEAD_LAYER

VGG16_LAST_CONV = "block5_conv3"


def grad_cam(model: keras.Model, x: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] for normalised inputs `x`, explaining each image's predicted class.

    Uses the last convolution (`block5_conv3` of the VGG16 backbone, or the CNN's last Conv2D) and weights each
    position by its positive gradients (the LayerCAM form of Grad-CAM): with the study's Flatten heads,
    channel-averaged gradients cancel out and classic Grad-CAM maps are often empty.
    """
    import tensorflow as tf

    layer_names = [layer.name for layer in model.layers]
    if BACKBONE_LAYER in layer_names:
        backbone, head = model.get_layer(BACKBONE_LAYER), model.get_layer(HEAD_LAYER)
        probe = keras.Model(backbone.inputs, [backbone.get_layer(VGG16_LAST_CONV).output, backbone.output])

        def forward(batch):
            activations, features = probe(batch)
            return activations, head(features)
    else:  # the CNN, a Sequential: call its layers one by one (a loaded Sequential's layer.output is stale)
        last_conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]

        def forward(batch):
            hidden = batch
            for layer in model.layers:
                hidden = layer(hidden)
                if layer is last_conv:
                    activations = hidden
            return activations, hidden

    batch = tf.convert_to_tensor(x, dtype=tf.float32)
    with tf.GradientTape() as tape:
        activations, probabilities = forward(batch)
        helmet = probabilities[:, 0]
        score = tf.where(helmet >= threshold, helmet, 1.0 - helmet)  # the predicted class's probability
    gradients = tape.gradient(score, activations)
    maps = tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1).numpy()
    height, width = x.shape[1:3]
    result = np.empty((len(x), height, width), dtype=np.float32)
    for index, cam in enumerate(maps):
        cam = cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
        span = cam.max() - cam.min()
        result[index] = (cam - cam.min()) / span if span > 0 else 0.0
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

"""The study's four models behind one `build_model(name, ...)` registry, and the study's augmentation.

Every model ends in one sigmoid unit giving P(helmet) and is compiled with binary cross-entropy on those
probabilities (not logits). Inputs are RGB images already normalised as the model's spec says (`normalize`).
The VGG16 models are `image -> backbone (frozen VGG16) -> head`, so the head can also be trained on cached
backbone features.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from helmetlib.specs import get_spec
from helmetlib.weights import WeightsChoice, resolve_weights

INPUT_SHAPE = (200, 200, 3)
BACKBONE_LAYER = "backbone"
HEAD_LAYER = "head"


def build_model(
    name: str,
    *,
    weights: str | Path | WeightsChoice | None = "imagenet",
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> keras.Model:
    """Build and compile study model `name` (`cnn`, `vgg16_linear`, `vgg16_mlp`, `vgg16_mlp_aug`).

    `weights` (VGG16 models only): `"imagenet"`, `None` or a local weights file, or an already resolved
    `WeightsChoice`; ImageNet weights that cannot be downloaded fall back to random with a warning.
    """
    spec = get_spec(name)
    if spec.uses_backbone:
        choice = weights if isinstance(weights, WeightsChoice) else resolve_weights(weights)
        model = vgg16_model(name, vgg16_backbone(choice, input_shape), head=spec.head)
    else:
        model = simple_cnn(input_shape)
    compile_model(model, spec.learning_rate)
    return model


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam at `learning_rate`, binary cross-entropy on sigmoid probabilities, accuracy metric (as in the study)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )


def simple_cnn(input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    """Model 1: Conv32 -> MaxPool 4 -> Conv64 -> MaxPool 2 -> Conv128 -> Flatten -> Dense 4 -> Dense 1."""
    return keras.Sequential(
        [
            keras.Input(input_shape, name="image"),  # (200, 200, 3)
            layers.Conv2D(32, 3, padding="same", activation="relu"),  # (200, 200, 32)
            layers.MaxPooling2D(4),  # (50, 50, 32)
            layers.Conv2D(64, 3, padding="same", activation="relu"),  # (50, 50, 64)
            layers.MaxPooling2D(2),  # (25, 25, 64)
            layers.Conv2D(128, 3, padding="same", activation="relu"),  # (25, 25, 128)
            layers.Flatten(),  # (80000,)
            layers.Dense(4, activation="relu"),
            layers.Dense(1, activation="sigmoid", name="prediction"),
        ],
        name="cnn",
    )


def vgg16_backbone(weights: WeightsChoice, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    """Frozen VGG16 convolutional base (include_top=False) with the chosen weights; (200, 200, 3) -> (6, 6, 512)."""
    backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
    if weights.path is not None:
        backbone.load_weights(weights.path)
    backbone.trainable = False
    backbone.name = BACKBONE_LAYER
    return backbone


def vgg16_model(name: str, backbone: keras.Model, *, head: str) -> keras.Model:
    """Models 2-5: image -> frozen backbone -> head.

    `linear`: Flatten -> Dense 1; `mlp`: Flatten -> Dense 256 -> Dropout 0.5 -> Dense 128 -> Dense 1;
    `gap`: GlobalAveragePooling -> Dropout 0.2 -> Dense 1.
    """
    if head == "gap":
        head_layers = [layers.GlobalAveragePooling2D(name="pooling"), layers.Dropout(0.2, name="dropout")]  # (512,)
    else:
        head_layers = [layers.Flatten(name="flatten")]  # (6, 6, 512) -> (18432,)
    if head == "mlp":
        head_layers += [
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(128, activation="relu"),
        ]
    head_layers.append(layers.Dense(1, activation="sigmoid", name="prediction"))
    head_model = keras.Sequential(
        [keras.Input(backbone.output_shape[1:], name="features"), *head_layers], name=HEAD_LAYER
    )
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, head_model(backbone(inputs)), name=name)


def augmentation(seed: int | None = None) -> keras.Sequential:
    """The study's augmentation as Keras 3 layers: rotation 30 deg, shifts 0.2, shear 0.2, zoom 0.2, fill 'nearest'.

    Called directly it augments (Keras' default). The study's `ImageDataGenerator` read `shear_range` in degrees;
    here 0.2 is the fraction of the image sheared over, the intent of "shear 0.2".
    """
    fill = {"fill_mode": "nearest"}
    return keras.Sequential(
        [
            layers.RandomRotation(30 / 360, seed=seed, **fill),
            layers.RandomTranslation(0.2, 0.2, seed=seed, **fill),
            layers.RandomShear(x_factor=0.2, y_factor=0.0, seed=seed, **fill),
            layers.RandomZoom((-0.2, 0.2), (-0.2, 0.2), seed=seed, **fill),
        ],
        name="augmentation",
    )

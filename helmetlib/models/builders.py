"""The models behind one `build_model(name, ...)` registry: the study's four, model 5 and model 6.

Every model ends in one sigmoid unit giving P(helmet) and is compiled with binary cross-entropy on those
probabilities (not logits). Inputs are RGB images already normalised as the model's spec says (`normalize`).
The VGG16 models are `image -> backbone (frozen) -> head`, so that the head can be trained on cached backbone
features; the backbone is VGG16 without its top, followed for models 5 and 6 by fixed pooling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.backend import keras, layers
from helmetlib.core.specs import ModelSpec, get_spec
from helmetlib.core.weights import RANDOM_BACKBONE_SEED, WeightsChoice, resolve_weights
from helmetlib.evaluation.calibration import CLIP, Calibration

INPUT_SHAPE = (200, 200, 3)
BACKBONE_LAYER = "backbone"
HEAD_LAYER = "head"


def build_model(
    name: str,
    *,
    weights: str | Path | WeightsChoice | None = "imagenet",
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> keras.Model:
    """Build and compile model `name` (see `specs.MODEL_NAMES`), image (N, H, W, 3) -> P(helmet) (N, 1).

    `weights` (VGG16 models only): `"imagenet"`, `None` or a local weights file, or an already resolved
    `WeightsChoice`; ImageNet weights that cannot be downloaded fall back to random with a warning.
    """
    spec = get_spec(name)
    if spec.uses_backbone:
        backbone = frozen_backbone(spec.features, vgg16_backbone(resolve_weights(weights), input_shape))
        model = assemble(name, backbone, build_head(spec, backbone.output_shape[1:]))
    else:
        model = simple_cnn(input_shape)
    compile_model(model, spec.learning_rate)
    return model


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam at `learning_rate`, binary cross-entropy on sigmoid probabilities, accuracy metric (as in the study)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate or 1e-3),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )


def simple_cnn(input_shape: tuple[int, int, int] = INPUT_SHAPE, *, dtype_policy: str | None = None) -> keras.Model:
    """Model 1: Conv32 -> MaxPool 4 -> Conv64 -> MaxPool 2 -> Conv128 -> Flatten -> Dense 4 -> Dense 1.

    `dtype_policy` (e.g. `mixed_bfloat16`: float32 weights, bfloat16 arithmetic) applies to every layer but the
    prediction layer, which stays float32 with the loss, as Keras' mixed precision advises; None: float32.
    """
    policy = {"dtype": dtype_policy} if dtype_policy else {}
    return keras.Sequential(
        [
            keras.Input(input_shape, name="image"),  # (200, 200, 3)
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv32", **policy),  # (200, 200, 32)
            layers.MaxPooling2D(4, name="pool4", **policy),  # (50, 50, 32)
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv64", **policy),  # (50, 50, 64)
            layers.MaxPooling2D(2, name="pool2", **policy),  # (25, 25, 64)
            layers.Conv2D(128, 3, padding="same", activation="relu", name="conv128", **policy),  # (25, 25, 128)
            layers.Flatten(name="flatten", **policy),  # (80000,)
            layers.Dense(4, activation="relu", name="bottleneck", **policy),
            layers.Dense(1, activation="sigmoid", name="prediction", dtype="float32"),
        ],
        name="cnn",
    )


def with_weights_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A copy of `model` (nested models included) whose layers hold and compute in `dtype`, same weights cast."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        return layer.__class__.from_config({**config, "dtype": dtype} if "dtype" in config else config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights([weights.astype(dtype) for weights in model.get_weights()])
    return copy


def healthy_start(model: keras.Model, sample: np.ndarray) -> None:
    """Start the study's CNN so that its Dense(4, relu) bottleneck stays alive, in place; architecture unchanged.

    With Keras' default start the bottleneck's inputs (80,000 ReLU outputs, never negative) move each unit as a
    block: it fires for every image or for none, and the first steps of Adam switch it off for good (the output
    is then sigmoid(bias) for every image). From `sample` (n, H, W, 3) of normalised training images:

    - each bottleneck unit's kernel is made orthogonal to the sample's mean input (what all images share), scaled
      so that its pre-activation spreads by 1 (standard deviation) over the sample, and its bias set so that it
      fires on half of the sample;
    - the prediction layer's kernel starts at zero, so the first steps learn which unit speaks for which class
      before any gradient reaches the bottleneck (a unit is not pushed off while its vote is still noise).
    """
    layer = model.get_layer("bottleneck")
    inputs = keras.Model(model.inputs, layer.input).predict(sample, verbose=0).reshape(len(sample), -1)
    inputs = inputs.astype(np.float32)  # a mixed-precision model's activations are bfloat16
    kernel, _ = layer.get_weights()
    mean = inputs.mean(axis=0)
    kernel = kernel - np.outer(mean, mean @ kernel) / max(float(mean @ mean), keras.config.epsilon())
    spread = (inputs @ kernel).std(axis=0)
    kernel = kernel / np.where(spread > keras.config.epsilon(), spread, 1.0)  # a unit that cannot spread stays
    layer.set_weights([kernel.astype(np.float32), -np.median(inputs @ kernel, axis=0).astype(np.float32)])
    prediction = model.get_layer("prediction")
    prediction_kernel, prediction_bias = prediction.get_weights()
    prediction.set_weights([np.zeros_like(prediction_kernel), prediction_bias])


def vgg16_backbone(weights: WeightsChoice, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    """Frozen VGG16 convolutional base (include_top=False) with the chosen weights; (200, 200, 3) -> (6, 6, 512).

    A random backbone (`weights.used == "random"`) is drawn from a fixed seed, so every repeat and run with the
    same input size shares it (and its cached features).
    """
    backbone = BACKBONE.build(input_shape)
    if weights.path is not None:
        backbone.load_weights(weights.path)
    else:
        backbone.set_weights(_glorot_weights(backbone, RANDOM_BACKBONE_SEED))
    backbone.trainable = False
    return backbone


def _glorot_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    """Keras' default initialisation (Glorot-uniform kernels, zero biases) from a seed of its own."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.get_weights():
        if weight.ndim == 1:
            values.append(np.zeros_like(weight))
            continue
        receptive = int(np.prod(weight.shape[:-2]))
        limit = np.sqrt(6 / (receptive * (weight.shape[-2] + weight.shape[-1])))
        values.append(rng.uniform(-limit, limit, weight.shape).astype(weight.dtype))
    return values


def frozen_backbone(features: str, vgg16: keras.Model) -> keras.Model:
    """The frozen part a model's head sees, named `backbone`: VGG16's output, or that output pooled.

    `block5`: (H/32, W/32, 512); `gap5`: global average pooling of it (512,); `multiscale`: global average and max
    pooling of blocks 3, 4 and 5 (2560,). Pooling has no weights: the backbone's weights are VGG16's alone.
    """
    image = vgg16.input
    if features == "block5":
        output = vgg16.output
    elif features == "gap5":
        output = layers.GlobalAveragePooling2D(name="gap5_pooling")(vgg16.output)
    elif features == "multiscale":
        pooled = []
        for name in BACKBONE.multiscale_taps:
            activations = vgg16.get_layer(name).output
            pooled += [
                layers.GlobalAveragePooling2D(name=f"{name}_average")(activations),
                layers.GlobalMaxPooling2D(name=f"{name}_max")(activations),
            ]
        output = layers.Concatenate(name="multiscale_pooling")(pooled)
    else:
        raise ValueError(f"unknown backbone features {features!r}")
    backbone = keras.Model(image, output, name=BACKBONE_LAYER)
    backbone.trainable = False
    return backbone


def build_head(
    spec: ModelSpec,
    feature_shape: tuple[int, ...],
    *,
    mean: np.ndarray | None = None,
    variance: np.ndarray | None = None,
) -> keras.Model:
    """The trainable part of a VGG16 model, named `head`: backbone features -> P(helmet).

    `linear`: Flatten -> Dense 1; `mlp`: Flatten -> Dense 256 -> Dropout 0.5 -> Dense 128 -> Dense 1;
    `gap` (model 5): standardisation -> Dropout 0.2 -> Dense 1; `logistic` (model 6): standardisation ->
    Dense 1, whose weights come from an L2-regularised logistic regression (`train`). `mean` / `variance`
    (feature_shape,) are the standardisation's, measured on the training features (kept in the saved model, so
    inference needs nothing else).
    """
    features = keras.Input(feature_shape, name="features")
    if spec.standardised:
        if mean is None or variance is None:
            mean, variance = np.zeros(feature_shape, np.float32), np.ones(feature_shape, np.float32)
        hidden = layers.Normalization(mean=mean, variance=variance, name="standardise")(features)
        if spec.head == "gap":
            hidden = layers.Dropout(0.2, name="dropout")(hidden)
        output = layers.Dense(1, activation="sigmoid", name="prediction")(hidden)
        return keras.Model(features, output, name=HEAD_LAYER)
    hidden = layers.Flatten(name="flatten")(features)  # (6, 6, 512) -> (18432,)
    if spec.head == "mlp":
        hidden = layers.Dense(256, activation="relu", name="hidden_256")(hidden)
        hidden = layers.Dropout(0.5, name="dropout")(hidden)
        hidden = layers.Dense(128, activation="relu", name="hidden_128")(hidden)
    output = layers.Dense(1, activation="sigmoid", name="prediction")(hidden)
    return keras.Model(features, output, name=HEAD_LAYER)


def assemble(name: str, backbone: keras.Model, head: keras.Model) -> keras.Model:
    """The full image -> P(helmet) model `name`: image -> backbone -> head."""
    image = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(image, head(backbone(image)), name=name)


def average_of(members: list[keras.Model], *, name: str) -> keras.Model:
    """One model whose output averages those of `members` (same input): a seed ensemble, named `name`."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    outputs = []
    for index, member in enumerate(members):
        [member_input], [member_output] = member.inputs, keras.tree.flatten(member.outputs)
        wrapped = keras.Model(member_input, member_output, name=f"{name}_member{index}")  # shares the weights
        outputs.append(wrapped(inputs))
    output = layers.Average(name="seed_average")(outputs)
    return keras.Model(inputs, output, name=name)


@keras.saving.register_keras_serializable(package="helmetlib")
class Normalize(layers.Layer):
    """Inside a model: RGB pixels in [0, 255] (N, H, W, 3) to a member's normalisation, `unit` (/255) or `vgg16`
    (`preprocess_input`: BGR, ImageNet means subtracted), so that members trained apart can share one input."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("unit", BACKBONE.name):
            raise ValueError(f"unknown normalisation {mode!r}: unit or {BACKBONE.name}")
        self.mode = mode

    def call(self, pixels):
        if self.mode == "unit":
            return pixels / 255.0
        means = keras.ops.convert_to_tensor(BACKBONE.means_bgr, dtype=pixels.dtype)
        return keras.ops.flip(pixels, axis=-1) - means

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="helmetlib")
class PlattScaling(layers.Layer):
    """Inside a model: P(helmet) (N, 1) to sigmoid(slope * logit(P) + intercept), as `Calibration.apply`."""

    def __init__(self, slope: float, intercept: float, **kwargs):
        super().__init__(**kwargs)
        self.slope, self.intercept = float(slope), float(intercept)

    def call(self, probabilities):
        clipped = keras.ops.clip(probabilities, CLIP, 1 - CLIP)
        logit = keras.ops.log(clipped) - keras.ops.log1p(-clipped)
        return keras.ops.sigmoid(self.slope * logit + self.intercept)

    def get_config(self) -> dict:
        return {**super().get_config(), "slope": self.slope, "intercept": self.intercept}


def calibrated_average(
    members: list[keras.Model], normalizations: list[str], calibrations: list[Calibration | None], *, name: str
) -> keras.Model:
    """One model, RGB pixels in [0, 255] (N, H, W, 3) -> mean calibrated P(helmet) (N, 1), of `members` trained
    on different normalisations: each member gets its own normalisation and Platt scaling inside the graph."""
    pixels = keras.Input(members[0].input_shape[1:], name="pixels")
    outputs = []
    for index, (member, mode, calibration) in enumerate(zip(members, normalizations, calibrations, strict=True)):
        [member_input], [member_output] = member.inputs, keras.tree.flatten(member.outputs)
        wrapped = keras.Model(member_input, member_output, name=f"member{index}_{member.name}")  # shares weights
        output = wrapped(Normalize(mode, name=f"normalize{index}")(pixels))
        if calibration is not None:
            output = PlattScaling(calibration.slope, calibration.intercept, name=f"calibrate{index}")(output)
        outputs.append(output)
    return keras.Model(pixels, layers.Average(name="architecture_average")(outputs), name=name)


def augmentation(seed: int | None = None) -> keras.Sequential:
    """The study's augmentation as Keras 3 layers: rotation 30 deg, shifts 0.2, shear 0.2, zoom 0.2, fill 'nearest'.

    Called directly it augments (Keras' default). The study's `ImageDataGenerator` read `shear_range` in degrees;
    here 0.2 is the fraction of the image sheared over, the intent of "shear 0.2".
    """
    fill = {"fill_mode": "nearest"}
    return keras.Sequential(
        [
            layers.RandomRotation(30 / 360, seed=seed, name="rotation", **fill),
            layers.RandomTranslation(0.2, 0.2, seed=seed, name="shift", **fill),
            layers.RandomShear(x_factor=0.2, y_factor=0.0, seed=seed, name="shear", **fill),
            layers.RandomZoom((-0.2, 0.2), (-0.2, 0.2), seed=seed, name="zoom", **fill),
        ],
        name="augmentation",
    )


def feature_model(model: keras.Model) -> keras.Model:
    """image (N, H, W, 3), as `model` takes it -> (N, F) pooled features of its first convolutional part: the frozen
    backbone's output (VGG16 models; global average and max pooled when spatial), or the CNN's last convolution
    (pooled likewise); for an ensemble, those of its first member (after that member's own normalisation)."""
    image = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(image, _features(model, image), name=f"{model.name}_features")


def _features(model: keras.Model, x):
    by_name = {layer.name: layer for layer in model.layers}
    if BACKBONE_LAYER in by_name:
        return _pooled(by_name[BACKBONE_LAYER](x))
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if members:  # a seed ensemble (`average_of`) or the cross-architecture ensemble (`calibrated_average`)
        normalize = by_name.get("normalize0")
        return _features(members[0], normalize(x) if normalize is not None else x)
    convolutions = [index for index, layer in enumerate(model.layers) if isinstance(layer, layers.Conv2D)]
    if not convolutions:
        raise ValueError(f"model {model.name!r} has no convolutional part to take features from")
    for layer in model.layers[: convolutions[-1] + 1]:
        if not isinstance(layer, layers.InputLayer):
            x = layer(x)
    return _pooled(x)


def _pooled(x):
    if len(x.shape) == 2:
        return x
    average, maximum = (
        layers.GlobalAveragePooling2D(name="features_average"),
        layers.GlobalMaxPooling2D(name="features_max"),
    )
    return layers.Concatenate(name="features")([average(x), maximum(x)])

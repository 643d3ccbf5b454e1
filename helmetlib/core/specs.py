"""What each model is (features, head, normalisation, optimiser) and the study's training defaults.

Kept free of TensorFlow so that the report runner can read it without loading a deep-learning runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from helmetlib.core.backbones import BACKBONE

EPOCHS = 20
BATCH_SIZE = 128
DEMO_BATCH_SIZE = 16  # the demo set's ~112 training images would make one step per epoch at 128: nothing is learned
SEED = 812
SPLIT_SEED = 42
THRESHOLD = 0.5
FAST_THRESHOLD_RULE = (
    "calibrated"  # the deployed threshold in fast mode: THRESHOLD on calibrated P(helmet) (seeds study)
)
AUGMENTED_VIEWS = 2
MAX_RESTARTS = 10  # on helmet-dev (batch 128) about half the CNN's attempts die in epoch 1; 3 left 2 of 10 seeds dead
REPEATS = 3  # on real data: every run shows its spread (the choice alone is stable from 1 with recovery; README)
DEMO_REPEATS = 1
DEMO_SIZE = 160

Features = Literal["image", "block5", "gap5", "multiscale"]


@dataclass(frozen=True)
class ModelSpec:
    """How a model is built, normalised, optimised and trained.

    `features` is what its trainable part sees: `image` (the CNN, trained end to end) or the output of the frozen
    VGG16 backbone: `block5` (its (6, 6, 512) output at 200 px), `gap5` (that output globally average-pooled, 512)
    or `multiscale` (global average and max pooling of blocks 3, 4 and 5, 2560).
    """

    name: str
    description: str
    learning_rate: float
    features: Features
    head: Literal["cnn", "linear", "mlp", "gap", "logistic"]
    normalization: str = "unit"  # or the backbone's own preprocessing (`backbones.BACKBONE.name`)
    augmented: bool = False
    early_stopping: bool = False  # also: learning-rate reduction on plateau and class weights when imbalanced

    @property
    def uses_backbone(self) -> bool:
        """True for the models built on the frozen VGG16."""
        return self.features != "image"

    @property
    def standardised(self) -> bool:
        """True for the heads on pooled features that standardise them first (models 5 and 6): they need the
        training images' features once, for the mean and variance."""
        return self.head in ("gap", "logistic")

    @property
    def deterministic(self) -> bool:
        """True when the seed changes nothing (a cross-validated logistic regression on fixed features): one fit
        per split stands for every repeat."""
        return self.head == "logistic"


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("cnn", "simple CNN (3 conv blocks, Dense 4)", 1e-3, features="image", head="cnn"),
        ModelSpec("vgg16_linear", "frozen VGG16 + Flatten + Dense 1", 1e-4, features="block5", head="linear"),
        ModelSpec("vgg16_mlp", "frozen VGG16 + Dense 256/128 head with dropout", 1e-4, features="block5", head="mlp"),
        ModelSpec(
            "vgg16_mlp_aug",
            "frozen VGG16 + Dense 256/128 head, trained with augmentation",
            1e-4,
            features="block5",
            head="mlp",
            augmented=True,
        ),
        ModelSpec(
            "vgg16_gap",
            "the study's recommendation: VGG16 preprocess_input, global average pooling, standardised, Dense 1",
            3e-2,  # measured over 5 seeds on helmet-dev: 1e-3 0.671, 1e-2 0.718, 3e-2 0.736 validation accuracy
            features="gap5",
            head="gap",
            normalization=BACKBONE.name,
            early_stopping=True,
        ),
        ModelSpec(
            "vgg16_multiscale",
            "frozen VGG16, average and max pooling of blocks 3-5, standardised, L2-regularised logistic head",
            0.0,  # fitted in closed form (L-BFGS), no optimiser
            features="multiscale",
            head="logistic",
            normalization=BACKBONE.name,
        ),
    )
}
MODEL_NAMES = tuple(MODEL_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The spec of a model, with a clear error for unknown names."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None

"""What each study model is (name, optimiser, backbone, augmentation, normalisation) and the study's training defaults.

Kept free of TensorFlow so that the report runner can read it without loading a deep-learning runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EPOCHS = 20
BATCH_SIZE = 128
SEED = 812
AUGMENTED_VIEWS = 2


@dataclass(frozen=True)
class ModelSpec:
    """How a study model is built, normalised, optimised and trained."""

    name: str
    description: str
    learning_rate: float
    uses_backbone: bool
    augmented: bool = False
    normalization: Literal["unit", "vgg16"] = "unit"
    head: Literal["none", "linear", "mlp", "gap"] = "none"
    early_stopping: bool = False  # also: learning-rate reduction on plateau and class weights when imbalanced


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("cnn", "simple CNN (3 conv blocks, Dense 4)", 1e-3, uses_backbone=False),
        ModelSpec("vgg16_linear", "frozen VGG16 + Flatten + Dense 1", 1e-4, uses_backbone=True, head="linear"),
        ModelSpec("vgg16_mlp", "frozen VGG16 + Dense 256/128 head with dropout", 1e-4, uses_backbone=True, head="mlp"),
        ModelSpec(
            "vgg16_mlp_aug",
            "frozen VGG16 + Dense 256/128 head, trained with augmentation",
            1e-4,
            uses_backbone=True,
            augmented=True,
            head="mlp",
        ),
        ModelSpec(
            "vgg16_gap",
            "the study's recommendation: VGG16 preprocess_input, GlobalAveragePooling head, early stopping",
            1e-3,
            uses_backbone=True,
            normalization="vgg16",
            head="gap",
            early_stopping=True,
        ),
    )
}
MODEL_NAMES = tuple(MODEL_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The spec of a study model, with a clear error for unknown names."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None

"""Model cards: what a saved model expects and decides, bound to the exact files it describes.

A card (`<name>.card.json` beside the model) records the input (size, RGB, normalisation), the calibration of
its output (`helmet-predict`, `helmet-evaluate` and the comparison all apply it), the threshold to deploy (on the
calibrated probability) and how it was chosen, the training data and metrics, and the SHA-256 of every file it
describes (the self-contained `.keras`, the head of a backbone model, the TensorFlow Lite exports) and, for a head, the
backbone it needs from the content-addressed store, how a head box is cut from a photo (`crop_rule`) and how to
tell an input unlike the training crops (`crop_check`). A model file is only used with a card that names it and
whose hash matches; a malformed card is refused with the bad key named, and a card edited after helmetlib wrote it
(its `seal`, the SHA-256 of the rest, no longer matches) is refused: its threshold, calibration and crop rule are
what the run decided, and `--threshold` is the way to decide at another threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import field, replace
from pathlib import Path
from typing import Literal, Self

from helmetlib.core import specs
from helmetlib.core.preprocess import NORMALIZATIONS
from helmetlib.core.records import Record, RecordError, read_json, record
from helmetlib.core.weights import WeightsChoice, file_sha256
from helmetlib.data.dataset import CLASS_NAMES
from helmetlib.data.photos import CropRule
from helmetlib.data.splits import SplitRecord
from helmetlib.deploy.crop_check import CropCheck
from helmetlib.evaluation.calibration import Calibration
from helmetlib.evaluation.metrics import Scores
from helmetlib.evaluation.results import DataInfo, DeployThreshold

CARD_FORMAT = "helmetlib-model-card/2"
CARD_SUFFIX = ".card.json"
FILE_KINDS = ("keras", "head", "tflite", "quant_tflite", "crop_check")


class ModelError(ValueError):
    """A model path that is missing, not a helmetlib model, or whose card does not match the model."""


@record
class InputSpec(Record):
    """What a model's input must be: size, channels, colour order and normalisation."""

    height: int
    width: int
    channels: Literal[3]
    color_order: Literal["RGB"]
    normalization: str

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization {self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")

    @property
    def normalization_description(self) -> str:
        return NORMALIZATIONS[self.normalization]


@record
class FileRef(Record):
    """A file beside the card, the SHA-256 of its bytes and the dtype its weights are stored in.

    `float16`: a head kept for evaluation only (not the run's selected model), stored at half the size and computed
    in float32 after loading; its probabilities differ from the trained head's by about 1e-4.
    """

    file: str
    sha256: str
    weights_dtype: Literal["float32", "float16", "int8"] = "float32"


@record
class BackboneRef(Record):
    """The frozen backbone a head needs: VGG16 weights in the store (by fingerprint) and the pooled features."""

    fingerprint: str
    features: str
    weights_file: str


@record
class TrainingInfo(Record):
    """How the model was trained."""

    mode: str
    precision: str
    epochs_run: int
    parameters: int
    repeats: int
    deployed: str
    seeds: tuple[int, ...]


@record
class ModelCard(Record):
    """Everything prediction needs to prepare images and decide, and where the model came from."""

    format: Literal["helmetlib-model-card/2"]
    name: str
    description: str
    input: InputSpec
    threshold: DeployThreshold
    files: dict[str, FileRef]
    backbone: BackboneRef | None
    training_data: DataInfo
    split: SplitRecord
    weights: WeightsChoice | None
    training: TrainingInfo
    metrics: dict[str, Scores]
    selected: bool
    versions: dict[str, str | None]
    created: str
    output: str = "probability of label 1 (helmet), one sigmoid unit"
    calibration: Calibration | None = None
    class_names: dict[str, str] = field(default_factory=lambda: {str(i): name for i, name in enumerate(CLASS_NAMES)})
    crop_rule: CropRule | None = None  # None: a card written before it was recorded (see `cutting_rule`)
    crop_check: CropCheck | None = None
    seal: str = ""  # SHA-256 of the card without its seal, written by `write`; "" on cards before seals

    def __post_init__(self):
        if not (math.isfinite(self.threshold.value) and 0 < self.threshold.value < 1):
            raise ValueError(f"threshold.value must lie strictly between 0 and 1, got {self.threshold.value!r}")
        trained_with = specs.MODEL_SPECS[self.name].normalization if self.name in specs.MODEL_SPECS else None
        if trained_with and self.input.normalization != trained_with:
            raise ValueError(
                f"input.normalization {self.input.normalization!r} is not how {self.name} was trained "
                f"({trained_with!r}): its predictions would be wrong"
            )
        unknown = set(self.files) - set(FILE_KINDS)
        if unknown:
            raise ValueError(f"files has unknown kinds {sorted(unknown)}; known: {', '.join(FILE_KINDS)}")

    @property
    def cutting_rule(self) -> CropRule:
        """How a head box of a photo becomes this model's input: the rule recorded in the card, else (a card from
        before it was) the rule of its imported training data, else the rule of that time (edges replicated)."""
        if self.crop_rule is not None:
            return self.crop_rule
        return self.training_data.crop_rule or CropRule(image_size=self.input.height, edge="replicate")

    def sealed(self) -> Self:
        """This card with its seal: the SHA-256 of its JSON without the seal."""
        return replace(self, seal=_seal_of(self.to_json()))

    def write(self, path: str | Path) -> Path:
        """Write the card, sealed: a later edit by hand makes `read_card` refuse it."""
        return Record.write(self.sealed(), path)

    def kind_of(self, model_path: Path) -> str:
        """Which of the card's files `model_path` is; `ModelError` when the card does not describe it."""
        for kind, ref in self.files.items():
            if ref.file == model_path.name:
                return kind
        raise ModelError(
            f"{model_path}: its card {card_path(model_path).name} does not describe this file "
            f"(it describes {', '.join(ref.file for ref in self.files.values()) or 'nothing'})"
        )


def card_path(model_path: str | Path) -> Path:
    """The card beside a model file: `x.keras`, `x.head.keras`, `x.tflite`, `x.quant.tflite` -> `x.card.json`."""
    model_path = Path(model_path)
    return model_path.parent / (model_path.name.split(".")[0] + CARD_SUFFIX)


def _seal_of(data: dict) -> str:
    content = {key: value for key, value in data.items() if key != "seal"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, allow_nan=False).encode()).hexdigest()


def read_card(model_path: str | Path) -> ModelCard:
    """The validated card of a model file; `ModelError` when it is missing, malformed, not a helmetlib card, or
    edited after helmetlib wrote it."""
    path = card_path(model_path)
    if not path.is_file():
        raise ModelError(f"{model_path}: not a helmetlib model (no model card {path.name} beside it)")
    try:
        card = ModelCard.read(path)
    except RecordError as error:
        raise ModelError(str(error)) from None
    if card.seal and card.seal != _seal_of(read_json(path)):
        raise ModelError(
            f"{path}: edited after helmetlib wrote it (its seal no longer matches its content): a card's threshold, "
            "calibration, crop rule and crop check are what its run decided. To decide at another threshold, give "
            "--threshold; to change the rest, run the study again"
        )
    return card


def check_file(model_path: Path, card: ModelCard) -> str:
    """The kind of `model_path` in `card`, after checking that its bytes are the ones the card describes."""
    kind = card.kind_of(model_path)
    if file_sha256(model_path) != card.files[kind].sha256:
        raise ModelError(
            f"{model_path}: does not match its card {card_path(model_path).name} (SHA-256 differs: the file was "
            "replaced or changed after the card was written)"
        )
    return kind


def file_ref(path: Path, *, weights_dtype: Literal["float32", "float16", "int8"] = "float32") -> FileRef:
    """A reference to `path` (name, SHA-256 and the dtype of its weights) for a card."""
    return FileRef(file=path.name, sha256=file_sha256(path), weights_dtype=weights_dtype)

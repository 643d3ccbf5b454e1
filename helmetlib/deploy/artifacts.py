"""A run's saved models: self-contained `.keras` files, and heads over a content-addressed backbone store.

The frozen VGG16 is the same 59 MB in every backbone model of a run (and of every run with the same weights), so
it is stored once per weights fingerprint under `<cache>/backbones/`, and each backbone model keeps only its
head (`<name>.head.keras`, a few kB to 19 MB) with the backbone's fingerprint in its card. The selected model
is also written self-contained (`<name>.keras`, no optimizer state), so that `helmet-predict` needs nothing else;
once it is chosen, the other heads are kept for evaluation in float16 (half the size; see `archive_unselected`).
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.backend import keras, tensorflow_log_lines_dropped
from helmetlib.core.records import write_json
from helmetlib.core.specs import get_spec
from helmetlib.core.timings import timed
from helmetlib.data.photos import CropRule
from helmetlib.deploy.cards import (
    CARD_FORMAT,
    BackboneRef,
    FileRef,
    ModelCard,
    ModelError,
    TrainingInfo,
    card_path,
    check_file,
    file_ref,
    read_card,
)
from helmetlib.evaluation.calibration import Calibration
from helmetlib.evaluation.ensembles import ENSEMBLE_NAME
from helmetlib.evaluation.metrics import Scores
from helmetlib.evaluation.results import DeployThreshold, ExportedFile, ModelResult
from helmetlib.models.builders import (
    BACKBONE_LAYER,
    assemble,
    calibrated_average,
    frozen_backbone,
    with_weights_dtype,
)
from helmetlib.models.features import BACKBONES_FOLDER, register_cache_user, weights_fingerprint
from helmetlib.run.config import now
from helmetlib.run.folder import RunFolder
from helmetlib.training.repeats import TrainedModel
from helmetlib.training.seed_ensemble import SeedEnsembleChoice


def inference_copy(model: keras.Model) -> keras.Model:
    """The same layers as a new, uncompiled model: saved without optimizer state (smaller, no load warnings)."""
    [inputs], [outputs] = model.inputs, model.outputs
    return keras.Model(inputs, outputs, name=model.name)


def _plain_backbone(backbone: keras.Model) -> keras.Model:
    plain = BACKBONE.build(backbone.input_shape[1:])
    plain.set_weights(backbone.get_weights())  # pooling layers have no weights: the lists line up
    return plain


def store_backbone(backbone: keras.Model, cache_dir: str | Path) -> tuple[str, Path]:
    """(fingerprint, path) of the backbone's VGG16 weights in the store, written once per fingerprint."""
    plain = _plain_backbone(backbone)
    fingerprint = weights_fingerprint(plain)
    store = Path(cache_dir) / BACKBONES_FOLDER
    path = store / BACKBONE.store_file(fingerprint)
    if not path.is_file():
        store.mkdir(parents=True, exist_ok=True)
        partial = store / f".{os.getpid()}.partial.{path.name}"
        plain.save_weights(partial)
        partial.replace(path)
    return fingerprint, path


def load_backbone(
    ref: BackboneRef, input_shape: tuple[int, int, int], *, reports_dir: Path | None = None
) -> keras.Model:
    """The frozen backbone a head needs, found by its fingerprint — at the path the card recorded, else in the
    store of the reports folder the run now lives in (a moved or copied reports folder brings its `.cache`) —
    and checked against that fingerprint."""
    recorded = Path(ref.weights_file)
    moved = reports_dir / ".cache" / BACKBONES_FOLDER / recorded.name if reports_dir else None
    path = recorded if recorded.is_file() or moved is None or not moved.is_file() else moved
    if not path.is_file():
        raise ModelError(
            f"{path}: the backbone store has no VGG16 weights {ref.fingerprint} (only the selected model of a run is "
            "self-contained; the others need the store under the run's cache folder)"
        )
    plain = BACKBONE.build(input_shape)
    plain.load_weights(path)
    if weights_fingerprint(plain) != ref.fingerprint:
        raise ModelError(f"{path}: backbone weights changed in the store (fingerprint differs from the card's)")
    return frozen_backbone(ref.features, plain)


def save_model_outputs(
    folder: RunFolder,
    result: ModelResult,
    deployed: SeedEnsembleChoice,
    repeats: list[TrainedModel],
    *,
    threshold: DeployThreshold,
    calibration: Calibration | None,
    cache_dir: str | Path,
    versions: dict[str, str | None],
) -> ModelCard:
    """Write the deployed model (CNN: `.keras`; backbone models: head + store), its card (with the calibration and
    the threshold its P(helmet) is decided at, as `helmet-predict` answers), its result record
    (`<name>.metrics.json`), the histories of all repeats and the probabilities (deployed, and per repeat)."""
    name = result.name
    folder.models_dir.mkdir(parents=True, exist_ok=True)
    files, backbone = _save_deployed(folder, name, deployed, cache_dir)
    write_json(folder.history_file(name), {f"seed {trained.seed}": trained.history for trained in repeats})
    np.savez(
        folder.probabilities_file(name),
        **deployed.probabilities,
        **{f"validation_seed_{trained.seed}": trained.probabilities["validation"] for trained in repeats},
    )
    height, width, channels = result.input_shape
    card = ModelCard(
        format=CARD_FORMAT,
        name=name,
        description=result.description,
        input={
            "height": height,
            "width": width,
            "channels": channels,
            "color_order": "RGB",
            "normalization": result.normalization,
        },
        threshold=threshold,
        calibration=calibration,
        files=files,
        backbone=backbone,
        training_data=result.data,
        split=result.split,
        weights=result.weights,
        training=TrainingInfo(
            mode=result.mode,
            precision=result.precision,
            epochs_run=result.epochs_run,
            parameters=result.parameters,
            repeats=len(result.repeats),
            deployed=result.deployed,
            seeds=result.deployed_seeds,
        ),
        metrics={"train": result.train, "validation": result.validation},
        selected=False,
        versions=versions,
        created=now(),
        crop_rule=result.data.crop_rule or CropRule(),
    )
    card.write(folder.card_file(name))
    result.write(folder.result_file(name))
    return card


def _save_deployed(
    folder: RunFolder, name: str, deployed: SeedEnsembleChoice, cache_dir: str | Path
) -> tuple[dict[str, FileRef], BackboneRef | None]:
    """Save the deployed model: the CNN whole (`.keras`), a backbone model as its head with the backbone in the
    store (registered as used by this reports folder); its file references and backbone reference."""
    if deployed.head is None:
        path = folder.model_file(name)
        inference_copy(deployed.model).save(path)
        return {"keras": file_ref(path)}, None
    fingerprint, stored = store_backbone(deployed.model.get_layer(BACKBONE_LAYER), cache_dir)
    register_cache_user(cache_dir, folder.path.parent)
    path = folder.head_file(name)
    inference_copy(deployed.head).save(path)
    backbone = BackboneRef(fingerprint=fingerprint, features=get_spec(name).features, weights_file=str(stored))
    return {"head": file_ref(path)}, backbone


def load_run_model(folder: RunFolder, name: str) -> tuple[keras.Model, ModelCard]:
    """Model `name` of the run in `folder`: its image -> P(helmet) model (its self-contained `.keras` when there is
    one, else its head over the stored backbone), checked against its card, and the card."""
    path = folder.loadable_file(name)
    card = read_card(path)
    return load_model_file(path, card), card


def load_model_file(path: Path, card: ModelCard) -> keras.Model:
    """The image -> P(helmet) model stored at `path` (self-contained `.keras`, or head + stored backbone)."""
    kind = check_file(path, card)
    try:  # a float16 head makes TensorFlow log "oneDNN supports DT_HALF only on ... AVX-512" (E0000) on stderr
        with tensorflow_log_lines_dropped():
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
            if card.files[kind].weights_dtype == "float16":  # int8 kernels compute as stored (dequantised)
                model = with_weights_dtype(model, "float32")
    except Exception as error:  # Keras raises many types for a file that is not a valid model
        raise ModelError(f"{path}: not a loadable Keras model ({type(error).__name__}: {error})") from None
    if kind == "head":
        if card.backbone is None:
            raise ModelError(f"{card_path(path)}: a head without a backbone reference")
        shape = (card.input.height, card.input.width, card.input.channels)
        model = assemble(card.name, load_backbone(card.backbone, shape, reports_dir=path.parent.parent.parent), model)
    return model


def save_selected(
    folder: RunFolder,
    name: str,
    *,
    threshold: DeployThreshold,
    test: Scores,
    test_at_study_threshold: Scores,
    calibration: Calibration | None,
) -> ModelCard:
    """Make the selected model self-contained (`<name>.keras`) and mark its card: selected, calibration, deploy
    threshold, test scores."""
    card = read_card(folder.model_file(name))
    files = dict(card.files)
    if "keras" not in files:
        model = load_model_file(folder.head_file(name), card)
        model.save(folder.model_file(name))
        files["keras"] = file_ref(folder.model_file(name))
    card = replace(
        card,
        files=files,
        selected=True,
        calibration=calibration,
        threshold=threshold,
        metrics={**card.metrics, "test": test, "test_at_study_threshold": test_at_study_threshold},
    )
    card.write(folder.card_file(name))
    return card


def save_ensemble(
    folder: RunFolder, members: tuple[str, ...], calibrations: list[Calibration | None], *, validation: Scores
) -> ModelCard:
    """Write the cross-architecture ensemble of the deployed models `members` self-contained
    (`models/ensemble.keras`: pixels in, each member's normalisation and Platt scaling inside, mean P(helmet) out)
    with its card; `save_selected` marks it deployed afterwards."""
    models, cards = zip(*(load_run_model(folder, member) for member in members), strict=True)
    normalizations = [card.input.normalization for card in cards]
    path = folder.model_file(ENSEMBLE_NAME)
    calibrated_average(list(models), normalizations, calibrations, name=ENSEMBLE_NAME).save(path)
    first = cards[0]
    card = replace(
        first,
        name=ENSEMBLE_NAME,
        description=f"cross-architecture ensemble: the mean calibrated P(helmet) of {' and '.join(members)}",
        input=replace(first.input, normalization="pixels"),
        files={"keras": file_ref(path)},
        backbone=None,
        weights=next((card.weights for card in cards if card.weights), None),
        training=replace(
            first.training,
            mode="ensemble",
            parameters=sum(card.training.parameters for card in cards),
            repeats=sum(card.training.repeats for card in cards),
            deployed=", ".join(f"{card.name}: {card.training.deployed}" for card in cards),
            seeds=tuple(seed for card in cards for seed in card.training.seeds),
        ),
        metrics={"validation": validation},
        calibration=None,
        created=now(),
        crop_check=None,
    )
    card.write(folder.card_file(ENSEMBLE_NAME))
    return card


def save_crop_check(
    folder: RunFolder, name: str, dataset, parts, *, window_sides: np.ndarray | None = None
) -> ModelCard:
    """Fit the deployed model's crop check (`crop_check`) on its features of the training and validation crops
    of `parts`, and the native windows the training crops were cut from (`window_sides`, one per image of
    `dataset`, or None); store its arrays beside the card and record it there."""
    from helmetlib.core.preprocess import normalize
    from helmetlib.data.dataset import batches, select_rows
    from helmetlib.deploy.crop_check import fit_crop_check
    from helmetlib.models.builders import feature_model

    model, card = load_run_model(folder, name)
    extractor = feature_model(model)

    def features(indices: np.ndarray) -> np.ndarray:
        rows = batches(select_rows(dataset.images, indices), 256)
        with timed("inference"):
            return np.concatenate(
                [extractor.predict(normalize(rows_, card.input.normalization), verbose=0) for rows_ in rows]
            )

    path = folder.crop_check_file(name)
    check, arrays = fit_crop_check(
        features(parts.train),
        features(parts.validation),
        features=_feature_space(card),
        file=path.name,
        window_sides=None if window_sides is None else window_sides[parts.train],
        crop_side=card.cutting_rule.image_size,
    )
    arrays.write(path)
    card = replace(card, crop_check=check, files={**card.files, "crop_check": file_ref(path)})
    card.write(folder.card_file(name))
    return card


def _feature_space(card: ModelCard) -> str:
    """The feature space `models.feature_model` takes from the model of `card`, in words."""
    if card.name == ENSEMBLE_NAME:
        return f"the first member's own features ({card.training.deployed.split(':')[0]})"
    if card.backbone is not None:
        return f"{card.name}'s frozen VGG16 backbone ({card.backbone.features}, pooled)"
    return f"{card.name}'s last convolution (average and max pooled)"


INT8_ARCHIVE_PARAMETERS = 1_000_000  # heads larger than this (the MLP heads: 4.7 M per member) are archived in int8


def archived_copy(head: keras.Model) -> tuple[keras.Model, str]:
    """(a smaller copy of `head`, its weights' dtype): float16 weights, or for a head over
    `INT8_ARCHIVE_PARAMETERS` parameters int8 Dense kernels with a float32 scale per output (Keras' `quantize`;
    probabilities move by about 1e-3, against 1e-4 in float16, at a quarter of float32's size)."""
    if head.count_params() <= INT8_ARCHIVE_PARAMETERS:
        return with_weights_dtype(head, "float16"), "float16"
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    with warnings.catch_warnings(), _collections_of_new_objects_only():
        warnings.filterwarnings("ignore", message="Layer .* does not have a `quantize` method")  # Dropout, Average
        copy.quantize("int8")
    return copy, "int8"


@contextmanager
def _collections_of_new_objects_only() -> Iterator[None]:
    """Within the block, Python's garbage collections leave the objects that existed before it alone (`gc.freeze`).

    Keras' `quantize` calls `gc.collect()` for every float kernel it replaces; in a kernel whose heap holds
    TensorFlow's traced graphs each collection took 0.2 s (4.2 s for the comparison's archived heads). What becomes
    garbage meanwhile is collected by the collections after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def archive_unselected(folder: RunFolder, selected: str, names: list[str]) -> None:
    """Store the heads of the models in `names` other than `selected` smaller (`archived_copy`), cards updated.

    They stay loadable and scoreable by `helmet-evaluate` and `helmet-predict`: the study's MLP head alone is 19 MB
    of float32 per repeat kept, and its seed ensemble three of them.
    """
    for name in names:
        path = folder.head_file(name)
        if name == selected or not path.is_file():
            continue
        card = read_card(path)
        check_file(path, card)  # the bytes the card describes, before rewriting them
        if card.files["head"].weights_dtype != "float32":
            continue
        head = keras.saving.load_model(path, safe_mode=True, compile=False)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.keras")
        with tensorflow_log_lines_dropped():  # float16 layers: TensorFlow's DT_HALF log line (E0000)
            archived, dtype = archived_copy(head)
            archived.save(partial)
        partial.replace(path)
        files = {**card.files, "head": file_ref(path, weights_dtype=dtype)}
        replace(card, files=files).write(folder.card_file(name))


def add_exports(folder: RunFolder, name: str, exports: dict[str, ExportedFile]) -> None:
    """Record the TensorFlow Lite files (and their hashes) in the selected model's card."""
    card = read_card(folder.model_file(name))
    files = dict(card.files)
    for kind, export in exports.items():
        files[kind] = file_ref(folder.models_dir / export.file)
    replace(card, files=files).write(folder.card_file(name))

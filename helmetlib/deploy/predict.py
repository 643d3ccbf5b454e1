"""Apply a trained model to new images: `load_model`, `predict` (head crops), `predict_photos` (every head box of
whole site photos), TensorFlow Lite export.

A model file is only used together with its card (`<name>.card.json` beside it), which names the file and its
SHA-256, says what the input must be (size, RGB, normalisation), how a head box is cut from a photo, how to tell an
input unlike the training crops (`crop_check`) and which threshold to apply; prediction never guesses those, and
a card edited after the run wrote it is refused. Every per-file problem (unreadable, empty, too large, not a head
crop) becomes an error row while the other images are predicted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib.core.preprocess import normalize
from helmetlib.core.records import RecordError
from helmetlib.core.timings import timed
from helmetlib.data.annotations import AnnotatedPhoto, PhotoIndex
from helmetlib.data.dataset import CLASS_NAMES, DatasetError, ImageArray, read_image_array
from helmetlib.data.formats import read_annotations
from helmetlib.data.photos import MAX_PIXELS, CropRule, fit_to_input, read_image_file
from helmetlib.deploy.cards import ModelCard, ModelError, check_file, read_card
from helmetlib.deploy.crop_check import CheckArrays, crop_scores
from helmetlib.run.folder import RunFolder

BLANK_PIXEL_SPREAD = 2.0  # pixel standard deviation (0-255) below which an image is blank: nothing to classify
WHOLE_PHOTO_ASPECT = 2.0  # a head crop is about square: a longer side over twice the shorter is not one
WHOLE_PHOTO_SIDE = 4  # cards without a crop check: nor is an image over 4 times the model's input side
NOT_A_HEAD_CROP = "not a head crop"


@dataclass
class Prediction:
    """One row of a prediction table: the input (file, index in an array), P(helmet) calibrated as the card says,
    the label at `threshold`, the input's head-crop score (at most 1: like the training crops), or the error that
    kept it from an answer; for a head box of a whole photo also the box, its annotated label and the share of its
    crop window outside the photo."""

    source: str
    index: int | None = None
    probability: float | None = None
    label: int | None = None
    class_name: str | None = None
    threshold: float | None = None
    head_crop_score: float | None = None
    error: str | None = None
    box: str | None = None
    annotated_label: int | None = None
    padded_share: float | None = None


CROP_COLUMNS = [field.name for field in dataclasses.fields(Prediction)][:8]
PHOTO_COLUMNS = [*CROP_COLUMNS, "box", "annotated_label", "padded_share"]
RESULT_COLUMNS = CROP_COLUMNS  # the table of `predict`


@dataclass
class LoadedModel:
    """A model ready for prediction: its card, a function from normalised batches to its raw P(helmet), and one to
    the features its crop check compares (None: a TensorFlow Lite model, or a card without a check)."""

    path: Path
    card: ModelCard
    kind: str
    model: object  # the keras.Model, or the TFLite interpreter
    predict_batch: Callable[[np.ndarray], np.ndarray]
    features_batch: Callable[[np.ndarray], np.ndarray] | None = None
    check_arrays: CheckArrays | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        return self.card.input.height, self.card.input.width


def load_model(path: str | Path) -> LoadedModel:
    """Load a `.keras`, `.head.keras` or `.tflite` model with its card, or a run folder's deployed model.

    `ModelError` when the file is missing, the card is missing, malformed or edited, or the card does not describe
    this very file (name, SHA-256, model name, input size).
    """
    path = Path(path)
    if path.is_dir():
        path = _deployed_model_file(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if path.suffix not in (".keras", ".tflite"):
        raise ModelError(f"{path}: not a model file (expected .keras, .tflite or a run folder)")
    card = read_card(path)
    expected = (card.input.height, card.input.width, card.input.channels)
    features_batch = None
    if path.suffix == ".keras":
        from helmetlib.deploy.artifacts import load_model_file
        from helmetlib.models.builders import feature_model

        model = load_model_file(path, card)
        if model.name != card.name:
            raise ModelError(f"{path}: model card does not match the model (card {card.name!r}, model {model.name!r})")
        shape = (tuple(model.input_shape[1:]), tuple(model.output_shape[1:]))
        predict_batch = lambda x: model.predict(x, verbose=0).ravel()  # noqa: E731
        if card.crop_check is not None:
            extractor = feature_model(model)
            features_batch = lambda x: extractor.predict(x, verbose=0)  # noqa: E731
    else:
        check_file(path, card)
        model = _tflite_interpreter(path)
        details = model.get_input_details()[0]
        shape = (tuple(details["shape"][1:]), tuple(model.get_output_details()[0]["shape"][1:]))
        predict_batch = lambda x: _tflite_predict(model, x)  # noqa: E731
    if shape != (expected, (1,)):
        raise ModelError(f"{path}: model card does not match the model (card input {expected}, model {shape})")
    arrays = _check_arrays(path, card)
    return LoadedModel(path, card, path.suffix[1:], model, predict_batch, features_batch, arrays)


def _check_arrays(path: Path, card: ModelCard) -> CheckArrays | None:
    """The crop check's arrays beside the card, checked against its SHA-256; None for a card without a check."""
    if card.crop_check is None:
        return None
    arrays_file = path.parent / card.crop_check.file
    if not arrays_file.is_file():
        raise ModelError(f"{arrays_file}: the crop check its card {path.name} names is missing")
    check_file(arrays_file, card)
    return CheckArrays.read(arrays_file)


def _deployed_model_file(run_dir: Path) -> Path:
    """The deployed model of a run folder (the selected model, or the cross-architecture ensemble): from
    `run.json`, or `selection.json` of a notebook run on its own."""
    folder = RunFolder(run_dir)
    try:
        if folder.record_file.is_file():
            selection = folder.read_record().selection
        elif folder.selection_file.is_file():
            selection = folder.read_selection()
        else:
            raise ModelError(f"{run_dir}: not a run folder (no run.json or selection.json)")
    except RecordError as error:
        raise ModelError(str(error)) from None
    if selection is None or not selection.deployed:
        raise ModelError(f"{run_dir}: the run deployed no model (it failed, or every model collapsed)")
    return folder.model_file(selection.deployed)


def _tflite_interpreter(path: Path):
    from helmetlib.core.backend import tensorflow_log_lines_dropped, tf

    try:
        with warnings.catch_warnings(), tensorflow_log_lines_dropped():
            # tf.lite.Interpreter announces its move to ai-edge-litert on every load, and its CPU delegate
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            interpreter = tf.lite.Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
    except ValueError as error:
        raise ModelError(f"{path}: not a loadable TensorFlow Lite model ({error})") from None
    return interpreter


def _tflite_predict(interpreter, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model image by image (its input has batch size 1)."""
    from helmetlib.core.backend import tensorflow_log_lines_dropped

    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    with tensorflow_log_lines_dropped():  # the first invoke announces its CPU delegate on stderr
        for image in x:
            interpreter.set_tensor(input_index, image[None].astype(np.float32))
            interpreter.invoke()
            outputs.append(float(interpreter.get_tensor(output_index).ravel()[0]))
    return np.array(outputs)


def iter_images(
    inputs: Iterable[str | Path], *, max_pixels: int = MAX_PIXELS
) -> Iterator[tuple[str, int | None, np.ndarray | None, str | None]]:
    """(source, index, RGB image or None, error or None) for image files, folders (recursively) and `.npy` arrays.

    `.npy` arrays are memory-mapped and read one image at a time; image files larger than `max_pixels` are
    refused from their header, without decoding them.
    """
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            yield from iter_images(files, max_pixels=max_pixels)
        elif path.suffix == ".npy":
            try:
                images = read_image_array(path, image_size=None)  # dataset convention: BGR file, read as RGB
            except DatasetError as error:
                yield str(path), None, None, str(error)
                continue
            for index in range(len(images)):
                yield str(path), index, images[index], None
        else:
            yield (str(path), None, *read_image_file(path, max_pixels))


def unfit_input(image_rgb: np.ndarray, input_size: tuple[int, int], *, checked: bool = False) -> str | None:
    """Why `image_rgb` (H, W, 3) is not an input a head-crop classifier with `input_size` (height, width) can
    answer for, or None: a blank image, or one far from square; without a crop check (`checked`), also one far
    larger than the model's input."""
    if image_rgb.ndim != 3 or 0 in image_rgb.shape:
        return None  # not an image at all: `fit_to_input` says what is wrong
    height, width = image_rgb.shape[:2]
    spread = float(np.asarray(image_rgb, dtype=np.float32).std())
    if spread < BLANK_PIXEL_SPREAD:
        return f"blank or near-constant image (pixel standard deviation {spread:.1f}): nothing to classify"
    longest = WHOLE_PHOTO_SIDE * max(input_size)
    too_large = not checked and max(height, width) > longest
    if max(height, width) > WHOLE_PHOTO_ASPECT * min(height, width) or too_large:
        return (
            f"looks like a whole photo ({width}x{height} pixels; head crops are about square"
            + ("" if checked else f" and at most {longest} pixels on a side")
            + "): give head crops, or whole photos with --boxes"
        )
    return None


def check_threshold(threshold: float) -> float:
    """`threshold` as a float when it is finite and strictly between 0 and 1, else `ValueError`."""
    value = float(threshold)
    if not (math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"threshold must be a number strictly between 0 and 1, got {threshold!r}")
    return value


def _loaded(model_or_path: LoadedModel | str | Path) -> LoadedModel:
    return model_or_path if isinstance(model_or_path, LoadedModel) else load_model(model_or_path)


def predict(
    model_or_path: LoadedModel | str | Path,
    images: np.ndarray | Iterable[str | Path],
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    pad: bool = False,
    max_pixels: int = MAX_PIXELS,
    check_crops: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per image (`CROP_COLUMNS`): source, index, P(helmet), label, class name, threshold used,
    head-crop score, error (None when fine).

    `images` is an RGB uint8 array (N, H, W, 3) or paths (image files, folders, `.npy` files in the dataset's
    BGR format). Images are resized to the card's input and normalised as the card says; P(helmet) is calibrated
    as the card says (Keras and TFLite alike); the card's deployed threshold applies unless `threshold` is given.
    Unreadable, truncated or blank inputs, and with `check_crops` inputs that fail the card's crop check (a whole
    photo, an image unlike the training crops), get a row with an error; the others are predicted.
    """
    model = _loaded(model_or_path)
    threshold = model.card.threshold.value if threshold is None else check_threshold(threshold)
    if isinstance(images, np.ndarray | ImageArray):
        items = (("array", index, images[index], None) for index in range(len(images)))
    else:
        items = iter_images(images, max_pixels=max_pixels)
    rows = (
        (Prediction(source=source, index=index, threshold=threshold, error=error), image)
        for source, index, image, error in _progress(items, progress, unit="image")
    )
    predicted = _predict_rows(model, rows, batch_size=batch_size, pad=pad, refuse_unlike=check_crops)
    return _table(predicted, CROP_COLUMNS)


def predict_photos(
    model_or_path: LoadedModel | str | Path,
    photos: Iterable[str | Path],
    *,
    boxes: str | Path,
    format: str,
    classes: dict[str, int] | None = None,
    min_box: int | None = None,
    threshold: float | None = None,
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per head box of whole site photos (`PHOTO_COLUMNS`): the prediction table plus `box` ("x1 y1 x2 y2"
    in photo pixels), `annotated_label` (0/1 when the annotation names a mapped class, else empty) and
    `padded_share` (the share of the crop's window outside the photo).

    `photos` are image files or folders; `boxes` the annotations (`format` voc, yolo, coco or csv) naming them.
    Each head is cropped by the rule recorded in the model's card, `min_box` overriding its smallest head. Only
    boxes of the classes in `classes` are judged; without it, the names of heads (`helmet`, `head`, ...) decide
    and `annotations.UnknownClasses` lists the classes found when they cannot. A head too small or outside its
    photo, an unreadable photo, an annotation problem, a photo without annotation: an error row each, never a
    silent drop. The head-crop score is a column here, not a reason to refuse: the annotation says it is a head.
    """
    model = _loaded(model_or_path)
    threshold = model.card.threshold.value if threshold is None else check_threshold(threshold)
    rule = model.card.cutting_rule
    rule = rule if min_box is None else dataclasses.replace(rule, min_box=min_box)
    index = PhotoIndex.of([Path(photo) for photo in photos])
    annotations = read_annotations(boxes, format=format, photos=index, classes=classes)
    problem_rows = [
        (Prediction(source=problem.file, threshold=threshold, error=problem.reason), None)
        for problem in annotations.problems
    ]
    problem_rows += [
        (Prediction(source=str(path), threshold=threshold, error=f"no head boxes for this photo in {boxes}"), None)
        for path in annotations.unannotated
    ]
    heads = _head_crops(_progress(annotations.photos, progress, unit="photo"), rule, threshold, max_pixels)
    rows = itertools.chain(heads, problem_rows)
    return _table(_predict_rows(model, rows, batch_size=batch_size, refuse_unlike=False), PHOTO_COLUMNS)


def _table(rows: list[Prediction], columns: list[str]) -> pd.DataFrame:
    table = pd.DataFrame([dataclasses.asdict(row) for row in rows], columns=list(Prediction.__dataclass_fields__))
    integers = {name: "Int64" for name in ("index", "label", "annotated_label") if name in columns}
    return table[columns].astype(integers)


def _head_crops(
    photos: Iterable[AnnotatedPhoto], rule: CropRule, threshold: float, max_pixels: int
) -> Iterator[tuple[Prediction, np.ndarray | None]]:
    """(row, RGB crop or None) per head box, reading one photo at a time (decoded once, EXIF orientation applied,
    the boxes placed on that decoded image)."""
    for photo in photos:
        image, error = read_image_file(photo.path, max_pixels)
        boxes, misplaced = photo.boxes_in(image.shape[:2]) if image is not None else ((), None)
        if error or misplaced:
            yield Prediction(source=str(photo.path), threshold=threshold, error=error or misplaced), None
            continue
        for index, box in enumerate(boxes):
            problem = rule.box_problem(box, image.shape[:2]) or rule.too_small(box)
            row = Prediction(
                source=str(photo.path),
                index=index,
                threshold=threshold,
                error=problem,
                box=box.text(),
                annotated_label=box.label,
            )
            if problem is None:
                row.padded_share = round(rule.window(box, image.shape[:2]).padded_share(image.shape[:2]), 3)
            yield row, None if problem else rule.crop(image, box)


def _progress(items: Iterable, shown: bool, *, unit: str) -> Iterable:
    if not shown:
        return items
    import sys

    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr)


def _predict_rows(
    model: LoadedModel,
    items: Iterable[tuple[Prediction, np.ndarray | None]],
    *,
    batch_size: int,
    pad: bool = False,
    refuse_unlike: bool = True,
) -> list[Prediction]:
    """Fill in each row's prediction from its RGB image, `batch_size` images at a time; an image that is blank,
    far from square, or cannot be resized gets an error instead, and with `refuse_unlike` one that fails the card's
    crop check too."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    checked = model.card.crop_check is not None
    rows: list[Prediction] = []
    batch: list[tuple[Prediction, np.ndarray, int]] = []
    for row, image in items:
        rows.append(row)
        if image is not None and row.error is None:
            row.error = unfit_input(image, model.input_size, checked=checked)
        if image is not None and row.error is None:
            try:
                batch.append((row, fit_to_input(image, model.input_size, pad=pad), max(image.shape[:2])))
            except (cv2.error, ValueError) as problem:
                row.error = f"cannot prepare the image: {str(problem).strip().splitlines()[-1]}"
        if len(batch) >= batch_size:
            _predict_batch(model, batch, refuse_unlike)
            batch = []
    if batch:
        _predict_batch(model, batch, refuse_unlike)
    return rows


def _predict_batch(model: LoadedModel, batch: list[tuple[Prediction, np.ndarray, int]], refuse_unlike: bool) -> None:
    x = normalize(np.stack([image for _, image, _ in batch]), model.card.input.normalization)
    with timed("inference"):
        probabilities = model.predict_batch(x)
        features = model.features_batch(x) if model.card.crop_check and model.features_batch is not None else None
    if model.card.calibration is not None:
        probabilities = model.card.calibration.apply(probabilities)
    scores, reasons = [None] * len(batch), [None] * len(batch)
    if model.card.crop_check is not None:
        sides = [side for _, _, side in batch]
        scores, reasons = crop_scores(model.card.crop_check, model.check_arrays, features, sides)
    for (row, _, _), probability, score, reason in zip(batch, probabilities, scores, reasons, strict=True):
        row.head_crop_score = None if score is None or np.isnan(score) else round(float(score), 3)
        if reason and refuse_unlike:
            row.error = (
                f"{NOT_A_HEAD_CROP} (score {score:.2f}: {reason}): give head crops, or whole photos with --boxes"
            )
            continue
        label = int(probability >= row.threshold)
        row.probability, row.label, row.class_name = float(probability), label, CLASS_NAMES[label]

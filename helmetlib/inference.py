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

from helmetlib.annotations import AnnotatedPhoto, PhotoIndex, read_annotations
from helmetlib.cards import ModelCard, ModelError, check_file, read_card
from helmetlib.crop_check import CheckArrays, crop_scores
from helmetlib.data import CLASS_NAMES, DatasetError, ImageArray, read_image_array
from helmetlib.photos import MAX_PIXELS, CropRule, fit_to_input, read_image_file
from helmetlib.preprocess import normalize
from helmetlib.records import RecordError
from helmetlib.results import ExportedFile
from helmetlib.runs import RunFolder

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
        from helmetlib.artifacts import load_run_model
        from helmetlib.models import feature_model

        model = load_run_model(path, card)
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
    from helmetlib.backend import tensorflow_log_lines_dropped, tf

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
    from helmetlib.backend import tensorflow_log_lines_dropped

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
    probabilities = model.predict_batch(x)
    if model.card.calibration is not None:
        probabilities = model.card.calibration.apply(probabilities)
    scores, reasons = [None] * len(batch), [None] * len(batch)
    if model.card.crop_check is not None:
        features = model.features_batch(x) if model.features_batch is not None else None
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


def export_tflite(keras_path: str | Path, validation_images: np.ndarray | None = None) -> dict[str, ExportedFile]:
    """Write `<name>.tflite` (float32) and `<name>.quant.tflite` (dynamic-range int8 weights) beside the model,
    record them (with their SHA-256) in its card, and return each file's size and, given validation images (RGB
    uint8), its agreement with the Keras model: the share of equal labels and the largest probability difference.
    """
    from helmetlib.artifacts import add_exports
    from helmetlib.backend import tf
    from helmetlib.weights import file_sha256

    keras_path = Path(keras_path)
    keras_model = load_model(keras_path)
    folder = RunFolder(keras_path.parent.parent)
    name = keras_model.card.name
    variants = {
        "tflite": (folder.tflite_file(name), {}),
        "quant_tflite": (folder.tflite_file(name, quantized=True), {"optimizations": [tf.lite.Optimize.DEFAULT]}),
    }
    for path, options in variants.values():
        keras_model.model.export(str(path), format="litert", verbose=False, **options)
    exports = {
        kind: ExportedFile(file=path.name, megabytes=round(path.stat().st_size / 2**20, 2), sha256=file_sha256(path))
        for kind, (path, _) in variants.items()
    }
    add_exports(folder, name, exports)
    if validation_images is None:
        return exports
    reference = predict(keras_model, validation_images, check_crops=False)  # every image answered, to compare
    for kind, (path, _) in variants.items():
        exported = predict(load_model(path), validation_images, check_crops=False)
        exports[kind] = ExportedFile(
            **{
                **exports[kind].to_json(),
                "label_agreement": float((reference["label"] == exported["label"]).mean()),
                "max_probability_difference": float((reference["probability"] - exported["probability"]).abs().max()),
            }
        )
    return exports


def _parser():
    from helmetlib import cli
    from helmetlib.annotations import ANNOTATION_FORMATS

    parser = cli.parser(
        "helmet-predict",
        "Predict helmet / no helmet for head crops (or for every head box of whole site photos, with --boxes).",
        f"""columns: {", ".join(CROP_COLUMNS)}; with --boxes also box (x1 y1 x2 y2, photo pixels),
  annotated_label (0/1) and padded_share (share of the crop's window outside the photo)
  head_crop_score: at most 1 when the input is like the model's training crops; above 1 an input is an error row
  ("not a head crop"): a whole photo needs --boxes
examples:
  helmet-predict --model reports/latest crops/ --out predictions.csv
  helmet-predict --model reports/latest images/ --boxes annotations/ --format voc --classes helmet=1,head=0 --draw out/
exit codes: 0 every row predicted; 1 some rows are errors (see the error column); 2 bad options, model or classes
  (before any prediction)""",
    )
    parser.add_argument("--model", required=True, help=".keras or .tflite file with its card, or a run folder")
    parser.add_argument("inputs", nargs="+", help="head crops: image files, folders (recursive), .npy arrays (BGR)")
    parser.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument(
        "--threshold",
        type=float,
        help="decision threshold in (0, 1) (default: the model card's; recorded in the table)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (%(default)s)")
    parser.add_argument("--pad", action="store_true", help="keep the aspect ratio by padding to a square first")
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help=f"larger images become error rows (default {MAX_PIXELS:,})"
    )
    photos = parser.add_argument_group("whole site photos: one row per head box, cropped as the model's training data")
    photos.add_argument("--boxes", help="annotation file or folder naming the INPUTS photos' head boxes")
    photos.add_argument("--format", choices=ANNOTATION_FORMATS, help="of --boxes (csv: path,xmin,ymin,xmax,ymax)")
    photos.add_argument(
        "--classes",
        help="NAME=LABEL,...: judge these classes only (e.g. helmet=1,head=0; default: the classes named like heads)",
    )
    photos.add_argument("--min-box", type=int, help="heads smaller than this are error rows (default: the model's)")
    photos.add_argument(
        "--draw",
        help="write each photo with its boxes and answers, and summary.csv, into DIR (a new or drawings folder)",
    )
    return parser


def _option_problems(args) -> list[str]:
    """What is wrong with the options, found before any model is loaded or image read."""
    from helmetlib.annotations import parse_classes
    from helmetlib.records import output_file_problem

    problems = []
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        problems.append("--out must end in .csv or .json")
    elif args.out:
        problems.append(output_file_problem(args.out, "--out"))
    if args.batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_pixels < 1:
        problems.append(f"--max-pixels must be at least 1, got {args.max_pixels}")
    if args.threshold is not None:
        try:
            check_threshold(args.threshold)
        except ValueError as error:
            problems.append(f"--{error}")
    photo_options = {"--format": args.format, "--classes": args.classes, "--min-box": args.min_box, "--draw": args.draw}
    if args.boxes is None:
        problems += [f"{name} needs --boxes" for name, value in photo_options.items() if value is not None]
    elif args.format is None:
        problems.append("--boxes needs --format (voc, yolo, coco or csv)")
    if args.classes:
        try:
            parse_classes(args.classes)
        except ValueError as error:
            problems.append(str(error))
    if args.min_box is not None and args.min_box < 1:
        problems.append(f"--min-box must be at least 1, got {args.min_box}")
    problems += _overwrite_problems(args)
    return [problem for problem in problems if problem]


def _overwrite_problems(args) -> list[str]:
    """Outputs that would destroy or mix with inputs: `--out` naming an input or an annotation file, a `--draw`
    folder that is, holds or lies in an input folder, or cannot be written."""
    from helmetlib.records import output_folder_problem

    inputs = [Path(item).resolve() for item in [*args.inputs, *([args.boxes] if args.boxes else [])]]
    problems = []
    if args.out:
        out = Path(args.out).resolve()
        touched = [
            item for item in inputs if out == item or (out.exists() and item.is_dir() and out.is_relative_to(item))
        ]
        if touched:
            problems.append(f"--out {args.out}: is an input or lies among them ({touched[0]}); give another file")
    if args.draw:
        draw = Path(args.draw).resolve()
        for item in inputs:
            if item == draw or item.is_relative_to(draw) or (item.is_dir() and draw.is_relative_to(item)):
                problems.append(
                    f"--draw {args.draw}: is, holds or lies in an input ({item}); drawings would overwrite or mix with "
                    "the photos: give a folder of its own"
                )
                break
        problems.append(output_folder_problem(args.draw, "--draw"))
        if args.out and Path(args.out).resolve() == draw / "summary.csv":
            problems.append(f"--out {args.out}: --draw writes its summary.csv there")
    return problems


def _summary(table: pd.DataFrame, model: LoadedModel, args) -> str:
    """The one line `helmet-predict` ends with: what was judged, what failed, with which model and threshold."""
    failed = int(table["error"].notna().sum())
    card = model.card.threshold.value
    threshold = (
        f"threshold {args.threshold:g} (--threshold; the card's {card:.3f})"
        if args.threshold is not None
        else f"threshold {card:.3f} (the card's)"
    )
    if args.boxes:
        judged = table["label"].dropna()
        photos = table.loc[table["box"].notna(), "source"].nunique()
        counted = (
            f"{photos} photos, {len(judged)} heads judged: {int((judged == 0).sum())} bare heads, "
            f"{int((judged == 1).sum())} helmets; {failed} failed"
        )
    else:
        counted = f"{len(table) - failed} predicted, {failed} failed"
        not_crops = int(table["error"].fillna("").str.startswith(NOT_A_HEAD_CROP).sum())
        if not_crops:
            counted += f" ({not_crops} not head crops: give head crops, or whole photos with --boxes)"
    return f"helmet-predict: {counted} ({model.kind} {model.path.name}, {threshold})"


def main(argv: list[str] | None = None) -> int:
    import sys

    from helmetlib.annotations import UnknownClasses, parse_classes

    args = _parser().parse_args(argv)
    problems = _option_problems(args)
    if problems:
        print(f"helmet-predict: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
        options = dict(threshold=args.threshold, batch_size=args.batch_size, max_pixels=args.max_pixels)
        if args.boxes:
            classes = parse_classes(args.classes) if args.classes else None
            table = predict_photos(
                model,
                args.inputs,
                boxes=args.boxes,
                format=args.format,
                classes=classes,
                min_box=args.min_box,
                **options,
            )
        else:
            table = predict(model, args.inputs, pad=args.pad, progress=sys.stderr.isatty(), **options)
    except (ModelError, UnknownClasses) as error:
        print(f"helmet-predict: error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        Path(args.out).write_text(table.to_json(orient="records", indent=2))
    else:
        table.to_csv(args.out, index=False)
    if args.draw:
        from helmetlib.drawing import draw_predictions

        draw_predictions(table, args.draw, max_pixels=args.max_pixels)
    print(_summary(table, model, args), file=sys.stderr)
    return 1 if table["error"].notna().any() else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

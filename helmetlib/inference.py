"""Apply a trained model to new photos: `load_model`, `predict`, `helmet-predict`, TensorFlow Lite export.

A model file is only used together with its card (`<name>.card.json` beside it), which names the file and its
SHA-256, says what the input must be (size, RGB, normalisation) and which threshold to apply; prediction never
guesses those. Every per-file problem (unreadable, empty, too large, zero-size arrays) becomes an error row while
the other images are predicted.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib import cli
from helmetlib.annotations import (
    ANNOTATION_FORMATS,
    AnnotatedPhoto,
    AnnotationFormat,
    PhotoIndex,
    parse_classes,
    read_annotations,
)
from helmetlib.cards import ModelCard, ModelError, check_file, read_card
from helmetlib.data import CLASS_NAMES, DatasetError, ImageArray, read_image_array
from helmetlib.photos import MAX_PIXELS, CropRule, draw_predictions, fit_to_input, read_image_file
from helmetlib.preprocess import normalize
from helmetlib.records import RecordError, output_file_problem
from helmetlib.results import ExportedFile
from helmetlib.runs import RunFolder

RESULT_COLUMNS = ["source", "index", "probability", "label", "class_name", "threshold", "error"]
BLANK_PIXEL_SPREAD = 2.0  # pixel standard deviation (0-255) below which an image is blank: nothing to classify
WHOLE_PHOTO_ASPECT = 2.0  # a head crop is about square: a longer side over twice the shorter is not one
WHOLE_PHOTO_SIDE = 4  # nor is an image whose longer side is over 4 times the model's input side


@dataclass
class LoadedModel:
    """A model ready for prediction: its card, and a function from normalised batches to P(helmet)."""

    path: Path
    card: ModelCard
    kind: str
    model: object  # the keras.Model, or the TFLite interpreter
    predict_batch: Callable[[np.ndarray], np.ndarray]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.card.input.height, self.card.input.width


def load_model(path: str | Path) -> LoadedModel:
    """Load a `.keras`, `.head.keras` or `.tflite` model with its card, or a run folder's selected model.

    `ModelError` when the file is missing, the card is missing or malformed, or the card does not describe this
    very file (name, SHA-256, model name, input size).
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
    if path.suffix == ".keras":
        from helmetlib.artifacts import load_run_model

        model = load_run_model(path, card)
        if model.name != card.name:
            raise ModelError(f"{path}: model card does not match the model (card {card.name!r}, model {model.name!r})")
        shape = (tuple(model.input_shape[1:]), tuple(model.output_shape[1:]))
        predict_batch = lambda x: model.predict(x, verbose=0).ravel()  # noqa: E731
    else:
        check_file(path, card)
        model = _tflite_interpreter(path)
        details = model.get_input_details()[0]
        shape = (tuple(details["shape"][1:]), tuple(model.get_output_details()[0]["shape"][1:]))
        predict_batch = lambda x: _tflite_predict(model, x)  # noqa: E731
    if shape != (expected, (1,)):
        raise ModelError(f"{path}: model card does not match the model (card input {expected}, model {shape})")
    return LoadedModel(path=path, card=card, kind=path.suffix[1:], model=model, predict_batch=predict_batch)


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
        raise ModelError(f"{run_dir}: the run selected no model (failed, or every model collapsed)")
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


def unfit_input(image_rgb: np.ndarray, input_size: tuple[int, int]) -> str | None:
    """Why `image_rgb` (H, W, 3) is not an input a head-crop classifier with `input_size` (height, width) can
    answer for, or None: a blank image, or one that looks like a whole photo rather than a head crop."""
    if image_rgb.ndim != 3 or 0 in image_rgb.shape:
        return None  # not an image at all: `fit_to_input` says what is wrong
    height, width = image_rgb.shape[:2]
    spread = float(np.asarray(image_rgb, dtype=np.float32).std())
    if spread < BLANK_PIXEL_SPREAD:
        return f"blank or near-constant image (pixel standard deviation {spread:.1f}): nothing to classify"
    longest = WHOLE_PHOTO_SIDE * max(input_size)
    if max(height, width) > WHOLE_PHOTO_ASPECT * min(height, width) or max(height, width) > longest:
        return (
            f"looks like a whole photo ({width}x{height} pixels; head crops are about square and at most "
            f"{longest} pixels on a side): give head crops or --boxes"
        )
    return None


def check_threshold(threshold: float) -> float:
    """`threshold` as a float when it is finite and strictly between 0 and 1, else `ValueError`."""
    value = float(threshold)
    if not (math.isfinite(value) and 0 < value < 1):
        raise ValueError(f"threshold must be a number strictly between 0 and 1, got {threshold!r}")
    return value


def predict(
    model_or_path: LoadedModel | str | Path,
    images: np.ndarray | Iterable[str | Path],
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    pad: bool = False,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per image: source, index, P(helmet), label, class name, threshold used, error (None when fine).

    `images` is an RGB uint8 array (N, H, W, 3) or paths (image files, folders, `.npy` files in the dataset's
    BGR format). Images are resized to the card's input and normalised as the card says; P(helmet) is calibrated
    as the card says (Keras and TFLite alike); the card's deployed threshold applies unless `threshold` is given.
    Unreadable, truncated or blank inputs and whole photos (far from square, or far larger than the model's input)
    get a row with an error; the others are predicted.
    """
    model = model_or_path if isinstance(model_or_path, LoadedModel) else load_model(model_or_path)
    threshold = model.card.threshold.value if threshold is None else check_threshold(threshold)
    if isinstance(images, np.ndarray | ImageArray):
        items = (("array", index, images[index], None) for index in range(len(images)))
    else:
        items = iter_images(images, max_pixels=max_pixels)
    rows = (
        (_row(source=source, index=index, threshold=threshold, error=error), image)
        for source, index, image, error in _progress(items, progress, unit="image")
    )
    table = _predict_rows(model, rows, threshold=threshold, batch_size=batch_size, pad=pad)
    return pd.DataFrame(table, columns=RESULT_COLUMNS).astype({"index": "Int64", "label": "Int64"})


def predict_photos(
    model_or_path: LoadedModel | str | Path,
    photos: Iterable[str | Path],
    *,
    boxes: str | Path,
    format: AnnotationFormat,
    classes: dict[str, int] | None = None,
    min_box: int | None = None,
    threshold: float | None = None,
    batch_size: int = 32,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per head box of whole site photos: the prediction table plus `box` ("x1 y1 x2 y2" in photo pixels)
    and `annotated_label` (0/1 through `classes` when the annotation names a mapped class, else empty).

    `photos` are image files or folders; `boxes` the annotations (`format` voc, yolo, coco or csv) naming them.
    Each head is cropped by the rule the model was trained with (its card's `training_data.crop_rule`; the
    default rule at the model's input size otherwise), `min_box` overriding its smallest head. With `classes`,
    boxes of other classes (`person`) are left out. A head too small or outside its photo, an unreadable photo,
    an annotation problem, a photo without annotation: an error row each, never a silent drop.
    """
    model = model_or_path if isinstance(model_or_path, LoadedModel) else load_model(model_or_path)
    threshold = model.card.threshold.value if threshold is None else check_threshold(threshold)
    rule = model.card.training_data.crop_rule or CropRule(image_size=model.input_size[0])
    rule = rule if min_box is None else dataclasses.replace(rule, min_box=min_box)
    index = PhotoIndex.of([Path(photo) for photo in photos])
    annotations = read_annotations(boxes, format=format, photos=index, classes=classes)
    annotated = {photo.path.resolve() for photo in annotations.photos}
    unannotated = [path for path in index.files if path.resolve() not in annotated]
    problem_rows = [
        (_row(source=problem.file, threshold=threshold, error=problem.reason), None) for problem in annotations.problems
    ]
    problem_rows += [
        (_row(source=str(path), threshold=threshold, error=f"no head boxes for this photo in {boxes}"), None)
        for path in unannotated
    ]
    heads = _head_crops(_progress(annotations.photos, progress, unit="photo"), rule, threshold, max_pixels)
    table = _predict_rows(model, itertools.chain(heads, problem_rows), threshold=threshold, batch_size=batch_size)
    columns = [*RESULT_COLUMNS, "box", "annotated_label"]
    return pd.DataFrame(table, columns=columns).astype({"index": "Int64", "label": "Int64", "annotated_label": "Int64"})


def _row(*, source: str, threshold: float, index: int | None = None, error: str | None = None, **extra) -> dict:
    """A prediction row before prediction: probability, label and class name are filled in by `_predict_batch`."""
    return {
        "source": source,
        "index": index,
        "probability": None,
        "label": None,
        "class_name": None,
        "threshold": threshold,
        "error": error,
        **extra,
    }


def _head_crops(
    photos: Iterable[AnnotatedPhoto], rule: CropRule, threshold: float, max_pixels: int
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """(row, RGB crop or None) per head box, reading one photo at a time."""
    for photo in photos:
        image, error = read_image_file(photo.path, max_pixels)
        if error:
            yield _row(source=str(photo.path), threshold=threshold, error=error), None
            continue
        for index, box in enumerate(photo.boxes):
            problem = rule.box_problem(box, image.shape[:2]) or rule.too_small(box)
            row = _row(
                source=str(photo.path),
                index=index,
                threshold=threshold,
                error=problem,
                box=box.text(),
                annotated_label=box.label,
            )
            yield row, None if problem else rule.crop(image, box)


def _progress(items: Iterable, shown: bool, *, unit: str) -> Iterable:
    if not shown:
        return items
    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr)


def _predict_rows(
    model: LoadedModel,
    items: Iterable[tuple[dict, np.ndarray | None]],
    *,
    threshold: float,
    batch_size: int,
    pad: bool = False,
) -> list[dict]:
    """Fill in each row's prediction from its RGB image, `batch_size` images at a time; an image that is blank or
    looks like a whole photo, or cannot be resized, gets an error instead."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rows: list[dict] = []
    batch: list[tuple[dict, np.ndarray]] = []
    for row, image in items:
        rows.append(row)
        if image is not None and row["error"] is None:
            row["error"] = unfit_input(image, model.input_size)
        if image is not None and row["error"] is None:
            try:
                batch.append((row, fit_to_input(image, model.input_size, pad=pad)))
            except (cv2.error, ValueError) as problem:
                row["error"] = f"cannot prepare the image: {str(problem).strip().splitlines()[-1]}"
        if len(batch) >= batch_size:
            _predict_batch(model, batch, threshold)
            batch = []
    if batch:
        _predict_batch(model, batch, threshold)
    return rows


def _predict_batch(model: LoadedModel, batch: list[tuple[dict, np.ndarray]], threshold: float) -> None:
    x = normalize(np.stack([image for _, image in batch]), model.card.input.normalization)
    probabilities = model.predict_batch(x)
    if model.card.calibration is not None:
        probabilities = model.card.calibration.apply(probabilities)
    for (row, _), probability in zip(batch, probabilities, strict=True):
        label = int(probability >= threshold)
        row.update(probability=float(probability), label=label, class_name=CLASS_NAMES[label])


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
    reference = predict(keras_model, validation_images)
    for kind, (path, _) in variants.items():
        exported = predict(load_model(path), validation_images)
        exports[kind] = ExportedFile(
            **{
                **exports[kind].to_json(),
                "label_agreement": float((reference["label"] == exported["label"]).mean()),
                "max_probability_difference": float((reference["probability"] - exported["probability"]).abs().max()),
            }
        )
    return exports


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "helmet-predict",
        "Predict helmet / no helmet for head crops (or for every head box of whole site photos, with --boxes).",
        f"""columns: {", ".join(RESULT_COLUMNS)}; with --boxes also box (x1 y1 x2 y2, photo pixels) and
  annotated_label (0/1 through --classes)
examples:
  helmet-predict --model reports/latest crops/ --out predictions.csv
  helmet-predict --model reports/latest images/ --boxes annotations/ --format voc --classes helmet=1,head=0 --draw out/
exit codes: 0 every row predicted; 1 some rows are errors (see the error column); 2 bad options or model""",
    )
    parser.add_argument("--model", required=True, help=".keras or .tflite file with its card, or a run folder")
    parser.add_argument("inputs", nargs="+", help="head crops: image files, folders (recursive), .npy arrays (BGR)")
    parser.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument("--threshold", type=float, help="decision threshold in (0, 1) (default: the model card's)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (%(default)s)")
    parser.add_argument("--pad", action="store_true", help="keep the aspect ratio by padding to a square first")
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help=f"larger images become error rows (default {MAX_PIXELS:,})"
    )
    photos = parser.add_argument_group("whole site photos: one row per head box, cropped as the model's training data")
    photos.add_argument("--boxes", help="annotation file or folder naming the INPUTS photos' head boxes")
    photos.add_argument("--format", choices=ANNOTATION_FORMATS, help="of --boxes (csv: path,xmin,ymin,xmax,ymax)")
    photos.add_argument("--classes", help="NAME=LABEL,...: predict these classes only (e.g. helmet=1,head=0)")
    photos.add_argument("--min-box", type=int, help="heads smaller than this are error rows (default: the model's)")
    photos.add_argument("--draw", help="write each photo with its boxes and answers, and summary.csv, into DIR")
    return parser


def _option_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the options, found before any model is loaded or image read."""
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
    if args.draw and Path(args.draw).exists() and not Path(args.draw).is_dir():
        problems.append(f"--draw {args.draw}: is a file, not a folder")
    return [problem for problem in problems if problem]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = _option_problems(args)
    if problems:
        print(f"helmet-predict: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
    except ModelError as error:
        print(f"helmet-predict: error: {error}", file=sys.stderr)
        return 2
    options = dict(threshold=args.threshold, batch_size=args.batch_size, max_pixels=args.max_pixels)
    if args.boxes:
        classes = parse_classes(args.classes) if args.classes else None
        table = predict_photos(
            model, args.inputs, boxes=args.boxes, format=args.format, classes=classes, min_box=args.min_box, **options
        )
    else:
        table = predict(model, args.inputs, pad=args.pad, progress=sys.stderr.isatty(), **options)
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        Path(args.out).write_text(table.to_json(orient="records", indent=2))
    else:
        table.to_csv(args.out, index=False)
    if args.draw:
        draw_predictions(table, args.draw, max_pixels=args.max_pixels)
    failed = int(table["error"].notna().sum())
    threshold = args.threshold if args.threshold is not None else model.card.threshold.value
    counted = f"{len(table) - failed} predicted, {failed} failed"
    if args.boxes:
        judged = table["label"].dropna()
        photos = table.loc[table["box"].notna(), "source"].nunique()
        counted = f"{photos} photos, {len(judged)} heads judged: {int((judged == 0).sum())} bare heads; {failed} failed"
    print(f"helmet-predict: {counted} ({model.kind} {model.path.name}, threshold {threshold:g})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

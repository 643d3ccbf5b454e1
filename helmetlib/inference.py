"""Apply a trained model to new photos: `load_model`, `predict`, `helmet-predict`, TensorFlow Lite export.

A model file is only used together with its card (`<name>.card.json` beside it), which names the file and its
SHA-256, says what the input must be (size, RGB, normalisation) and which threshold to apply; prediction never
guesses those. Every per-file problem (unreadable, empty, too large, zero-size arrays) becomes an error row while
the other images are predicted.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib.cards import ModelCard, ModelError, check_file, read_card
from helmetlib.data import CLASS_NAMES, DatasetError, ImageArray, read_image_array
from helmetlib.preprocess import normalize
from helmetlib.quiet import native_stderr_filtered
from helmetlib.records import RecordError, output_file_problem
from helmetlib.runs import ExportedFile, RunFolder

RESULT_COLUMNS = ["source", "index", "probability", "label", "class_name", "threshold", "error"]
MAX_PIXELS = 50_000_000  # larger images are refused from their header, before any decoding
BLANK_PIXEL_SPREAD = 2.0  # pixel standard deviation (0-255) below which an image is blank: nothing to classify
WHOLE_PHOTO_ASPECT = 2.0  # a head crop is about square: a longer side over twice the shorter is not one
WHOLE_PHOTO_SIDE = 4  # nor is an image whose longer side is over 4 times the model's input side
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


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
        path = _selected_model_file(path)
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


def _selected_model_file(run_dir: Path) -> Path:
    """The selected model of a run folder: from `run.json`, or `selection.json` of a notebook run on its own."""
    folder = RunFolder(run_dir)
    try:
        if folder.record_file.is_file():
            selected = folder.read_record().selected_model
        elif folder.selection_file.is_file():
            selected = folder.read_selection().selected_model
        else:
            raise ModelError(f"{run_dir}: not a run folder (no run.json or selection.json)")
    except RecordError as error:
        raise ModelError(str(error)) from None
    if not selected:
        raise ModelError(f"{run_dir}: the run selected no model (failed, or every model collapsed)")
    return folder.model_file(selected)


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
            yield (str(path), None, *_read_image_file(path, max_pixels))


def _read_image_file(path: Path, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    if not path.is_file():
        return None, "file not found"
    if path.stat().st_size == 0:
        return None, "empty file"
    size = _header_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        return None, f"image too large: {size[0]}x{size[1]} pixels (limit {max_pixels:,}; see --max-pixels)"
    if size is not None:
        problem = _incomplete_decoding(path)
        if problem:
            return None, f"truncated or partly decoded image ({problem})"
    try:
        with native_stderr_filtered():  # OpenCV and libpng complain about broken files on stderr; the row says it
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, grayscale expanded to 3 channels
    except cv2.error as error:
        return None, f"unreadable image ({str(error).strip().splitlines()[-1]})"
    if image is None or image.size == 0:
        kind = "corrupt image" if path.suffix.lower() in IMAGE_SUFFIXES else "not an image"
        return None, f"{kind}: OpenCV cannot decode it"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding its pixels, or None when Pillow cannot tell."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies, from the header alone
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # not an image Pillow knows: OpenCV decides below
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _incomplete_decoding(path: Path) -> str | None:
    """The decoder's complaint when an image file that Pillow recognises does not decode completely (a truncated
    JPEG, whose missing part OpenCV would fill with grey after a warning), else None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for broken data
        return str(error) or type(error).__name__
    return None


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
            f"{longest} pixels on a side): give head crops"
        )
    return None


def fit_to_input(image_rgb: np.ndarray, size: tuple[int, int], *, pad: bool = False) -> np.ndarray:
    """Resize to the model's input; with `pad`, keep the aspect ratio by replicating edges to a square first."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or 0 in image_rgb.shape:
        raise ValueError(f"not an RGB image (shape {image_rgb.shape})")
    if pad:
        height, width = image_rgb.shape[:2]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        image_rgb = cv2.copyMakeBorder(
            image_rgb, top, side - height - top, left, side - width - left, cv2.BORDER_REPLICATE
        )
    if image_rgb.shape[:2] == size:
        return image_rgb
    return cv2.resize(image_rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


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
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model = model_or_path if isinstance(model_or_path, LoadedModel) else load_model(model_or_path)
    threshold = model.card.threshold.value if threshold is None else check_threshold(threshold)
    if isinstance(images, np.ndarray | ImageArray):
        items = (("array", index, images[index], None) for index in range(len(images)))
    else:
        items = iter_images(images, max_pixels=max_pixels)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, unit="image", file=sys.stderr)
    rows: list[dict] = []
    batch: list[tuple[dict, np.ndarray]] = []
    for source, index, image, error in items:
        row = {
            "source": source,
            "index": index,
            "probability": None,
            "label": None,
            "class_name": None,
            "threshold": threshold,
            "error": error,
        }
        rows.append(row)
        if image is not None:
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
    return pd.DataFrame(rows, columns=RESULT_COLUMNS).astype({"index": "Int64", "label": "Int64"})


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helmet-predict", description="Predict helmet / no helmet for new photos.")
    parser.add_argument("--model", required=True, help=".keras or .tflite file with its card, or a run folder")
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursive) or .npy arrays (BGR)")
    parser.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument("--threshold", type=float, help="decision threshold in (0, 1) (default: the model card's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pad", action="store_true", help="keep the aspect ratio by padding to a square first")
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help=f"larger images become error rows (default {MAX_PIXELS:,})"
    )
    args = parser.parse_args(argv)
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
    problems = [problem for problem in problems if problem]
    if problems:
        print(f"helmet-predict: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
    except ModelError as error:
        print(f"helmet-predict: error: {error}", file=sys.stderr)
        return 2
    table = predict(
        model,
        args.inputs,
        threshold=args.threshold,
        batch_size=args.batch_size,
        pad=args.pad,
        max_pixels=args.max_pixels,
        progress=sys.stderr.isatty(),
    )
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        Path(args.out).write_text(table.to_json(orient="records", indent=2))
    else:
        table.to_csv(args.out, index=False)
    failed = int(table["error"].notna().sum())
    threshold = args.threshold if args.threshold is not None else model.card.threshold.value
    print(
        f"helmet-predict: {len(table) - failed} predicted, {failed} failed ({model.kind} {model.path.name}, "
        f"threshold {threshold:g})",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

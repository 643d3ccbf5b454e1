"""Apply a trained model to new photos: model cards, `predict`, `helmet-predict`, TensorFlow Lite export.

A model file is only used together with its card (`<name>.card.json` beside it), which says what the input must
be (size, RGB, normalisation) and which threshold to apply; prediction never guesses those.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib.data import CLASS_NAMES, DatasetError, read_image_array
from helmetlib.preprocess import NORMALIZATIONS, normalize, to_rgb

CARD_FORMAT = "helmetlib-model-card/1"
CARD_SUFFIX = ".card.json"
RESULT_COLUMNS = ["source", "index", "probability", "label", "class_name", "threshold", "error"]


class ModelError(ValueError):
    """A model path that is missing, not a helmetlib model, or whose card does not match the model."""


def card_path(model_path: str | Path) -> Path:
    """The card beside a model file: `x.keras`, `x.tflite`, `x.quant.tflite` -> `x.card.json`."""
    model_path = Path(model_path)
    return model_path.parent / (model_path.name.split(".")[0] + CARD_SUFFIX)


def make_card(results: dict, *, versions: dict, model_file: str) -> dict:
    """A model card from a model's results (`study.model_results`) and the package versions."""
    height, width, channels = results["input_shape"]
    return {
        "format": CARD_FORMAT,
        "name": results["name"],
        "description": results["description"],
        "model_file": model_file,
        "input": {
            "height": height,
            "width": width,
            "channels": channels,
            "color_order": "RGB",
            "normalization": results["normalization"],
            "normalization_description": NORMALIZATIONS[results["normalization"]],
        },
        "output": "probability of label 1 (helmet), one sigmoid unit",
        "threshold": results["threshold"],
        "class_names": {str(label): name for label, name in enumerate(CLASS_NAMES)},
        "training_data": results["data"],
        "split": results["split"],
        "weights": results["weights"],
        "training": {key: results[key] for key in ("mode", "precision", "epochs_run", "parameters")},
        "metrics": {
            part: {key: results[part][key] for key in ("accuracy", "recall", "precision", "f1", "per_class")}
            for part in ("train", "validation")
        },
        "selected": False,
        "versions": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_card(model_path: str | Path) -> dict:
    """The validated card of a model file; `ModelError` when it is missing or not a helmetlib card."""
    path = card_path(model_path)
    if not path.is_file():
        raise ModelError(f"{model_path}: not a helmetlib model (no model card {path.name} beside it)")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: unreadable model card ({error})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a helmetlib model card (format is not {CARD_FORMAT})")
    if card["input"]["normalization"] not in NORMALIZATIONS:
        raise ModelError(f"{path}: unknown normalisation {card['input']['normalization']!r}")
    return card


@dataclass
class LoadedModel:
    """A model ready for prediction: its card, and a function from normalised batches to P(helmet)."""

    path: Path
    card: dict
    kind: str
    model: object  # the keras.Model, or the TFLite interpreter
    predict_batch: Callable[[np.ndarray], np.ndarray]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.card["input"]["height"], self.card["input"]["width"]


def load_model(path: str | Path) -> LoadedModel:
    """Load a `.keras` or `.tflite` model with its card, or a run folder's selected model (Keras safe mode)."""
    path = Path(path)
    if path.is_dir():
        path = _selected_model_file(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    card = read_card(path)
    expected = (card["input"]["height"], card["input"]["width"], card["input"]["channels"])
    if path.suffix == ".keras":
        import keras

        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as error:  # Keras raises many types for a file that is not a valid model
            raise ModelError(f"{path}: not a loadable Keras model ({type(error).__name__}: {error})") from None
        shape = (tuple(model.input_shape[1:]), tuple(model.output_shape[1:]))
        if model.name != card["name"]:
            raise ModelError(
                f"{path}: model card does not match the model (card {card['name']!r}, model {model.name!r})"
            )
        predict_batch = lambda x: model.predict(x, verbose=0).ravel()  # noqa: E731
    elif path.suffix == ".tflite":
        model = _tflite_interpreter(path)
        details = model.get_input_details()[0]
        shape = (tuple(details["shape"][1:]), tuple(model.get_output_details()[0]["shape"][1:]))
        predict_batch = lambda x: _tflite_predict(model, x)  # noqa: E731
    else:
        raise ModelError(f"{path}: not a model file (expected .keras, .tflite or a run folder)")
    if shape != (expected, (1,)):
        raise ModelError(f"{path}: model card does not match the model (card input {expected}, model {shape})")
    return LoadedModel(path=path, card=card, kind=path.suffix[1:], model=model, predict_batch=predict_batch)


def _selected_model_file(run_dir: Path) -> Path:
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ModelError(f"{run_dir}: not a helmet-reports run folder (no run.json)")
    selected = json.loads(run_file.read_text()).get("selected_model")
    if not selected:
        raise ModelError(f"{run_file}: the run selected no model (status failed?)")
    return run_dir / "models" / f"{selected}.keras"


def _tflite_interpreter(path: Path):
    import warnings

    import tensorflow as tf

    try:
        with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai-edge-litert on every load
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            interpreter = tf.lite.Interpreter(model_path=str(path))
    except ValueError as error:
        raise ModelError(f"{path}: not a loadable TensorFlow Lite model ({error})") from None
    interpreter.allocate_tensors()
    return interpreter


def _tflite_predict(interpreter, x: np.ndarray) -> np.ndarray:
    """Run a TFLite model image by image (its input has batch size 1)."""
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in x:
        interpreter.set_tensor(input_index, image[None].astype(np.float32))
        interpreter.invoke()
        outputs.append(float(interpreter.get_tensor(output_index).ravel()[0]))
    return np.array(outputs)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


def iter_images(inputs: Iterable[str | Path]) -> Iterator[tuple[str, int | None, np.ndarray | None, str | None]]:
    """(source, index, RGB image or None, error or None) for image files, folders (recursively) and `.npy` arrays."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            yield from iter_images(files)
        elif path.suffix == ".npy":
            try:
                images = to_rgb(read_image_array(path, image_size=None))  # dataset convention: BGR uint8
            except DatasetError as error:
                yield str(path), None, None, str(error)
                continue
            for index, image in enumerate(images):
                yield str(path), index, image, None
        else:
            yield (str(path), None, *_read_image_file(path))


def _read_image_file(path: Path) -> tuple[np.ndarray | None, str | None]:
    if not path.is_file():
        return None, "file not found"
    if path.stat().st_size == 0:
        return None, "empty file"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, grayscale expanded to 3 channels
    if image is None:
        kind = "corrupt image" if path.suffix.lower() in IMAGE_SUFFIXES else "not an image"
        return None, f"{kind}: OpenCV cannot decode it"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def fit_to_input(image_rgb: np.ndarray, size: tuple[int, int], *, pad: bool = False) -> np.ndarray:
    """Resize to the model's input; with `pad`, keep the aspect ratio by replicating edges to a square first."""
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


def predict(
    model_or_path: LoadedModel | str | Path,
    images: np.ndarray | Iterable[str | Path],
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    pad: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per image: source, index, P(helmet), label, class name, threshold used, error (None when fine).

    `images` is an RGB uint8 array (N, H, W, 3) or paths (image files, folders, `.npy` files in the dataset's
    BGR format). Images are resized to the card's input and normalised as the card says; the card's threshold
    applies unless `threshold` is given. Unreadable inputs get a row with an error; the others are predicted.
    """
    model = model_or_path if isinstance(model_or_path, LoadedModel) else load_model(model_or_path)
    threshold = model.card["threshold"] if threshold is None else float(threshold)
    if isinstance(images, np.ndarray):
        items = (("array", index, image, None) for index, image in enumerate(images))
    else:
        items = iter_images(images)
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
            batch.append((row, fit_to_input(image, model.input_size, pad=pad)))
        if len(batch) >= batch_size:
            _predict_batch(model, batch, threshold)
            batch = []
    if batch:
        _predict_batch(model, batch, threshold)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS).astype({"index": "Int64", "label": "Int64"})


def _predict_batch(model: LoadedModel, batch: list[tuple[dict, np.ndarray]], threshold: float) -> None:
    x = normalize(np.stack([image for _, image in batch]), model.card["input"]["normalization"])
    for (row, _), probability in zip(batch, model.predict_batch(x), strict=True):
        label = int(probability >= threshold)
        row.update(probability=float(probability), label=label, class_name=CLASS_NAMES[label])


def export_tflite(keras_path: str | Path, validation_images: np.ndarray | None = None) -> dict:
    """Write `<name>.tflite` (float32) and `<name>.quant.tflite` (dynamic-range int8 weights) beside the model.

    Returns each file's size and, given validation images (RGB uint8), its agreement with the Keras model:
    the share of equal labels at the card's threshold and the largest probability difference.
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the exporter logs every asset it writes
    keras_path = Path(keras_path)
    keras_model = load_model(keras_path)
    name = keras_path.name.split(".")[0]
    variants = {
        "float32": (keras_path.with_name(f"{name}.tflite"), {}),
        "quantized": (keras_path.with_name(f"{name}.quant.tflite"), {"optimizations": [tf.lite.Optimize.DEFAULT]}),
    }
    report = {}
    reference = predict(keras_model, validation_images) if validation_images is not None else None
    for variant, (path, options) in variants.items():
        keras_model.model.export(str(path), format="litert", verbose=False, **options)
        report[variant] = {"file": path.name, "megabytes": round(path.stat().st_size / 2**20, 2)}
        if validation_images is not None:
            exported = predict(load_model(path), validation_images)
            report[variant]["label_agreement"] = float((reference["label"] == exported["label"]).mean())
            report[variant]["max_probability_difference"] = float(
                (reference["probability"] - exported["probability"]).abs().max()
            )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helmet-predict", description="Predict helmet / no helmet for new photos.")
    parser.add_argument("--model", required=True, help=".keras or .tflite file with its card, or a run folder")
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursive) or .npy arrays (BGR)")
    parser.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument("--threshold", type=float, help="decision threshold (default: the model card's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pad", action="store_true", help="keep the aspect ratio by padding to a square first")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        parser.error("--out must end in .csv or .json")
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
        progress=sys.stderr.isatty(),
    )
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        Path(args.out).write_text(table.to_json(orient="records", indent=2))
    else:
        table.to_csv(args.out, index=False)
    failed = int(table["error"].notna().sum())
    print(
        f"helmet-predict: {len(table) - failed} predicted, {failed} failed ({model.kind} {model.path.name}, "
        f"threshold {table['threshold'].iloc[0] if len(table) else model.card['threshold']})",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

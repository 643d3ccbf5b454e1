"""The TensorFlow Lite export of a saved run model: float32 and dynamic-range quantised, each checked against the
Keras model on validation images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helmetlib.deploy.predict import load_model, predict
from helmetlib.evaluation.results import ExportedFile
from helmetlib.run.folder import RunFolder


def export_tflite(keras_path: str | Path, validation_images: np.ndarray | None = None) -> dict[str, ExportedFile]:
    """Write `<name>.tflite` (float32) and `<name>.quant.tflite` (dynamic-range int8 weights) beside the model,
    record them (with their SHA-256) in its card, and return each file's size and, given validation images (RGB
    uint8), its agreement with the Keras model: the share of equal labels and the largest probability difference.
    """
    from helmetlib.core.backend import tf
    from helmetlib.core.weights import file_sha256
    from helmetlib.deploy.artifacts import add_exports

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

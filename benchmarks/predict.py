"""Benchmark prediction throughput (images/second) of a saved model and its TensorFlow Lite exports.

Runs `helmetlib.predict` on the images of a dataset folder (arrays in memory, so file decoding is not counted)
for the `.keras` model and, when present beside it, `<name>.tflite` and `<name>.quant.tflite`.

    python benchmarks/predict.py --model reports/latest/models/cnn.keras --data ../shared/data/helmet-dev
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from helmetlib import load_dataset, load_model, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a .keras model with its card")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=300, help="images to predict (default 300)")
    args = parser.parse_args()

    images = load_dataset(args.data).images[: args.limit]
    keras_path = Path(args.model)
    name = keras_path.name.split(".")[0]
    reference = None
    for path in (keras_path, keras_path.with_name(f"{name}.tflite"), keras_path.with_name(f"{name}.quant.tflite")):
        if not path.is_file():
            continue
        model = load_model(path)
        predict(model, images[:8])  # warm-up
        started = time.perf_counter()
        table = predict(model, images)
        seconds = time.perf_counter() - started
        agreement = "" if reference is None else f", labels equal to Keras: {(table['label'] == reference).mean():.3f}"
        reference = table["label"] if reference is None else reference
        print(f"{path.name:28s} {len(images) / seconds:8.1f} images/s ({len(images)} images{agreement})")


if __name__ == "__main__":
    main()

"""Benchmark: do bfloat16 backbone features change the VGG16 models' validation metrics?

Trains the heads of `vgg16_linear` and `vgg16_mlp` (study defaults: 20 epochs, batch 128, seed 812) on features
computed in float32 and in bfloat16, and prints validation accuracy / F1 for both with the difference in
percentage points, plus the feature time of each precision. Fast mode in float32 is the study's computation
(tests/test_train.py checks fast == faithful to 1e-4), so this difference is also fast-vs-faithful.

    python benchmarks/precision.py --data ../shared/data/helmet-dev \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5
"""

from __future__ import annotations

import argparse
import tempfile

from helmetlib import performance, split, train_model
from helmetlib.study import study_dataset
from helmetlib.weights import resolve_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--models", default="vgg16_linear,vgg16_mlp")
    args = parser.parse_args()

    dataset = study_dataset(args.data)
    parts = split(dataset.labels)
    weights = resolve_weights(args.weights)
    validation_labels = dataset.labels[parts.validation]
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models.split(","):
            scores = {}
            for precision in ("float32", "bfloat16"):
                trained = train_model(name, dataset, parts, weights=weights, precision=precision, cache_dir=cache)
                scores[precision] = performance(validation_labels, trained.probabilities["validation"])
                print(
                    f"{name:13s} {precision:8s} validation accuracy {scores[precision]['accuracy']:.3f} "
                    f"f1 {scores[precision]['f1']:.3f} ({trained.seconds:.0f}s incl. features when not cached)"
                )
            for metric in ("accuracy", "f1"):
                difference = 100 * (scores["bfloat16"][metric] - scores["float32"][metric])
                print(f"{name:13s} bfloat16 - float32 validation {metric}: {difference:+.1f} pp")


if __name__ == "__main__":
    main()

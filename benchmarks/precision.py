"""Benchmark: do bfloat16 backbone features change the VGG16 models' validation metrics?

Trains the heads of `vgg16_linear` and `vgg16_mlp` (study defaults: 20 epochs, batch 128) for several seeds on
features computed in float32 and in bfloat16, and prints validation accuracy / F1 for each, the bfloat16 - float32
difference in percentage points per seed and on average, the seed-to-seed spread in float32, and a control: float32
features plus Gaussian noise as large as the bfloat16 rounding error (how much a perturbation of that size moves
the metric by itself).
Fast mode in float32 is the study's computation (tests/test_train.py checks fast == faithful to 1e-4), so this
difference is also fast-vs-faithful.

    python benchmarks/precision.py --data ../shared/data/helmet-dev \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile

import numpy as np

from helmetlib import performance, split, train_model
from helmetlib.core.weights import resolve_weights
from helmetlib.data.dataset import load_run_data
from helmetlib.models import features as features_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--models", default="vgg16_linear,vgg16_mlp")
    parser.add_argument("--seeds", default="812,813,814")
    parser.add_argument("--cache-dir", help="feature cache to reuse between runs (default: a temporary folder)")
    parser.add_argument(
        "--no-control", action="store_true", help="skip the noise control (one uncached float32 pass per training)"
    )
    args = parser.parse_args()

    dataset = load_run_data(args.data)
    parts = split(dataset.labels)
    weights = resolve_weights(args.weights)
    validation_labels = dataset.labels[parts.validation]
    with tempfile.TemporaryDirectory() as temporary:
        cache = args.cache_dir or temporary
        for name in args.models.split(","):
            accuracy = {"float32": [], "bfloat16": [], **({} if args.no_control else {"float32+noise": []})}
            for seed in [int(seed) for seed in args.seeds.split(",")]:
                for precision in accuracy:
                    if precision == "float32+noise":
                        with features_perturbed_like_bfloat16(seed):
                            trained = train_model(
                                name, dataset, parts, weights=weights, seed=seed, precision="float32", cache_dir=None
                            )
                    else:
                        trained = train_model(
                            name, dataset, parts, weights=weights, seed=seed, precision=precision, cache_dir=cache
                        )
                    score = performance(validation_labels, trained.probabilities["validation"])
                    accuracy[precision].append(score.accuracy)
                    print(
                        f"{name:13s} seed {seed} {precision:8s} validation accuracy {score.accuracy:.3f} "
                        f"f1 {score.f1:.3f} ({trained.seconds:.0f}s, features included when not cached)"
                    )
            spread = 100 * (max(accuracy["float32"]) - min(accuracy["float32"]))
            for variant in [variant for variant in accuracy if variant != "float32"]:
                differences = 100 * (np.array(accuracy[variant]) - np.array(accuracy["float32"]))
                print(
                    f"{name:13s} {variant} - float32 validation accuracy: "
                    f"{', '.join(f'{d:+.1f}' for d in differences)} pp (mean {differences.mean():+.1f} pp)"
                )
            print(f"{name:13s} float32 seed-to-seed range {spread:.1f} pp")


@contextlib.contextmanager
def features_perturbed_like_bfloat16(seed: int):
    """Make `compute_features` (as the uncached feature pass uses it) add noise of bfloat16's relative rounding
    error (2^-9)."""
    original = features_module.compute_features
    rng = np.random.default_rng(seed)

    def perturbed(*args, **kwargs):
        outputs = original(*args, **kwargs)
        return [array * (1 + rng.normal(0, 2**-9 / np.sqrt(3), array.shape)).astype(np.float32) for array in outputs]

    features_module.compute_features = perturbed
    try:
        yield
    finally:
        features_module.compute_features = original


if __name__ == "__main__":
    main()

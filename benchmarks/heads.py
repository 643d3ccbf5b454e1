"""Heads trained over cached backbone features at scale: seconds and peak RSS of each model's repeats at the run's
defaults (3 repeats of 20 epochs, batch 128, the study's split), each model in a process of its own.

The features come from `--cache-dir`: the cache a study run wrote for that data (`scale.py --study-sizes` keeps
its runs' caches in `helmet-scale-run-*/.cache`). A model whose features are not there computes its backbone pass
first, inside its figures.

    python benchmarks/heads.py --data /tmp/helmet-scale/synthetic-6000 --cache-dir /tmp/helmet-scale-run-X/.cache \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5 --models vgg16_linear,vgg16_mlp
"""

from __future__ import annotations

import argparse
import sys

from scale import measure

from helmetlib.core.specs import MODEL_NAMES, REPEATS

TRAIN = (
    "from helmetlib import load_dataset, performance, split, train_repeats; "
    "dataset = load_dataset(DATA); "
    "repeats = train_repeats(NAME, dataset, split(dataset.labels), repeats=REPEATS, weights=WEIGHTS, "
    "cache_dir=CACHE); "
    "print('validation accuracy', ' '.join(f'{performance(dataset.labels[t.split.validation], "
    't.probabilities["validation"]).accuracy:.3f}\' for t in repeats))'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--models", default=",".join(name for name in MODEL_NAMES if name != "cnn"))
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()

    print("| model | seconds | peak RSS (GiB) | |\n|---|---|---|---|")
    for name in args.models.split(","):
        values = f"DATA, NAME, REPEATS, WEIGHTS, CACHE = {args.data!r}, {name!r}, {args.repeats}, "
        values += f"{args.weights!r}, {args.cache_dir!r}; "
        seconds, peak, note = measure([sys.executable, "-c", values + TRAIN])
        print(f"| {name} | {seconds:.1f} | {peak:.2f} | {note} |", flush=True)


if __name__ == "__main__":
    main()

"""Seeds study: how much of each model's score is its seed, whether collapse recovery works, and how many repeats
make the selection stable.

1. Every model on seeds 0 .. 9 + N_MAX - 1 (recovery on): validation F1 per seed, mean and spread.
2. The CNN on seeds 0-9 without and with collapse recovery (`--restarts`, default 0 and MAX_RESTARTS; the latter
   reuses part 1's trainings): validation / test accuracy, collapsed or not, restarts.
3. Selection stability: for N in 1, 3, 5 and base seeds 0-9, the model with the best mean validation F1 over seeds
   base .. base + N - 1; how many different models get selected, and how often the choice differs from the one
   made on all seeds.
4. For the most selected model at N = 3: its best repeat against its seed ensemble, on validation and test.

    python benchmarks/seeds.py --data ../shared/data/helmet-dev --weights ../shared/weights/vgg16-hed-notop.weights.h5
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np

from helmetlib import MODEL_NAMES, load_dataset, performance, split, train_repeats
from helmetlib.selection import TIE
from helmetlib.specs import MAX_RESTARTS
from helmetlib.train import deploy

N_VALUES = (1, 3, 5)
BASES = range(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--cache-dir", default="reports/.cache", help="feature cache (reused between runs)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--restarts", default=f"0,{MAX_RESTARTS}", help="max_restarts values for the CNN seed table")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    parts = split(dataset.labels)
    labels = {part: dataset.labels[getattr(parts, part)] for part in ("validation", "test")}
    options = {"weights": args.weights, "cache_dir": args.cache_dir}
    report: dict = {"cnn_recovery": {}, "f1": {}, "stability": {}}

    seeds = list(range(max(BASES) + max(N_VALUES)))
    print(f"1. Every model on seeds {seeds[0]}-{seeds[-1]} (recovery on), validation F1")
    repeats_by_model = {}
    for name in args.models.split(","):
        started = time.perf_counter()
        repeats = train_repeats(name, dataset, parts, repeats=len(seeds), seed=seeds[0], **options)
        repeats_by_model[name] = repeats
        f1 = [performance(labels["validation"], t.probabilities["validation"]).f1 for t in repeats]
        accuracy = [performance(labels["validation"], t.probabilities["validation"]).accuracy for t in repeats]
        report["f1"][name] = f1
        print(
            f"  {name:17s} F1 {np.mean(f1):.3f} ± {np.std(f1, ddof=1):.3f} (range {min(f1):.3f}-{max(f1):.3f}); "
            f"accuracy {np.mean(accuracy):.3f} ± {np.std(accuracy, ddof=1):.3f}; collapsed "
            f"{sum(t.collapsed for t in repeats)}; restarts {sum(len(t.restarts) for t in repeats)} "
            f"({time.perf_counter() - started:.0f}s)",
            flush=True,
        )

    print("2. The CNN on seeds 0-9, validation / test accuracy")
    for restarts in [int(value) for value in args.restarts.split(",")]:
        if restarts == MAX_RESTARTS and "cnn" in repeats_by_model:
            trainings = repeats_by_model["cnn"][: len(BASES)]  # part 1 trained these seeds with this setting
        else:
            trainings = [
                train_repeats("cnn", dataset, parts, repeats=1, seed=seed, max_restarts=restarts, **options)[0]
                for seed in BASES
            ]
        rows = []
        for seed, trained in zip(BASES, trainings, strict=True):
            test = _test_accuracy(trained.model, "cnn", dataset, parts)
            validation = performance(labels["validation"], trained.probabilities["validation"]).accuracy
            restarted = [(restart.seed, restart.epoch) for restart in trained.restarts]
            rows.append(
                {
                    "seed": seed,
                    "validation": validation,
                    "test": test,
                    "collapsed": trained.collapsed,
                    "restarts": restarted,
                }
            )
            flags = (" COLLAPSED" if trained.collapsed else "") + (
                f" restarts (seed, epoch) {restarted}" if restarted else ""
            )
            print(f"  max_restarts {restarts} seed {seed}: {validation:.3f} / {test:.3f}{flags}", flush=True)
        report["cnn_recovery"][restarts] = rows
        collapsed = sum(row["collapsed"] for row in rows)
        print(
            f"  max_restarts {restarts}: {collapsed} of 10 seeds collapsed; mean validation accuracy "
            f"{np.mean([row['validation'] for row in rows]):.3f}"
        )

    print("3. Selection stability over base seeds 0-9")
    everything = _select({name: f1 for name, f1 in report["f1"].items()})
    for n in N_VALUES:
        choices = [_select({name: f1[base : base + n] for name, f1 in report["f1"].items()}) for base in BASES]
        counts = collections.Counter(choices)
        differs = sum(choice != everything for choice in choices)
        report["stability"][n] = {"choices": choices, "differs_from_all_seeds": differs}
        print(
            f"  N = {n}: selected {dict(counts)}; differs from the choice on all {len(seeds)} seeds "
            f"({everything}) in {differs} of {len(BASES)}"
        )

    print("4. Best repeat against the seed ensemble (N = 3, base seeds 0-9), for", everything)
    rows = []
    for base in BASES:
        repeats = repeats_by_model[everything][base : base + 3]
        deployed = deploy(repeats, dataset)
        best = deployed.best_repeat
        ensemble = np.mean([t.probabilities["validation"] for t in repeats if not t.collapsed], axis=0)
        rows.append(
            {
                "base": base,
                "best_validation_f1": performance(labels["validation"], best.probabilities["validation"]).f1,
                "ensemble_validation_f1": performance(labels["validation"], ensemble).f1,
                "deployed": deployed.description,
                "best_test_accuracy": _test_accuracy(best.model, everything, dataset, parts),
                "ensemble_test_accuracy": _test_accuracy(_ensemble(repeats, everything), everything, dataset, parts),
            }
        )
        print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()))
    report["ensemble"] = rows
    for key in ("best_validation_f1", "ensemble_validation_f1", "best_test_accuracy", "ensemble_test_accuracy"):
        print(f"  mean {key}: {np.mean([row[key] for row in rows]):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


def _select(f1_by_model: dict[str, list[float]]) -> str:
    """The selection rule on mean validation F1 (ties within TIE: the name that comes first, as a tie-break)."""
    means = {name: float(np.mean(f1)) for name, f1 in f1_by_model.items()}
    best = max(means.values())
    return next(name for name, mean in means.items() if mean >= best - TIE)


def _test_accuracy(model, name: str, dataset, parts) -> float:
    """Test accuracy of a trained model (a study of the training procedure, not a selection)."""
    from helmetlib import predict_proba
    from helmetlib.specs import get_spec

    probabilities = predict_proba(model, dataset.images[parts.test], normalization=get_spec(name).normalization)
    return performance(dataset.labels[parts.test], probabilities).accuracy


def _ensemble(repeats, name):
    from helmetlib.models import BACKBONE_LAYER, HEAD_LAYER, assemble, average_of

    usable = [t for t in repeats if not t.collapsed] or repeats
    if usable[0].head is None:
        return average_of([t.model for t in usable], name=name)
    return assemble(
        name, usable[0].model.get_layer(BACKBONE_LAYER), average_of([t.head for t in usable], name=HEAD_LAYER)
    )


if __name__ == "__main__":
    main()

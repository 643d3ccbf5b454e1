"""Seeds study: how much of each model's score is its seed, whether collapse recovery works, and how many repeats
make the selection stable.

Every (model, seed, max_restarts) training is appended to `--results` (JSON lines) as soon as it ends, so the study
resumes where it stopped and can be extended seed by seed (the CNN costs minutes per seed on a CPU). It prints:

1. Per model over the seeds measured: validation F1 mean, sd and range, collapsed seeds, restarts.
2. The CNN per seed with and without recovery (each `--restarts` value): validation / test accuracy, collapsed,
   restarts (seed, epoch).
3. Selection stability: for N in 1, 3, 5 and every window of N consecutive measured seeds, the model with the best
   mean validation F1; how many different models get selected and how often the choice differs from the one made on
   all seeds.

Augmented views are drawn once from the study's seed and shared by every seed, as within a run.

    python benchmarks/seeds.py --data ../shared/data/helmet-dev \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5 --seeds 0-9 --results seeds.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from helmetlib import MODEL_NAMES, load_dataset, performance, split, train_repeats
from helmetlib.core.specs import MAX_RESTARTS, SEED, get_spec
from helmetlib.core.weights import resolve_weights
from helmetlib.evaluation.selection import TIE

N_VALUES = (1, 3, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--cache-dir", default="reports/.cache", help="feature cache (reused between runs)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--seeds", default="0-9", help="ranges and lists, trained in this order: 0-9 or 7,8,0-6")
    parser.add_argument("--restarts", default=f"{MAX_RESTARTS}", help="max_restarts values for the CNN, e.g. 0,10")
    parser.add_argument("--results", default="seeds.jsonl", help="one JSON line per training; the study resumes")
    args = parser.parse_args()

    seeds = [
        seed for part in args.seeds.split(",") for seed in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)
    ]
    dataset = load_dataset(args.data)
    weights = resolve_weights(args.weights)
    study = f"data {dataset.content_hash}, weights {weights.sha256 or weights.used}"
    results = Path(args.results)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    foreign = [row for row in rows if row.get("study") != study]
    if foreign:
        raise SystemExit(f"{results}: {len(foreign)} row(s) come from another study (not {study}); use another file")
    done = {(row["model"], row["seed"], row["max_restarts"]) for row in rows}
    parts = split(dataset.labels)
    labels = {part: dataset.labels[getattr(parts, part)] for part in ("validation", "test")}
    for name in args.models.split(","):
        for restarts in [int(value) for value in args.restarts.split(",")] if name == "cnn" else [MAX_RESTARTS]:
            for seed in seeds:
                if (name, seed, restarts) in done:
                    continue
                [trained] = train_repeats(
                    name,
                    dataset,
                    parts,
                    seed=seed,
                    max_restarts=restarts,
                    views_seed=SEED,
                    weights=weights,
                    cache_dir=args.cache_dir,
                )
                validation = performance(labels["validation"], trained.probabilities["validation"])
                row = {
                    "study": study,
                    "model": name,
                    "seed": seed,
                    "max_restarts": restarts,
                    "validation_f1": validation.f1,
                    "validation_accuracy": validation.accuracy,
                    "test_accuracy": _test_accuracy(trained.model, name, dataset, parts) if name == "cnn" else None,
                    "collapsed": trained.collapsed,
                    "restarts": [(restart.seed, restart.epoch) for restart in trained.restarts],
                    "seconds": trained.seconds,
                }
                rows.append(row)
                with results.open("a") as file:
                    file.write(json.dumps(row) + "\n")
                print(f"  {name} seed {seed} max_restarts {restarts}: {_describe(row)}", flush=True)
    report(rows, sorted(seeds))


def report(rows: list[dict], seeds: list[int]) -> None:
    """Print the three tables from the measured rows (recovery on for the selection)."""
    recovered = [row for row in rows if row["max_restarts"] == MAX_RESTARTS]
    f1: dict[str, dict[int, float]] = collections.defaultdict(dict)
    for row in recovered:
        f1[row["model"]][row["seed"]] = row["validation_f1"]
    print(f"1. Validation F1 over seeds (recovery on, max_restarts {MAX_RESTARTS})")
    for name, by_seed in f1.items():
        values = [by_seed[seed] for seed in seeds if seed in by_seed]
        measured = [row for row in recovered if row["model"] == name and row["seed"] in seeds]
        print(
            f"  {name:17s} {np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f} "
            f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} seeds); collapsed "
            f"{sum(r['collapsed'] for r in measured)}; restarts {sum(len(r['restarts']) for r in measured)}"
        )
    print("2. The CNN per seed, validation / test accuracy")
    for restarts in sorted({row["max_restarts"] for row in rows if row["model"] == "cnn"}):
        cnn = sorted(
            (r for r in rows if r["model"] == "cnn" and r["max_restarts"] == restarts and r["seed"] in seeds),
            key=lambda r: r["seed"],
        )
        for row in cnn:
            print(f"  max_restarts {restarts:2d} seed {row['seed']}: {_describe(row)}")
        print(f"  max_restarts {restarts}: {sum(r['collapsed'] for r in cnn)} of {len(cnn)} seeds collapsed")
    common = [seed for seed in seeds if all(seed in by_seed for by_seed in f1.values())]
    if not common:
        print("3. Selection stability: no seed has every model measured yet")
        return
    everything = _select({name: [by_seed[s] for s in common] for name, by_seed in f1.items()})
    print(f"3. Selection stability over windows of N measured seeds in a row among {common}")
    for n in N_VALUES:
        windows = [common[i : i + n] for i in range(len(common) - n + 1)]
        choices = [_select({name: [by_seed[s] for s in window] for name, by_seed in f1.items()}) for window in windows]
        differs = sum(choice != everything for choice in choices)
        print(
            f"  N = {n}: {len(windows)} windows selected {dict(collections.Counter(choices))}; differs from the "
            f"choice on all {len(common)} seeds ({everything}) in {differs}"
        )


def _describe(row: dict) -> str:
    test = f" / {row['test_accuracy']:.3f}" if row["test_accuracy"] is not None else ""
    flags = (" COLLAPSED" if row["collapsed"] else "") + (
        f" restarts (seed, epoch) {row['restarts']}" if row["restarts"] else ""
    )
    return (
        f"F1 {row['validation_f1']:.3f}, accuracy {row['validation_accuracy']:.3f}{test}{flags} ({row['seconds']:.0f}s)"
    )


def _select(f1_by_model: dict[str, list[float]]) -> str:
    """The selection rule on mean validation F1 (ties within TIE: the name that comes first, as a tie-break)."""
    means = {name: float(np.mean(f1)) for name, f1 in f1_by_model.items()}
    best = max(means.values())
    return next(name for name, mean in means.items() if mean >= best - TIE)


def _test_accuracy(model, name: str, dataset, parts) -> float:
    """Test accuracy of a trained model (a study of the training procedure, not a selection)."""
    from helmetlib import predict_proba

    probabilities = predict_proba(model, dataset.images[parts.test], normalization=get_spec(name).normalization)
    return performance(dataset.labels[parts.test], probabilities).accuracy


if __name__ == "__main__":
    main()

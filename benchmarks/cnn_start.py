"""The CNN's start over seeds: the study's (Keras' defaults, `faithful=True`) against helmetlib's healthy start.

For each start and seed it trains the study's CNN (20 epochs, batch 128, Adam 1e-3, restarts after a collapse as
in a run) on the study's split and appends one JSON line to `--results` (the study resumes where it stopped):
whether the first attempt collapsed, the restarts, whether the final model is half-dead (`Health.problem`), its
dead bottleneck units and identical-output share on training images, validation and test accuracy and ROC AUC.
It then prints the seed table (docs/seeds.md).

    python benchmarks/cnn_start.py --data ../shared/data/helmet-dev --seeds 0-9 --results cnn_start.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.metrics import roc_auc_score

from helmetlib import load_dataset, performance, predict_proba, split, train_model

STARTS = {"study": True, "healthy": False}  # start name: faithful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", default="0-9", help="a range, e.g. 0-9")
    parser.add_argument("--starts", default="healthy,study")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--results", default="cnn_start.jsonl", help="one JSON line per training; the study resumes")
    args = parser.parse_args()
    first, last = (int(value) for value in args.seeds.split("-"))
    dataset = load_dataset(args.data)
    parts = split(dataset.labels)
    results = Path(args.results)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    done = {(row["start"], row["seed"]) for row in rows if row["data"] == dataset.content_hash}
    for start in args.starts.split(","):
        for seed in range(first, last + 1):
            if (start, seed) in done:
                continue
            trained = train_model(
                "cnn", dataset, parts, seed=seed, epochs=args.epochs, faithful=STARTS[start], weights=None
            )
            row = {"data": dataset.content_hash, "start": start, "seed": seed, **_figures(trained, dataset, parts)}
            rows.append(row)
            with results.open("a") as file:
                file.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    report([row for row in rows if row["data"] == dataset.content_hash])


def _figures(trained, dataset, parts) -> dict:
    test_probabilities = predict_proba(trained.model, dataset.images[parts.test])
    figures = {}
    for part, probabilities in (("validation", trained.probabilities["validation"]), ("test", test_probabilities)):
        labels = dataset.labels[getattr(parts, part)]
        figures[f"{part}_accuracy"] = performance(labels, probabilities).accuracy
        figures[f"{part}_auc"] = float(roc_auc_score(labels, probabilities))
    health = trained.health
    return {
        "first_attempt_collapsed": bool(trained.restarts),
        "restarts": len(trained.restarts),
        "collapsed": trained.collapsed,
        "half_dead": health.problem is not None,
        "dead_units": health.layers[0].dead,
        "dead_units_by_class": health.layers[0].dead_by_class,
        "identical_share": health.identical_share,
        **figures,
        "seconds": round(trained.seconds, 1),
    }


def report(rows: list[dict]) -> None:
    """The seed table, one line per start and seed, then each start's totals."""
    header = (
        "start    seed  1st collapsed  restarts  half-dead  dead units  identical  val acc  val AUC  test acc  test AUC"
    )
    print(header)
    for row in sorted(rows, key=lambda r: (r["start"], r["seed"])):
        print(
            f"{row['start']:8s} {row['seed']:4d}  {'yes' if row['first_attempt_collapsed'] else 'no':13s}  "
            f"{row['restarts']:8d}  {'yes' if row['half_dead'] else 'no':9s}  {row['dead_units']:10d}  "
            f"{row['identical_share']:9.1%}  {row['validation_accuracy']:7.3f}  {row['validation_auc']:7.3f}  "
            f"{row['test_accuracy']:8.3f}  {row['test_auc']:8.3f}"
        )
    for start in sorted({row["start"] for row in rows}):
        measured = [row for row in rows if row["start"] == start]
        n = len(measured)
        mean = {key: sum(row[key] for row in measured) / n for key in ("validation_auc", "test_auc", "test_accuracy")}
        print(
            f"{start}: {n} seeds; first attempt collapsed {sum(r['first_attempt_collapsed'] for r in measured)}, "
            f"restarts {sum(r['restarts'] for r in measured)}, half-dead {sum(r['half_dead'] for r in measured)}; "
            f"mean validation AUC {mean['validation_auc']:.3f}, test AUC {mean['test_auc']:.3f}, test accuracy "
            f"{mean['test_accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()

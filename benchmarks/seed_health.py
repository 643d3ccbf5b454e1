"""The CNN at every seed: the health of each repeat, what a run deploys, and how that does on photos from elsewhere.

For each seed it trains the CNN as `helmet-reports --models cnn --seed SEED` does on real data (the runner's
defaults: 3 repeats, 20 epochs, batch 128, restarts, the seed ensemble of the healthy repeats, Platt calibration
and the threshold rule; `Study` says how), then scores every repeat and the deployed model on the study's
validation part and on `--outside` (e.g. the crops `helmet-import` cuts from the VOC sample's photos).
One JSON line per seed goes to `--results` (the study resumes where it stopped); the probabilities behind each
line go to `<results>.npz/seed-<seed>.npz`, so that other health and threshold rules can be tried on them later.
It prints the seeds table of docs/seeds.md.

    python benchmarks/seed_health.py --data ../shared/data/helmet-dev --outside data/voc-crops --seeds 0-9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from helmetlib.data.dataset import load_dataset, load_run_data
from helmetlib.data.splits import split
from helmetlib.evaluation.calibration import fit_calibration
from helmetlib.evaluation.metrics import performance
from helmetlib.evaluation.uncertainty import choose_threshold
from helmetlib.run.config import RunConfig
from helmetlib.training.repeats import predict_proba, train_repeats
from helmetlib.training.seed_ensemble import choose_seed_ensemble


def parse_seeds(text: str) -> list[int]:
    """`0-9` or `7,8,0-6`: the seeds in that order."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, ROC AUC and bare-head recall at `threshold`."""
    measured = performance(labels, probabilities, threshold=threshold)
    auc = roc_auc_score(labels, probabilities) if len(np.unique(labels)) == 2 else float("nan")
    return {"accuracy": measured.accuracy, "auc": float(auc), "bare_head_recall": measured.bare_head_recall}


def health_figures(health) -> dict:
    """The figures of a `Health` record that a health rule can read."""
    if health is None:
        return {}
    return {
        "identical_share": health.identical_share,
        "identical_share_by_class": health.identical_share_by_class,
        "dead_units": sum(layer.dead for layer in health.layers),
        "problem": health.problem,
    }


class Study:
    """The CNN trained as a run trains it, each repeat seed once (repeat i of seed s is seed s + i: seeds 0-9 with
    3 repeats are 12 trainings, not 30), then deployed, calibrated and given its threshold per seed as
    `pipeline.train_and_save` and `pipeline.compare_and_select` do for a run of the CNN alone."""

    def __init__(self, args, outside):
        self.args, self.outside = args, outside
        self.dataset = load_dataset(args.data)
        self.parts = split(self.dataset.labels)
        self.config = RunConfig.from_parameters(
            run_id="seeds", origin="notebook", MODELS="cnn", WEIGHTS="none", FAITHFUL=args.faithful
        )
        self.trained: dict[int, object] = {}

    def repeat(self, seed: int):
        if seed not in self.trained:
            config = self.config
            [self.trained[seed]] = train_repeats(
                "cnn",
                self.dataset,
                self.parts,
                seed=seed,
                weights=None,
                epochs=config.epochs,
                batch_size=128,
                faithful=config.faithful,
                max_restarts=config.max_restarts,
                threshold=config.threshold,
            )
        return self.trained[seed]

    def measure(self, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
        """The seed's row and its probabilities."""
        config, outside = self.config, self.outside
        repeats = [self.repeat(seed + index) for index in range(3)]
        deployed = choose_seed_ensemble(
            repeats, self.dataset, threshold=config.threshold, n_resamples=config.bootstrap_resamples
        )
        validation_labels = self.dataset.labels[self.parts.validation]
        arrays = {"validation_labels": validation_labels, "outside_labels": outside.labels}
        rows = []
        for number, trained in enumerate(repeats):
            outside_raw = predict_proba(trained.model, outside.images)
            arrays[f"repeat{number}_validation"] = trained.probabilities["validation"]
            arrays[f"repeat{number}_outside"] = outside_raw
            rows.append(
                {
                    "seed": trained.seed,
                    "seed_used": trained.seed_used,
                    "restarts": [f"{restart.reason} (epoch {restart.epoch})" for restart in trained.restarts],
                    "collapsed": trained.collapsed,
                    **health_figures(trained.health),
                    "validation": scores(validation_labels, trained.probabilities["validation"], 0.5),
                    "outside": scores(outside.labels, outside_raw, 0.5),
                }
            )
        validation_raw = deployed.probabilities["validation"]
        calibration = fit_calibration(validation_labels, validation_raw)
        calibrated = calibration.apply if calibration else np.asarray
        validation_calibrated = calibrated(validation_raw)
        threshold = config.threshold_for(validation_labels, validation_calibrated, calibration)
        deployed_outside = predict_proba(deployed.model, outside.images)
        outside_calibrated = calibrated(deployed_outside)
        arrays.update(deployed_validation=validation_raw, deployed_outside=deployed_outside)
        rules = {
            "card": threshold.value,
            "fixed_raw_0.5": float(calibrated(np.array([0.5]))[0]),
            "calibrated_0.5": 0.5,
            "max_f1": choose_threshold(validation_labels, validation_calibrated),
        }
        row = {
            "seed": seed,
            "faithful": self.args.faithful,
            "data": self.dataset.content_hash,
            "outside": outside.content_hash,
            "repeats": rows,
            "deployed": {
                "description": deployed.description,
                "reason": deployed.reason,
                "seeds": list(deployed.seeds),
                "left_out": {str(key): value for key, value in deployed.left_out.items()},
                "unhealthy": deployed.unhealthy,
                **health_figures(deployed.health),
                "threshold_rule": threshold.rule,
                "calibration": None if calibration is None else [calibration.slope, calibration.intercept],
                "validation": scores(validation_labels, validation_calibrated, threshold.value),
                "outside": {
                    rule: {"threshold": value, **scores(outside.labels, outside_calibrated, value)}
                    for rule, value in rules.items()
                },
            },
        }
        return row, arrays


def print_table(rows: list[dict]) -> None:
    print(
        "| seed | deployed | members: identical share (dead units) | val acc | val AUC | "
        "outside acc | outside AUC | outside bare-head recall | threshold |"
    )
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    outside_accuracy = []
    for row in rows:
        deployed = row["deployed"]
        members = [repeat for repeat in row["repeats"] if repeat["seed"] in deployed["seeds"]]
        health = ", ".join(f"{m['identical_share']:.0%} ({m['dead_units']})" for m in members)
        card = deployed["outside"]["card"]
        outside_accuracy.append(card["accuracy"])
        print(
            f"| {row['seed']} | {deployed['description']} | {health} | {deployed['validation']['accuracy']:.3f} | "
            f"{deployed['validation']['auc']:.3f} | {card['accuracy']:.3f} | {card['auc']:.3f} | "
            f"{card['bare_head_recall']:.3f} | {card['threshold']:.3f} |"
        )
    if outside_accuracy:
        spread = max(outside_accuracy) - min(outside_accuracy)
        print(f"\noutside accuracy over {len(rows)} seeds: {np.mean(outside_accuracy):.3f}, max - min {spread:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the training data folder (helmet-dev)")
    parser.add_argument("--outside", required=True, help="a data folder of crops from elsewhere")
    parser.add_argument("--seeds", default="0-9", help="ranges and lists, trained in this order: 0-9 or 7,8,0-6")
    parser.add_argument("--faithful", action="store_true", help="the study's computation (--faithful)")
    parser.add_argument("--results", default="seed_health.jsonl", help="one JSON line per seed; the study resumes")
    args = parser.parse_args()
    outside = load_run_data(str(Path(args.outside).resolve()), demo_size=0, image_size=0)
    results = Path(args.results)
    arrays_dir = results.with_suffix(".npz")
    arrays_dir.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    data_hash = load_dataset(args.data).content_hash
    done = {row["seed"] for row in rows if row["data"] == data_hash and row["faithful"] == args.faithful}
    study = Study(args, outside)
    for seed in parse_seeds(args.seeds):
        if seed in done:
            continue
        row, arrays = study.measure(seed)
        np.savez(arrays_dir / f"seed-{seed}{'-faithful' if args.faithful else ''}.npz", **arrays)
        rows.append(row)
        with results.open("a") as file:
            file.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print_table([row for row in rows if row["faithful"] == args.faithful])


if __name__ == "__main__":
    main()

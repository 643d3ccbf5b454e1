"""`helmet-evaluate`: score a finished run's models on another dataset (photos from elsewhere)."""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from pathlib import Path

import numpy as np

from helmetlib.data import DatasetError, load_dataset
from helmetlib.inference import ModelError, load_model, predict
from helmetlib.metrics import HEADLINE_METRICS, confusion, performance
from helmetlib.study import MODELS_FOLDER
from helmetlib.uncertainty import brier_score, curves


def evaluate_run(run_dir: str | Path, data_dir: str | Path) -> dict:
    """Metrics of every model of `run_dir` on the dataset in `data_dir`, at each model card's threshold."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ModelError(f"{run_dir}: not a helmet-reports run folder (no run.json)")
    record = json.loads(run_file.read_text())
    dataset = load_dataset(data_dir)
    models, probabilities = {}, {}
    for name in record["models"]:
        model = load_model(run_dir / MODELS_FOLDER / f"{name}.keras")
        table = predict(model, dataset.images)
        probabilities[name] = table["probability"].to_numpy(dtype=float)
        threshold = model.card["threshold"]
        result = performance(dataset.labels, probabilities[name], threshold=threshold)
        shape = curves(dataset.labels, probabilities[name])
        models[name] = result | {
            "roc_auc": shape.roc_auc,
            "average_precision": shape.average_precision,
            "brier": brier_score(dataset.labels, probabilities[name]),
            "confusion": confusion(dataset.labels, probabilities[name], threshold=threshold).tolist(),
        }
    return {
        "run": str(run_dir.resolve()),
        "data": {"path": str(Path(data_dir).resolve()), "content_hash": dataset.content_hash, "images": len(dataset)},
        "models": models,
        "selected_model": record.get("selected_model"),
        "_labels": dataset.labels,
        "_probabilities": probabilities,
    }


def _figure_tag(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='figure' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def report_html(evaluation: dict) -> str:
    """A standalone page: metrics table, ROC / PR curves and a confusion matrix per model."""
    import matplotlib

    matplotlib.use("Agg")
    from helmetlib import plots

    labels, probabilities = evaluation["_labels"], evaluation["_probabilities"]
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(name)}{' ★' if name == evaluation['selected_model'] else ''}</th>"
        + "".join(f"<td>{result[key]:.3f}</td>" for key in (*HEADLINE_METRICS, "roc_auc", "brier"))
        + f"<td>{result['per_class']['no helmet']['recall']:.3f}</td></tr>"
        for name, result in evaluation["models"].items()
    )
    header = "".join(f"<th>{key}</th>" for key in (*HEADLINE_METRICS, "ROC AUC", "Brier", "bare-head recall"))
    curves_tag = _figure_tag(plots.roc_pr_curves({name: curves(labels, p) for name, p in probabilities.items()}))
    matrices = "".join(
        _figure_tag(plots.confusion_heatmap(np.array(result["confusion"]), title=name))
        for name, result in evaluation["models"].items()
    )
    data = evaluation["data"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>helmet-evaluate</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:.3em .6em}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Generalisation check</h1><p>Run {esc(evaluation['run'])} on {esc(data['path'])} "
        f"({data['images']} images, hash {data['content_hash']}); thresholds from the model cards; ★ selected.</p>"
        f"<h2>Metrics</h2><table><tr><th>model</th>{header}</tr>{rows}</table>"
        f"<h2>ROC and precision-recall</h2>{curves_tag}<h2>Confusion matrices</h2>{matrices}</body></html>"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helmet-evaluate", description="Score a run's models on another dataset.")
    parser.add_argument("run_dir", help="a helmet-reports run folder")
    parser.add_argument("--data", required=True, help="folder with images_proj.npy + Labels_proj.csv")
    parser.add_argument("--out", help="folder for the HTML report (default: RUN_DIR/evaluations/<data hash>)")
    parser.add_argument("--json", help="write the metrics as JSON to this file")
    args = parser.parse_args(argv)
    try:
        evaluation = evaluate_run(args.run_dir, args.data)
    except (DatasetError, ModelError) as error:
        print(f"helmet-evaluate: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run_dir) / "evaluations" / evaluation["data"]["content_hash"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(report_html(evaluation), encoding="utf-8")
    public = {key: value for key, value in evaluation.items() if not key.startswith("_")}
    text = json.dumps(public, indent=2)
    (out / "evaluation.json").write_text(text)
    if args.json:
        Path(args.json).write_text(text)
    for name, result in evaluation["models"].items():
        print(f"{name:15s} " + " ".join(f"{key} {result[key]:.3f}" for key in HEADLINE_METRICS))
    print(f"helmet-evaluate: report {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

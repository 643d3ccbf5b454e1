"""`helmet-reports`: run the study notebooks with papermill and write one browsable, nightly-safe run folder.

Steps: validate the data (fail fast), execute 00_eda, the model template once per model and 20_comparison
in a temporary folder, convert each executed notebook to HTML (a reader version without code and a full one),
write `run.json` and `index.html`, then rename the folder into place (`<run-id>`, or `<run-id>.failed`).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from helmetlib.data import DatasetError, load_dataset, make_demo_dataset, write_dataset
from helmetlib.metrics import HEADLINE_METRICS
from helmetlib.specs import AUGMENTED_VIEWS, BATCH_SIZE, EPOCHS, MODEL_NAMES, SEED, get_spec
from helmetlib.study import MODELS_FOLDER, SELECTION_FILE, SELECTION_RULE, package_versions, study_split
from helmetlib.weights import resolve_weights

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL_NAME = "helmetlib"
RUN_FILE = "run.json"
LATEST_FILE = "latest.json"
EDA, MODEL, COMPARISON = "00_eda", "10_model", "20_comparison"
DEMO_BATCH_SIZE = 16


class NotebookFailed(RuntimeError):
    """A notebook raised; the message is a one-line reason."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="helmet-reports", description="Run the helmet study notebooks and write an HTML report set."
    )
    parser.add_argument("--data", help="folder with images_proj.npy + Labels_proj.csv (default: synthetic demo set)")
    parser.add_argument("--out", default="reports", help="output folder holding one folder per run (default: reports)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated models (default: all four)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"default {BATCH_SIZE} (the study's); {DEMO_BATCH_SIZE} on the demo set, whose ~112 training images "
        f"would make one step per epoch at {BATCH_SIZE}",
    )
    parser.add_argument("--weights", default="imagenet", help="imagenet | none | PATH to VGG16 no-top weights")
    parser.add_argument("--seed", type=int, default=SEED, help="training seed (the split keeps the study's 42)")
    parser.add_argument("--run-id", help="name of the run folder (default: UTC date-time)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--image-size", type=int, help="resize images to N x N for the models (default: keep)")
    parser.add_argument("--faithful", action="store_true", help="the study's computation: backbone every epoch")
    parser.add_argument("--augmented-views", type=int, default=AUGMENTED_VIEWS, help="fast mode of model 4")
    parser.add_argument("--demo-size", type=int, default=160, help="images in the demo set when --data is absent")
    parser.add_argument("--groups", help="CSV naming each image's group (e.g. provenance.csv), shown in the EDA")
    parser.add_argument("--group-column", default="path")
    parser.add_argument(
        "--split", choices=("random", "grouped"), default="random", help="grouped: keep --groups together"
    )
    parser.add_argument("--no-export", action="store_true", help="skip the TensorFlow Lite export of the selection")
    parser.add_argument("--cache-dir", help="backbone feature cache (default: OUT/.cache/features)")
    parser.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per notebook cell")
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (BATCH_SIZE if args.data else DEMO_BATCH_SIZE)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    for name in args.models:
        try:
            get_spec(name)
        except ValueError as error:
            parser.error(str(error))
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def ensure_kernel() -> str:
    """Install (idempotently) a kernelspec named `helmetlib` that runs this very Python, and return its name.

    Its kernels keep TensorFlow's C++ log lines (written straight to file descriptor 2) out of the notebooks:
    they go to the runner's terminal instead.
    """
    from ipykernel.kernelspec import install

    folder = Path(
        install(kernel_name=KERNEL_NAME, display_name=f"helmetlib ({platform.python_version()})", prefix=sys.prefix)
    )
    spec = json.loads((folder / "kernel.json").read_text())
    spec["argv"].append("--IPKernelApp.capture_fd_output=False")
    spec["env"] = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return KERNEL_NAME


class Progress:
    """One line per stage, with the seconds since the run started."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, action):
        print(f"[{time.perf_counter() - self.started:7.1f}s] {stage} ...", flush=True)
        begin = time.perf_counter()
        try:
            return action()
        finally:
            self.seconds[stage] = round(time.perf_counter() - begin, 2)
            print(
                f"[{time.perf_counter() - self.started:7.1f}s] {stage} done in {self.seconds[stage]:.1f}s", flush=True
            )


def execute(notebook: Path, output: Path, parameters: dict, *, kernel: str, timeout: int) -> None:
    """Execute a jupytext `.py` notebook with papermill into `output`, then write its two HTML versions."""
    import jupytext
    import papermill

    source = jupytext.read(notebook)
    source.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    try:
        papermill.execute_notebook(
            source,
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(output.parent),
            progress_bar=sys.stderr.isatty(),
            execution_timeout=timeout,
        )
    except papermill.PapermillExecutionError as error:
        reason = f"{output.stem}: {error.ename}: {error.evalue}".splitlines()[0]
        raise NotebookFailed(reason) from None
    finally:
        if output.exists():
            to_html(output)


def to_html(notebook: Path) -> None:
    """`<name>.html` without code cells for readers and `<name>.code.html` with them."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(notebook, as_version=4)
    for suffix, exclude in ((".html", True), (".code.html", False)):
        exporter = HTMLExporter(exclude_input=exclude, exclude_input_prompt=exclude, exclude_output_prompt=exclude)
        body, _ = exporter.from_notebook_node(node)
        notebook.with_suffix(suffix).write_text(body, encoding="utf-8")


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=NOTEBOOKS_DIR.parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    """Run the whole study; returns the process exit status."""
    out = Path(args.out).resolve()
    run_id = args.run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    final, failed_dir = out / run_id, out / f"{run_id}.failed"
    if final.exists() or failed_dir.exists():
        print(f"helmet-reports: error: run folder {final} already exists; choose another --run-id", file=sys.stderr)
        return 2
    work = out / f".tmp-{run_id}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress = Progress()
    record: dict = {"run_id": run_id, "status": "running", "started": now(), "finished": None}
    try:
        if args.data:
            data_dir = Path(args.data).resolve()
        else:
            data_dir = progress.run(
                "demo data", lambda: write_dataset(make_demo_dataset(args.demo_size), work / "data")
            )
        dataset = progress.run("validate data", lambda: load_dataset(data_dir))
        weights = progress.run("resolve weights", lambda: resolve_weights(args.weights))
    except (DatasetError, FileNotFoundError) as error:
        shutil.rmtree(work, ignore_errors=True)
        print(f"helmet-reports: error: {error}", file=sys.stderr)
        return 2

    try:
        parts = study_split(
            dataset.labels,
            groups_csv=args.groups or "",
            group_column=args.group_column,
            grouped=args.split == "grouped",
            images=dataset.images,
        )
    except (ValueError, OSError) as error:
        shutil.rmtree(work, ignore_errors=True)
        print(f"helmet-reports: error: {error}", file=sys.stderr)
        return 2
    uses_backbone = any(get_spec(name).uses_backbone for name in args.models)
    record.update(
        {
            "data": {
                "path": str(data_dir) if args.data else str(final / "data"),
                "demo": not args.data,
                "content_hash": dataset.content_hash,
                "images": len(dataset),
                "class_counts": {str(k): v for k, v in dataset.class_counts.items()},
            },
            "split": {**parts.sizes(), "random_state": 42, "stratified": True, "kind": args.split},
            "parameters": {
                "models": args.models,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "threshold": args.threshold,
                "image_size": args.image_size or int(dataset.images.shape[1]),
                "faithful": args.faithful,
                "augmented_views": args.augmented_views,
            },
            "weights": {**weights.to_dict(), "needed": uses_backbone, "banner": weights.banner()},
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        }
    )
    # notebooks run inside the run folder: relative paths stay valid after it is renamed into place
    notebook_data = str(data_dir) if args.data else "data"
    common = {
        "DATA_DIR": notebook_data,
        "RUN_DIR": ".",
        "SPLIT_SEED": 42,
        "IMAGE_SIZE": args.image_size or 0,
        "GROUPS_CSV": str(Path(args.groups).resolve()) if args.groups else "",
        "GROUP_COLUMN": args.group_column,
        "GROUPED_SPLIT": args.split == "grouped",
    }
    cache_dir = Path(args.cache_dir).resolve() if args.cache_dir else out / ".cache" / "features"
    notebooks = Path(args.notebooks)
    kernel = ensure_kernel()
    weights_parameter = weights.path if weights.used == "file" else args.weights  # absolute: kernels run elsewhere
    eda = {**common, "WEIGHTS": weights_parameter, "CACHE_DIR": str(cache_dir)}
    steps = [(f"notebook {EDA}", notebooks / f"{EDA}.py", work / f"{EDA}.ipynb", eda)]
    for name in args.models:
        model_parameters = {
            **common,
            "MODEL_NAME": name,
            "EPOCHS": args.epochs,
            "BATCH_SIZE": args.batch_size,
            "SEED": args.seed,
            "WEIGHTS": weights_parameter,
            "THRESHOLD": args.threshold,
            "FAITHFUL": args.faithful,
            "AUGMENTED_VIEWS": args.augmented_views,
            "CACHE_DIR": str(cache_dir),
        }
        steps.append(
            (f"notebook {MODEL} [{name}]", notebooks / f"{MODEL}.py", work / f"{MODEL}_{name}.ipynb", model_parameters)
        )
    comparison = {
        **common,
        "MODELS": ",".join(args.models),
        "THRESHOLD": args.threshold,
        "EXPORT_TFLITE": not args.no_export,
    }
    steps.append((f"notebook {COMPARISON}", notebooks / f"{COMPARISON}.py", work / f"{COMPARISON}.ipynb", comparison))

    failures: list[str] = []
    for stage, source, output, parameters in steps:
        if stage.endswith(COMPARISON) and failures:
            print(f"skipping {COMPARISON}: earlier notebooks failed", flush=True)
            continue
        try:
            progress.run(
                stage, lambda s=source, o=output, p=parameters: execute(s, o, p, kernel=kernel, timeout=args.timeout)
            )
        except NotebookFailed as error:
            failures.append(str(error))
            print(f"FAILED {error}", file=sys.stderr, flush=True)

    record["status"] = "failed" if failures else "ok"
    record["failures"] = failures
    record.update(collect_results(work, args.models))
    record["finished"] = now()
    record["stage_seconds"] = progress.seconds
    record["total_seconds"] = round(time.perf_counter() - progress.started, 2)
    (work / RUN_FILE).write_text(json.dumps(record, indent=2))
    (work / "index.html").write_text(run_index_html(record, work), encoding="utf-8")
    destination = failed_dir if failures else final
    work.rename(destination)
    if not failures:
        point_latest(out, run_id)
    (out / "index.html").write_text(runs_index_html(out), encoding="utf-8")
    if failures:
        print(f"helmet-reports: run failed: {failures[0]} (see {destination / 'index.html'})", file=sys.stderr)
        return 1
    print(f"helmet-reports: done in {record['total_seconds']:.0f}s: {destination / 'index.html'}")
    print(f"selected model: {record.get('selected_model')}; test: {headline(record.get('test'))}")
    return 0


def collect_results(run_dir: Path, names: list[str]) -> dict:
    """Per-model train/validation metrics, the selected model and its test metrics, from the notebooks' files."""
    models = {}
    for name in names:
        path = run_dir / MODELS_FOLDER / f"{name}.metrics.json"
        if path.is_file():
            result = json.loads(path.read_text())
            keep = ("train", "validation", "parameters", "trainable_parameters", "mode", "precision", "view_precision")
            models[name] = {key: result[key] for key in keep} | {
                key: result[key] for key in ("train_seconds", "notes", "weights")
            }
    selection_path = run_dir / SELECTION_FILE
    selection = json.loads(selection_path.read_text()) if selection_path.is_file() else {}
    return {
        "models": models,
        "backbone_precision": {
            "features": sorted({r["precision"] for r in models.values() if r["mode"] != "direct"}),
            "augmented_views": sorted({r["view_precision"] for r in models.values() if r["view_precision"]}),
        },
        "selected_model": selection.get("selected_model"),
        "selection_rule": SELECTION_RULE,
        "test": selection.get("test"),
        "evaluation": selection.get("evaluation"),
        "export": selection.get("export"),
    }


def point_latest(out: Path, run_id: str) -> None:
    """Move `latest.json` (and the `latest` symlink where the filesystem allows) to a successful run."""
    (out / LATEST_FILE).write_text(json.dumps({"run_id": run_id, "path": run_id, "updated": now()}, indent=2))
    link = out / "latest"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(run_id, target_is_directory=True)
    except OSError:
        pass  # latest.json is the portable pointer


def headline(metrics: dict | None) -> str:
    if not metrics:
        return "n/a"
    return ", ".join(f"{key} {metrics[key]:.3f}" for key in HEADLINE_METRICS)


STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#eee}"
    ".banner{background:#fdd;border:3px solid #c00;padding:1em;font-weight:bold}.ok{color:#070}.failed{color:#c00}"
    "</style>"
)


def metrics_cells(metrics: dict | None) -> str:
    return "".join(f"<td>{metrics[key]:.3f}</td>" if metrics else "<td>-</td>" for key in HEADLINE_METRICS)


def run_index_html(record: dict, run_dir: Path) -> str:
    """The run's landing page: warnings, links to every report, headline tables, the selected model."""
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>helmet run {esc(record['run_id'])}</title>{STYLE}"
    ]
    parts.append(f"</head><body><h1>Helmet study run {esc(record['run_id'])}</h1>")
    status = record["status"]
    parts.append(
        f"<p>Status: <b class='{status}'>{status.upper()}</b> · started {record['started']} · "
        f"{record['total_seconds']:.0f}s · data {esc(record['data']['path'])} "
        f"(hash {record['data']['content_hash']}, {record['data']['images']} images)</p>"
    )
    for failure in record.get("failures", []):
        parts.append(f"<p class='banner'>FAILED: {esc(failure)}</p>")
    weights = record["weights"]
    if weights["needed"] and weights["banner"]:
        parts.append(f"<p class='banner'>{esc(weights['banner'])}</p>")
    if record["data"]["demo"]:
        parts.append(
            "<p class='banner' style='background:#ffd;border-color:#aa0'>Synthetic demo data (batch size "
            f"{record['parameters']['batch_size']}): these numbers say nothing about real photos.</p>"
        )
    parts.append("<h2>Reports</h2><ul>")
    for notebook in sorted(run_dir.glob("*.ipynb")):
        stem = esc(notebook.stem)
        parts.append(
            f"<li><a href='{stem}.html'>{stem}</a> (<a href='{stem}.code.html'>with code</a>, "
            f"<a href='{stem}.ipynb'>notebook</a>)</li>"
        )
    parts.append("</ul><h2>Validation (selection is made here)</h2><table><tr><th>model</th>")
    parts.append("".join(f"<th>{key}</th>" for key in HEADLINE_METRICS) + "<th>train accuracy</th><th>mode</th></tr>")
    for name, result in record["models"].items():
        marker = " ★" if name == record.get("selected_model") else ""
        parts.append(
            f"<tr><th>{esc(name)}{marker}</th>{metrics_cells(result['validation'])}"
            f"<td>{result['train']['accuracy']:.3f}</td><td>{esc(result['mode'])}</td></tr>"
        )
    parts.append("</table>")
    if record.get("selected_model"):
        parts.append(
            f"<h2>Selected model: {esc(record['selected_model'])}</h2><p>Rule: {esc(record['selection_rule'])}.</p>"
            f"<table><tr><th></th>{''.join(f'<th>{k}</th>' for k in HEADLINE_METRICS)}</tr>"
            f"<tr><th>test</th>{metrics_cells(record['test'])}</tr></table>"
        )
    parts.append(f"<p><a href='{RUN_FILE}'>run.json</a> · <a href='../index.html'>all runs</a></p></body></html>")
    return "\n".join(parts)


def runs_index_html(out: Path) -> str:
    """Every run in `out`, newest first: date, status, data hash, selected model, headline test metrics, link."""
    records = []
    for path in out.glob(f"*/{RUN_FILE}"):
        try:
            records.append((path.parent.name, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    records.sort(key=lambda item: item[1].get("started", ""), reverse=True)
    rows = []
    for folder, record in records:
        status = record.get("status", "?")
        weights = record.get("weights", {})
        flag = " (random backbone)" if weights.get("needed") and weights.get("fallback_reason") else ""
        rows.append(
            f"<tr><td><a href='{html.escape(folder)}/index.html'>{html.escape(record.get('run_id', folder))}</a></td>"
            f"<td>{record.get('started', '')}</td><td class='{status}'>{status}</td>"
            f"<td>{record.get('data', {}).get('content_hash', '')}</td>"
            f"<td>{html.escape(str(record.get('selected_model')))}{flag}</td>{metrics_cells(record.get('test'))}</tr>"
        )
    header = "".join(f"<th>test {key}</th>" for key in HEADLINE_METRICS)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>helmet study runs</title>{STYLE}</head><body>"
        f"<h1>Helmet study runs</h1><table><tr><th>run</th><th>started</th><th>status</th><th>data hash</th>"
        f"<th>selected</th>{header}</tr>{''.join(rows)}</table></body></html>"
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

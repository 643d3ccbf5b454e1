"""`helmet-evaluate`: score a run's models on another dataset or on annotated site photos, and write its page."""

from __future__ import annotations

import sys
from pathlib import Path

from helmetlib.core import cli
from helmetlib.core.records import output_file_problem, write_json
from helmetlib.data.annotations import parse_classes
from helmetlib.data.dataset import DatasetError
from helmetlib.data.formats import IMPORT_FORMATS
from helmetlib.data.importer import ImportFailed
from helmetlib.deploy.cards import ModelError
from helmetlib.deploy.evaluate import evaluate_photos, evaluate_run
from helmetlib.evaluation.metrics import HEADLINE_METRICS
from helmetlib.run.folder import RunFolder


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(
        "helmet-evaluate",
        "Score a run's models on another dataset: a data folder, or annotated site photos (--format).",
        """examples:
  helmet-evaluate reports/latest --data other-site/
  helmet-evaluate reports/latest --data photos/ --format voc --classes helmet=1,head=0
exit codes: 0 scored; 2 bad options, run or data""",
    )
    parser.add_argument("run_dir", help="a helmet-reports run folder")
    parser.add_argument("--data", required=True, help="folder with images_proj.npy + Labels_proj.csv, or photos")
    parser.add_argument("--format", choices=IMPORT_FORMATS, help="--data holds annotated photos in this format")
    parser.add_argument("--classes", help="with --format: NAME=LABEL,... (e.g. helmet=1,head=0)")
    parser.add_argument("--models", help="NAME,...: score these models only (default: every model of the run)")
    parser.add_argument("--out", help="folder for the HTML report (default: RUN_DIR/evaluations/<data hash>)")
    parser.add_argument("--json", help="write the metrics as JSON to this file")
    args = parser.parse_args(argv)
    models = tuple(name.strip() for name in args.models.split(",") if name.strip()) if args.models else None
    problem = output_file_problem(args.json, "--json") if args.json else None
    if (args.format is None) != (args.classes is None):
        problem = "--format and --classes go together (annotated photos need both)"
    try:
        classes = parse_classes(args.classes) if args.classes else {}
    except ValueError as error:
        problem = str(error)
    if problem:
        print(f"helmet-evaluate: error: {problem}", file=sys.stderr)
        return 2
    try:
        say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        if args.format:
            result = evaluate_photos(
                args.run_dir, args.data, format=args.format, classes=classes, models=models, progress=say
            )
        else:
            result = evaluate_run(args.run_dir, args.data, models=models, progress=say)
    except (DatasetError, ModelError, ImportFailed) as error:
        print(f"helmet-evaluate: error: {error}", file=sys.stderr)
        return 2
    from helmetlib.reports.pages import evaluation_page

    evaluation, folder = result.evaluation, RunFolder(Path(args.run_dir))
    out = Path(args.out) if args.out else folder.evaluation_dir(evaluation.data.content_hash)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(evaluation_page(result, folder.read_record(), folder.page, out), encoding="utf-8")
    write_json(out / "evaluation.json", evaluation.to_json())
    if args.json:
        write_json(args.json, evaluation.to_json())
    for name, model in evaluation.models.items():
        scores = " ".join(f"{key} {getattr(model, key):.3f}" for key in HEADLINE_METRICS)
        print(f"{name:17s} {scores} bare_head_recall {model.bare_head_recall:.3f} threshold {model.threshold:.3f}")
    if evaluation.dropped is not None:
        print(f"helmet-evaluate: {evaluation.data.images} heads scored; not scored: {evaluation.dropped.text()}")
    verdict = evaluation.verdict(folder.read_record())
    if verdict:
        print(f"helmet-evaluate: {verdict}")
    print(f"helmet-evaluate: report {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

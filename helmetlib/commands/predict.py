"""`helmet-predict`: helmet / no helmet for head crops, or for every head box of site photos (`--boxes`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from helmetlib.data.photos import MAX_PIXELS
from helmetlib.deploy.cards import ModelError
from helmetlib.deploy.predict import (
    CROP_COLUMNS,
    NOT_A_HEAD_CROP,
    LoadedModel,
    check_threshold,
    load_model,
    predict,
    predict_photos,
)


def _parser():
    from helmetlib.core import cli
    from helmetlib.data.formats import ANNOTATION_FORMATS

    parser = cli.parser(
        "helmet-predict",
        "Predict helmet / no helmet for head crops (or for every head box of whole site photos, with --boxes).",
        f"""columns: {", ".join(CROP_COLUMNS)}; with --boxes also box (x1 y1 x2 y2, photo pixels),
  annotated_label (0/1) and padded_share (share of the crop's window outside the photo)
  head_crop_score: at most 1 when the input is like the model's training crops; above 1 an input is an error row
  ("not a head crop"): a whole photo needs --boxes
examples:
  helmet-predict --model reports/latest crops/ --out predictions.csv
  helmet-predict --model reports/latest images/ --boxes annotations/ --format voc --classes helmet=1,head=0 --draw out/
exit codes: 0 every row predicted; 1 some rows are errors (see the error column); 2 bad options, model or classes
  (before any prediction)""",
    )
    parser.add_argument("--model", required=True, help=".keras or .tflite file with its card, or a run folder")
    parser.add_argument("inputs", nargs="+", help="head crops: image files, folders (recursive), .npy arrays (BGR)")
    parser.add_argument("--out", help="write the table to FILE.csv or FILE.json (default: CSV on stdout)")
    parser.add_argument(
        "--threshold",
        type=float,
        help="decision threshold in (0, 1) (default: the model card's; recorded in the table)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (%(default)s)")
    parser.add_argument("--pad", action="store_true", help="keep the aspect ratio by padding to a square first")
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help=f"larger images become error rows (default {MAX_PIXELS:,})"
    )
    photos = parser.add_argument_group("whole site photos: one row per head box, cropped as the model's training data")
    photos.add_argument("--boxes", help="annotation file or folder naming the INPUTS photos' head boxes")
    photos.add_argument("--format", choices=ANNOTATION_FORMATS, help="of --boxes (csv: path,xmin,ymin,xmax,ymax)")
    photos.add_argument(
        "--classes",
        help="NAME=LABEL,...: judge these classes only (e.g. helmet=1,head=0; default: the classes named like heads)",
    )
    photos.add_argument("--min-box", type=int, help="heads smaller than this are error rows (default: the model's)")
    photos.add_argument(
        "--draw",
        help="write each photo with its boxes and answers, and summary.csv, into DIR (a new or drawings folder)",
    )
    return parser


def _option_problems(args) -> list[str]:
    """What is wrong with the options, found before any model is loaded or image read."""
    from helmetlib.core.records import output_file_problem
    from helmetlib.data.annotations import parse_classes

    problems = []
    if args.out and Path(args.out).suffix not in (".csv", ".json"):
        problems.append("--out must end in .csv or .json")
    elif args.out:
        problems.append(output_file_problem(args.out, "--out"))
    if args.batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_pixels < 1:
        problems.append(f"--max-pixels must be at least 1, got {args.max_pixels}")
    if args.threshold is not None:
        try:
            check_threshold(args.threshold)
        except ValueError as error:
            problems.append(f"--{error}")
    photo_options = {"--format": args.format, "--classes": args.classes, "--min-box": args.min_box, "--draw": args.draw}
    if args.boxes is None:
        problems += [f"{name} needs --boxes" for name, value in photo_options.items() if value is not None]
    elif args.format is None:
        problems.append("--boxes needs --format (voc, yolo, coco or csv)")
    if args.classes:
        try:
            parse_classes(args.classes)
        except ValueError as error:
            problems.append(str(error))
    if args.min_box is not None and args.min_box < 1:
        problems.append(f"--min-box must be at least 1, got {args.min_box}")
    problems += _overwrite_problems(args)
    return [problem for problem in problems if problem]


def _overwrite_problems(args) -> list[str]:
    """Outputs that would destroy or mix with inputs: `--out` naming an input or an annotation file, a `--draw`
    folder that is, holds or lies in an input folder, or cannot be written."""
    from helmetlib.core.records import output_folder_problem

    inputs = [Path(item).resolve() for item in [*args.inputs, *([args.boxes] if args.boxes else [])]]
    problems = []
    if args.out:
        out = Path(args.out).resolve()
        touched = [
            item for item in inputs if out == item or (out.exists() and item.is_dir() and out.is_relative_to(item))
        ]
        if touched:
            problems.append(f"--out {args.out}: is an input or lies among them ({touched[0]}); give another file")
    if args.draw:
        draw = Path(args.draw).resolve()
        for item in inputs:
            if item == draw or item.is_relative_to(draw) or (item.is_dir() and draw.is_relative_to(item)):
                problems.append(
                    f"--draw {args.draw}: is, holds or lies in an input ({item}); drawings would overwrite or mix with "
                    "the photos: give a folder of its own"
                )
                break
        problems.append(output_folder_problem(args.draw, "--draw"))
        if args.out and Path(args.out).resolve() == draw / "summary.csv":
            problems.append(f"--out {args.out}: --draw writes its summary.csv there")
    return problems


def _summary(table: pd.DataFrame, model: LoadedModel, args) -> str:
    """The one line `helmet-predict` ends with: what was judged, what failed, with which model and threshold."""
    failed = int(table["error"].notna().sum())
    card = model.card.threshold.value
    threshold = (
        f"threshold {args.threshold:g} (--threshold; the card's {card:.3f})"
        if args.threshold is not None
        else f"threshold {card:.3f} (the card's)"
    )
    if args.boxes:
        judged = table["label"].dropna()
        photos = table.loc[table["box"].notna(), "source"].nunique()
        counted = (
            f"{photos} photos, {len(judged)} heads judged: {int((judged == 0).sum())} bare heads, "
            f"{int((judged == 1).sum())} helmets; {failed} failed"
        )
    else:
        counted = f"{len(table) - failed} predicted, {failed} failed"
        not_crops = int(table["error"].fillna("").str.startswith(NOT_A_HEAD_CROP).sum())
        if not_crops:
            counted += f" ({not_crops} not head crops: give head crops, or whole photos with --boxes)"
    return f"helmet-predict: {counted} ({model.kind} {model.path.name}, {threshold})"


def main(argv: list[str] | None = None) -> int:
    import sys

    from helmetlib.data.annotations import UnknownClasses, parse_classes

    args = _parser().parse_args(argv)
    problems = _option_problems(args)
    if problems:
        print(f"helmet-predict: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
        options = dict(threshold=args.threshold, batch_size=args.batch_size, max_pixels=args.max_pixels)
        if args.boxes:
            classes = parse_classes(args.classes) if args.classes else None
            table = predict_photos(
                model,
                args.inputs,
                boxes=args.boxes,
                format=args.format,
                classes=classes,
                min_box=args.min_box,
                **options,
            )
        else:
            table = predict(model, args.inputs, pad=args.pad, progress=sys.stderr.isatty(), **options)
    except (ModelError, UnknownClasses) as error:
        print(f"helmet-predict: error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        Path(args.out).write_text(table.to_json(orient="records", indent=2))
    else:
        table.to_csv(args.out, index=False)
    if args.draw:
        from helmetlib.deploy.drawing import draw_predictions

        draw_predictions(table, args.draw, max_pixels=args.max_pixels)
    print(_summary(table, model, args), file=sys.stderr)
    return 1 if table["error"].notna().any() else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())

"""`helmet-import`: annotated site photos (VOC, YOLO, COCO) or folders of crops into a data folder."""

from __future__ import annotations

import sys

from helmetlib.core import cli
from helmetlib.data.annotations import parse_classes
from helmetlib.data.formats import IMPORT_FORMATS
from helmetlib.data.importer import ImportFailed, import_photos
from helmetlib.data.photos import CropRule


def main(argv: list[str] | None = None) -> int:
    defaults = CropRule()
    parser = cli.parser(
        "helmet-import",
        "Cut one head crop per annotated box out of site photos into a data folder in the study's format "
        "(images_proj.npy BGR, Labels_proj.csv, provenance.csv, manifest.json).",
        """examples:
  helmet-import photos/ data/site-a --format voc --classes helmet=1,head=0
  helmet-import roboflow-export/ data/site-b --format yolo --classes helmet=1,nohelmet=0 --strict
exit codes: 0 imported; 2 bad options, nothing usable, or a problem under --strict (nothing written)""",
    )
    parser.add_argument("source", help="folder (or annotation file) holding the photos and their annotations")
    parser.add_argument("out", help="the new data folder to write (must not exist)")
    parser.add_argument("--format", required=True, choices=IMPORT_FORMATS, help="annotation format")
    parser.add_argument("--classes", required=True, help="NAME=LABEL,...: class names (YOLO: or indices) to 1 / 0")
    rule = parser.add_argument_group("crop rule (recorded in manifest.json; prediction reuses it)")
    rule.add_argument("--context", type=float, default=defaults.context, help="window / longer box side (%(default)s)")
    rule.add_argument("--shift", type=float, default=defaults.shift, help="move down, box heights (%(default)s)")
    rule.add_argument("--image-size", type=int, default=defaults.image_size, help="crop side, pixels (%(default)s)")
    rule.add_argument("--min-box", type=int, default=defaults.min_box, help="skip smaller heads (%(default)s px)")
    rule.add_argument(
        "--edge",
        choices=("inside", "replicate"),
        default=defaults.edge,
        help="a window leaving the photo: moved in until at most a fifth is padding, or kept centred (%(default)s)",
    )
    parser.add_argument("--strict", action="store_true", help="any problem in the input: exit 2, nothing written")
    args = parser.parse_args(argv)
    try:
        classes = parse_classes(args.classes)
        rule = CropRule(
            context=args.context, shift=args.shift, image_size=args.image_size, min_box=args.min_box, edge=args.edge
        )
        manifest = import_photos(
            args.source,
            args.out,
            format=args.format,
            classes=classes,
            rule=rule,
            strict=args.strict,
            progress=sys.stderr.isatty(),
        )
    except (ImportFailed, ValueError) as error:
        print(f"helmet-import: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(f"helmet-import: {manifest.summary()} -> {args.out}", file=sys.stderr)
    return 0


def _one_line(error: Exception) -> str:
    """A pydantic check of the crop rule reads 'Value error, context must...' over several lines: keep the reason."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line.removeprefix("Value error, ").split(" [type=")[0] for line in lines if "Value error" in line]
    return reasons[0] if reasons else " ".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Head boxes as labelling tools export them: Pascal VOC XML, YOLO txt, COCO JSON, or a plain CSV.

`read_annotations` gives every annotated photo with its boxes, and lists every problem with its file and reason
instead of stopping: malformed XML / JSON / txt lines, images that cannot be found, class ids that the dataset does
not define, annotation files without any box. Class names are mapped to labels by a `--classes` mapping
(`helmet=1,head=0`); boxes of other classes (`person`) are left out and counted by name.

Small readers on the standard library (`defusedxml` for XML, which refuses entity bombs): the maintained readers
(`supervision`, `globox`, `pycocotools`) bring a second OpenCV build, GUI or plotting dependencies, or read one
format only, while what the import needs from each format is a few fields.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from helmetlib.photos import IMAGE_SUFFIXES, HeadBox, header_size, image_files
from helmetlib.records import Record, record

AnnotationFormat = Literal["voc", "yolo", "coco", "csv"]
ANNOTATION_FORMATS: tuple[str, ...] = ("voc", "yolo", "coco", "csv")
CSV_BOX_COLUMNS = ("path", "xmin", "ymin", "xmax", "ymax")  # and optionally `class_name`


@record
class Problem(Record):
    """Something wrong in the input, skipped: the file it is in and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class AnnotatedPhoto:
    """A photo and its head boxes (those of the mapped classes, or every box when no mapping is given)."""

    path: Path
    annotation: Path
    boxes: tuple[HeadBox, ...]


@dataclass
class Annotations:
    """What a set of annotation files holds: the photos with boxes, the problems, the boxes of ignored classes."""

    photos: list[AnnotatedPhoto] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored_classes: Counter[str] = field(default_factory=Counter)

    def problem(self, file: Path, reason: str) -> None:
        self.problems.append(Problem(file=str(file), reason=reason))


def parse_classes(text: str) -> dict[str, int]:
    """`helmet=1,head=0` -> {"helmet": 1, "head": 0}; `ValueError` saying what is wrong otherwise."""
    mapping: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        name, equals, label = item.rpartition("=")
        if not equals or not name.strip() or label.strip() not in ("0", "1"):
            raise ValueError(f"--classes: {item!r} is not NAME=0 or NAME=1 (e.g. helmet=1,head=0)")
        if name.strip() in mapping:
            raise ValueError(f"--classes: {name.strip()!r} is mapped twice")
        mapping[name.strip()] = int(label)
    if not mapping:
        raise ValueError("--classes: give at least one NAME=LABEL")
    return mapping


class PhotoIndex:
    """Image files by name and by stem, to find the photo an annotation names wherever the export put it."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in files:
            self.by_name.setdefault(path.name, []).append(path)
            self.by_stem.setdefault(path.stem, []).append(path)

    @classmethod
    def of(cls, inputs: list[Path]) -> PhotoIndex:
        """The index of image files and folders (searched recursively)."""
        files: list[Path] = []
        for path in inputs:
            files.extend(image_files(path) if path.is_dir() else [path])
        return cls(files)

    def find(self, name: str, *, near: Path) -> Path | None:
        """The photo called `name` (a file name or relative path), the one closest to `near` when several are."""
        given = near.parent / name
        if given.is_file():
            return given
        basename = Path(name.replace("\\", "/")).name
        candidates = self.by_name.get(basename) or self.by_stem.get(Path(basename).stem) or []
        if not candidates:
            return None
        return max(candidates, key=lambda path: _shared_parts(path, near))


def _shared_parts(path: Path, near: Path) -> int:
    """How many leading folders two paths share (train/images/x.png is closer to train/labels/x.txt)."""
    count = 0
    for first, second in zip(path.parent.parts, near.parent.parts, strict=False):
        if first != second:
            break
        count += 1
    return count


def read_annotations(
    annotations: str | Path,
    *,
    format: AnnotationFormat,
    photos: PhotoIndex,
    classes: dict[str, int] | None = None,
) -> Annotations:
    """Every photo named by the annotations under `annotations` (a file or folder), with its boxes.

    `photos` finds the image files that annotations name. With `classes`, only boxes of those classes are kept,
    with their labels; the others are counted in `ignored_classes`. Problems never stop the reading: each is listed.
    """
    source = Path(annotations)
    result = Annotations()
    if not source.exists():
        result.problem(source, "annotations not found")
        return result
    readers = {"voc": _read_voc, "yolo": _read_yolo, "coco": _read_coco, "csv": _read_csv}
    for photo in readers[format](source, photos, classes, result):
        result.photos.append(photo)
    return result


def _keep(box: HeadBox, classes: dict[str, int] | None, result: Annotations) -> HeadBox | None:
    """`box` with its label when its class is mapped (or no mapping is given), else None (counted as ignored)."""
    if classes is None:
        return box
    if box.class_name not in classes:
        result.ignored_classes[box.class_name or "(no class)"] += 1
        return None
    return HeadBox(box.x1, box.y1, box.x2, box.y2, class_name=box.class_name, label=classes[box.class_name])


def _files(source: Path, suffix: str) -> list[Path]:
    return [source] if source.is_file() else sorted(source.rglob(f"*{suffix}"))


def _read_voc(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse

    for xml_file in _files(source, ".xml"):
        try:
            root = parse(xml_file).getroot()
        except (ParseError, DefusedXmlException, OSError) as error:
            result.problem(xml_file, f"malformed XML ({error})")
            continue
        if root.tag != "annotation":
            result.problem(xml_file, f"not a Pascal VOC annotation (root element <{root.tag}>)")
            continue
        name = (root.findtext("filename") or "").strip() or xml_file.stem
        photo = photos.find(name, near=xml_file)
        if photo is None:
            result.problem(xml_file, f"image not found: {name}")
            continue
        objects = root.findall("object")
        if not objects:
            result.problem(xml_file, "annotation file has no boxes")
            continue
        boxes = []
        for number, element in enumerate(objects, start=1):
            try:
                corners = [float(element.findtext(f"bndbox/{key}") or "") for key in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                result.problem(xml_file, f"malformed box in object {number} (missing or non-numeric bndbox)")
                continue
            kept = _keep(HeadBox(*corners, class_name=(element.findtext("name") or "").strip()), classes, result)
            if kept:
                boxes.append(kept)
        yield AnnotatedPhoto(path=photo, annotation=xml_file, boxes=tuple(boxes))


def _read_yolo(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """Ultralytics / Roboflow layout: `images/` beside `labels/` (maybe under train/ valid/ test/), class names in
    `data.yaml` (or LabelImg's `classes.txt`), one `class cx cy w h` line per box, normalised to the photo."""
    names = _yolo_names(source if source.is_dir() else source.parent, result)
    label_files = [path for path in _files(source, ".txt") if path.name != "classes.txt"]
    if any("labels" in path.parts for path in label_files):
        label_files = [path for path in label_files if "labels" in path.parts]
    for label_file in label_files:
        photo = _yolo_image(label_file, photos)
        if photo is None:
            result.problem(label_file, f"image not found for {label_file.name}")
            continue
        size = header_size(photo)
        if size is None:
            result.problem(photo, "unreadable image (its size is needed to place the normalised boxes)")
            continue
        width, height = size
        lines = [line for line in label_file.read_text(errors="replace").splitlines() if line.strip()]
        if not lines:
            result.problem(label_file, "annotation file has no boxes")
            continue
        boxes = []
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            try:
                index, (centre_x, centre_y, box_width, box_height) = int(fields[0]), map(float, fields[1:])
            except ValueError:
                result.problem(label_file, f"malformed line {number}: {line.strip()[:60]!r} (expected class cx cy w h)")
                continue
            if names and not 0 <= index < len(names):
                result.problem(label_file, f"unknown class index {index} on line {number} ({len(names)} classes)")
                continue
            class_name = names[index] if names else str(index)
            if classes is not None and class_name not in classes and str(index) in classes:
                class_name = str(index)  # --classes may name YOLO indices
            box = HeadBox(
                round((centre_x - box_width / 2) * width, 3),
                round((centre_y - box_height / 2) * height, 3),
                round((centre_x + box_width / 2) * width, 3),
                round((centre_y + box_height / 2) * height, 3),
                class_name=class_name,
            )
            kept = _keep(box, classes, result)
            if kept:
                boxes.append(kept)
        yield AnnotatedPhoto(path=photo, annotation=label_file, boxes=tuple(boxes))


def _yolo_names(folder: Path, result: Annotations) -> list[str]:
    """Class names from `data.yaml` (a list or an index -> name mapping) or `classes.txt`; [] when neither."""
    import yaml

    for candidate in [folder / "data.yaml", *sorted(folder.glob("*.yaml")), folder.parent / "data.yaml"]:
        if not candidate.is_file():
            continue
        try:
            names = (yaml.safe_load(candidate.read_text()) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as error:
            result.problem(candidate, f"malformed YAML ({str(error).splitlines()[0]})")
            return []
        if isinstance(names, dict):
            return [str(names[key]) for key in sorted(names)]
        if isinstance(names, list):
            return [str(name) for name in names]
    listed = folder / "classes.txt"
    return [line.strip() for line in listed.read_text().splitlines() if line.strip()] if listed.is_file() else []


def _yolo_image(label_file: Path, photos: PhotoIndex) -> Path | None:
    parts = list(label_file.parts)
    if "labels" in parts:
        position = len(parts) - 1 - parts[::-1].index("labels")
        parts[position] = "images"
        for suffix in IMAGE_SUFFIXES | {suffix.upper() for suffix in IMAGE_SUFFIXES}:
            candidate = Path(*parts).with_suffix(suffix)
            if candidate.is_file():
                return candidate
    return photos.find(label_file.stem, near=label_file)


def _read_coco(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """COCO JSON files (`images`, `annotations`, `categories`; boxes `[x, y, width, height]`), images relative to
    the JSON file (or found by name)."""
    for json_file in _files(source, ".json"):
        try:
            data = json.loads(json_file.read_text())
            images = {image["id"]: str(image["file_name"]) for image in data["images"]}
            categories = {category["id"]: str(category["name"]) for category in data.get("categories", [])}
            entries = list(data["annotations"])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            result.problem(json_file, f"malformed JSON ({error})")
            continue
        except (KeyError, TypeError) as error:
            if source.is_dir() and not (isinstance(data, dict) and "images" in data):
                continue  # another JSON file in the folder, not a COCO one
            result.problem(json_file, f"not a COCO annotation file (missing or malformed key {error})")
            continue
        boxes: dict[int, list[HeadBox]] = {image_id: [] for image_id in images}
        for number, entry in enumerate(entries, start=1):
            try:
                x, y, box_width, box_height = (float(value) for value in entry["bbox"])
                image_id, category = entry["image_id"], entry["category_id"]
            except (KeyError, TypeError, ValueError):
                needs = "needs image_id, category_id, bbox [x,y,w,h]"
                result.problem(json_file, f"malformed annotation {number} ({needs})")
                continue
            if image_id not in images:
                result.problem(json_file, f"annotation {number} names image id {image_id}, which the file lacks")
                continue
            if category not in categories:
                result.problem(json_file, f"unknown category id {category} in annotation {number}")
                continue
            kept = _keep(HeadBox(x, y, x + box_width, y + box_height, class_name=categories[category]), classes, result)
            if kept:
                boxes[image_id].append(kept)
        annotated = {entry.get("image_id") for entry in entries if isinstance(entry, dict)}
        for image_id, name in images.items():
            photo = photos.find(name, near=json_file)
            if photo is None:
                result.problem(json_file, f"image not found: {name}")
            elif image_id not in annotated:
                result.problem(json_file, f"no boxes for image: {name}")
            else:
                yield AnnotatedPhoto(path=photo, annotation=json_file, boxes=tuple(boxes[image_id]))


def _read_csv(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """A CSV of boxes, one row per head: `path,xmin,ymin,xmax,ymax[,class_name]` (e.g. an import's provenance)."""
    import pandas as pd

    for csv_file in _files(source, ".csv"):
        try:
            table = pd.read_csv(csv_file, dtype={"path": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            result.problem(csv_file, f"not a readable CSV file ({error})")
            continue
        missing = [column for column in CSV_BOX_COLUMNS if column not in table.columns]
        if missing:
            result.problem(csv_file, f"no {', '.join(missing)} column (a box CSV has {', '.join(CSV_BOX_COLUMNS)})")
            continue
        for name, rows in table.groupby("path", sort=False):
            photo = photos.find(str(name), near=csv_file)
            if photo is None:
                result.problem(csv_file, f"image not found: {name}")
                continue
            boxes = []
            for row in rows.itertuples(index=False):
                corners = [pd.to_numeric(getattr(row, key), errors="coerce") for key in CSV_BOX_COLUMNS[1:]]
                value = getattr(row, "class_name", "")
                class_name = "" if pd.isna(value) else str(value)
                kept = _keep(HeadBox(*map(float, corners), class_name=class_name), classes, result)
                if kept:
                    boxes.append(kept)
            yield AnnotatedPhoto(path=photo, annotation=csv_file, boxes=tuple(boxes))

"""The annotation formats, each a small reader: Pascal VOC XML, YOLO txt (with `data.yaml`), COCO JSON and a plain
CSV; `read_annotations` gives every annotated photo with its boxes and lists every problem with its file and reason
instead of stopping or guessing: malformed XML / JSON / txt / YAML, images that cannot be found or whose name is
ambiguous, file names and links that lead outside the folder read (never opened), two annotations of one photo,
COCO image ids given twice, class ids that the dataset does not define, annotation files without any box. Class
names are mapped to labels by a `--classes` mapping (`helmet=1,head=0`), or, without one, by the names labelling
tools use for heads (`head_classes`); boxes of other classes (`person`) are left out and counted by name.

A new format: a reader here, added to `READERS` (`helmet-predict --boxes` reads it) and, for `helmet-import`, to
`IMPORT_FORMATS`. Readers on the standard library (`defusedxml` for XML, which refuses entity bombs; PyYAML with
aliases refused): the maintained readers (`supervision`, `globox`, `pycocotools`) bring a second OpenCV build, GUI
or plotting dependencies, or read one format only, while what the import needs from each format is a few fields.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from helmetlib.data.annotations import (
    LINK_LEAVES,
    MAX_YAML_BYTES,
    AnnotatedPhoto,
    Annotations,
    PhotoIndex,
    head_classes,
)
from helmetlib.data.photos import IMAGE_SUFFIXES, HeadBox, files_under

Reader = Callable[[Path, PhotoIndex, "dict[str, int] | None", Annotations], Iterator[AnnotatedPhoto]]


def read_annotations(
    annotations: str | Path,
    *,
    format: str,
    photos: PhotoIndex,
    classes: dict[str, int] | None = None,
) -> Annotations:
    """Every photo named by the annotations under `annotations` (a file or folder), with its boxes.

    `photos` finds the image files that annotations name. Boxes of the classes in `classes` are kept, with their
    labels; the others are counted in `ignored_classes`. Without `classes`, the names of heads (`head_classes`)
    decide, and `UnknownClasses` is raised when they cannot. Problems never stop the reading: each is listed.
    """
    source = Path(annotations)
    result = Annotations()
    if not source.exists():
        result.problem(source, "annotations not found")
        return result
    for path in photos.leaving:
        result.problem(path, LINK_LEAVES)
    found = list(READERS[format](source, photos, classes, result))
    names = {box.class_name for photo in found for box in photo.boxes} - {""}  # "": a CSV without classes
    result.classes = dict(classes) if classes is not None else head_classes(names)
    result.photos = _one_annotation_per_photo(
        [replace(photo, boxes=_kept(photo.boxes, result)) for photo in found], result
    )
    named = {photo.path.resolve() for photo in found}
    result.unannotated = [path for path in photos.files if path.resolve() not in named]
    return result


def _kept(boxes: tuple[HeadBox, ...], result: Annotations) -> tuple[HeadBox, ...]:
    """The boxes of mapped classes with their labels (boxes of a CSV without classes are heads, unlabelled); the
    others counted as ignored."""
    kept = []
    for box in boxes:
        if not box.class_name and not result.classes:
            kept.append(box)
        elif box.class_name in result.classes:
            kept.append(replace(box, label=result.classes[box.class_name]))
        else:
            result.ignored_classes[box.class_name or "(no class)"] += 1
    return tuple(kept)


def _one_annotation_per_photo(photos: list[AnnotatedPhoto], result: Annotations) -> list[AnnotatedPhoto]:
    """The photos named by one annotation only; a photo two annotations name is listed under each, not guessed."""
    named = Counter(photo.path.resolve() for photo in photos)
    for photo in photos:
        if named[photo.path.resolve()] > 1:
            result.problem(photo.annotation, f"{named[photo.path.resolve()]} annotations name the photo {photo.path}")
    return [photo for photo in photos if named[photo.path.resolve()] == 1]


def _files(source: Path, suffix: str, result: Annotations) -> list[Path]:
    if source.is_file():
        return [source]
    inside, leaving = files_under(source, (suffix,))
    for path in leaving:
        result.problem(path, LINK_LEAVES)
    return inside


def _read_voc(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse

    for xml_file in _files(source, ".xml", result):
        try:
            root = parse(xml_file).getroot()
        except (ParseError, DefusedXmlException, OSError) as error:
            result.problem(xml_file, f"malformed XML ({error})")
            continue
        if root.tag != "annotation":
            result.problem(xml_file, f"not a Pascal VOC annotation (root element <{root.tag}>)")
            continue
        name = (root.findtext("filename") or "").strip() or xml_file.stem
        photo, problem = photos.find(name, near=xml_file, folder=(root.findtext("folder") or "").strip())
        if photo is None:
            result.problem(xml_file, problem)
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
            boxes.append(HeadBox(*corners, class_name=(element.findtext("name") or "").strip()))
        yield AnnotatedPhoto(path=photo, annotation=xml_file, boxes=tuple(boxes), declared_size=_voc_size(root))


def _voc_size(root) -> tuple[int, int] | None:
    """VOC's `<size>` as (width, height); None when absent or zero (some tools write 0 when they do not know)."""
    try:
        size = int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0)
    except ValueError:
        return None
    return size if all(size) else None


def _read_yolo(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """Ultralytics / Roboflow layout: `images/` beside `labels/` (maybe under train/ valid/ test/), class names in
    `data.yaml` (or LabelImg's `classes.txt`), one `class cx cy w h` line per box, fractions of the photo's size
    (placed on the photo once it is decoded)."""
    names = _yolo_names(source if source.is_dir() else source.parent, result)
    label_files = [path for path in _files(source, ".txt", result) if path.name != "classes.txt"]
    if any("labels" in path.parts for path in label_files):
        label_files = [path for path in label_files if "labels" in path.parts]
    for label_file in label_files:
        photo, problem = _yolo_image(label_file, photos)
        if photo is None:
            result.problem(label_file, problem)
            continue
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
            half_width, half_height = box_width / 2, box_height / 2
            box = HeadBox(
                centre_x - half_width,
                centre_y - half_height,
                centre_x + half_width,
                centre_y + half_height,
                class_name=class_name,
            )
            boxes.append(box)
        yield AnnotatedPhoto(path=photo, annotation=label_file, boxes=tuple(boxes), normalized=True)


def load_yaml(text: str):
    """YAML through PyYAML's safe loader, refusing anchors and aliases: a few hundred bytes of nested aliases expand
    to gigabytes (a "billion laughs"), and a class list needs none. `yaml.YAMLError` for either."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases are not allowed in a class list", mark)
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader that also refuses aliases


def _yolo_names(folder: Path, result: Annotations) -> list[str]:
    """Class names from `data.yaml` (a list or an index -> name mapping) or `classes.txt`; [] when neither."""
    import yaml

    for candidate in [folder / "data.yaml", *sorted(folder.glob("*.yaml")), folder.parent / "data.yaml"]:
        if not candidate.is_file():
            continue
        if candidate.stat().st_size > MAX_YAML_BYTES:
            result.problem(candidate, f"YAML file over {MAX_YAML_BYTES:,} bytes: not a class list, not read")
            return []
        try:
            data = load_yaml(candidate.read_text(errors="replace")) or {}
            names = data.get("names") if isinstance(data, dict) else None
        except yaml.YAMLError as error:
            result.problem(candidate, f"malformed YAML ({str(error).splitlines()[0]})")
            return []
        if isinstance(names, dict):
            return [str(names[key]) for key in sorted(names, key=str)]
        if isinstance(names, list):
            return [str(name) for name in names]
    listed = folder / "classes.txt"
    return [line.strip() for line in listed.read_text().splitlines() if line.strip()] if listed.is_file() else []


def _yolo_image(label_file: Path, photos: PhotoIndex) -> tuple[Path | None, str | None]:
    parts = list(label_file.parts)
    if "labels" in parts:
        position = len(parts) - 1 - parts[::-1].index("labels")
        parts[position] = "images"
        for suffix in IMAGE_SUFFIXES | {suffix.upper() for suffix in IMAGE_SUFFIXES}:
            candidate = photos.resolved.get(Path(*parts).with_suffix(suffix).resolve())
            if candidate is not None:
                return candidate, None
    photo, problem = photos.find(label_file.stem, near=label_file)
    return photo, None if photo else f"image not found for {label_file.name}" + _why(problem)


def _why(problem: str | None) -> str:
    return f" ({problem})" if problem and not problem.startswith("image not found") else ""


def _read_coco(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """COCO JSON files (`images`, `annotations`, `categories`; boxes `[x, y, width, height]`), images relative to
    the JSON file (or found by name). An image id given to two images (a merged export) is refused with its boxes:
    they could belong to either."""
    for json_file in _files(source, ".json", result):
        try:
            data = json.loads(json_file.read_text())
            images, categories, entries = _coco_tables(data, json_file, result)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            result.problem(json_file, f"malformed JSON ({error})")
            continue
        except (KeyError, TypeError, ValueError) as error:
            if source.is_dir() and not (isinstance(data, dict) and "images" in data):
                continue  # another JSON file in the folder, not a COCO one
            result.problem(json_file, f"not a COCO annotation file (missing or malformed key {error})")
            continue
        boxes: dict[int | str, list[HeadBox]] = {image_id: [] for image_id in images}
        for number, entry in enumerate(entries, start=1):
            box = _coco_box(entry, number, images, categories, json_file, result)
            if box is not None:
                boxes[entry["image_id"]].append(box)
        for image_id, (name, size) in images.items():
            photo, problem = photos.find(name, near=json_file)
            if photo is None:
                result.problem(json_file, problem)
            elif not boxes[image_id]:
                result.problem(json_file, f"no boxes for image: {name}")
            else:
                yield AnnotatedPhoto(path=photo, annotation=json_file, boxes=tuple(boxes[image_id]), declared_size=size)


def _is_id(value) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _coco_tables(data, json_file: Path, result: Annotations):
    """(images {id: (file name, (width, height) or None)}, categories {id: name}, annotation entries); ids given
    twice are listed and their images dropped. `KeyError` / `TypeError` / `ValueError` for a file that is not COCO."""
    ids = Counter(image["id"] for image in data["images"] if _is_id(image.get("id")))
    images = {}
    for image in data["images"]:
        image_id, name = image.get("id"), str(image["file_name"])
        if not _is_id(image_id):
            result.problem(json_file, f"image {name}: id {image_id!r} is not a number or a string")
        elif ids[image_id] > 1:
            result.problem(json_file, f"image id {image_id} is given to {ids[image_id]} images ({name} one of them)")
        else:
            width, height = image.get("width"), image.get("height")
            sized = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
            images[image_id] = name, (width, height) if sized else None
    categories = {category["id"]: str(category["name"]) for category in data.get("categories", [])}
    return images, categories, list(data["annotations"])


def _coco_box(entry, number: int, images: dict, categories: dict, json_file: Path, result: Annotations):
    """The box of one COCO annotation entry, or None with the problem listed."""
    try:
        x, y, box_width, box_height = (float(value) for value in entry["bbox"])
        image_id, category = entry["image_id"], entry["category_id"]
    except (KeyError, TypeError, ValueError):
        result.problem(json_file, f"malformed annotation {number} (needs image_id, category_id, bbox [x,y,w,h])")
        return None
    if not (_is_id(image_id) and _is_id(category)):
        result.problem(json_file, f"malformed annotation {number} (image_id, category_id: numbers or strings)")
        return None
    if image_id not in images:
        result.problem(json_file, f"annotation {number} names image id {image_id}, which the file lacks or refused")
        return None
    if category not in categories:
        result.problem(json_file, f"unknown category id {category} in annotation {number}")
        return None
    return HeadBox(x, y, x + box_width, y + box_height, class_name=categories[category])


CSV_BOX_COLUMNS = ("path", "xmin", "ymin", "xmax", "ymax")  # and optionally `class_name`


def _read_csv(source, photos, classes, result) -> Iterator[AnnotatedPhoto]:
    """A CSV of boxes, one row per head: `path,xmin,ymin,xmax,ymax[,class_name]` (e.g. an import's provenance)."""
    import pandas as pd

    for csv_file in _files(source, ".csv", result):
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
            photo, problem = photos.find(str(name), near=csv_file)
            if photo is None:
                result.problem(csv_file, problem)
                continue
            boxes = []
            for row in rows.itertuples(index=False):
                corners = [pd.to_numeric(getattr(row, key), errors="coerce") for key in CSV_BOX_COLUMNS[1:]]
                value = getattr(row, "class_name", "")
                class_name = "" if pd.isna(value) else str(value)
                boxes.append(HeadBox(*map(float, corners), class_name=class_name))
            yield AnnotatedPhoto(path=photo, annotation=csv_file, boxes=tuple(boxes))


AnnotationFormat = Literal["voc", "yolo", "coco", "csv"]
READERS: dict[str, Reader] = {"voc": _read_voc, "yolo": _read_yolo, "coco": _read_coco, "csv": _read_csv}
ANNOTATION_FORMATS: tuple[str, ...] = tuple(READERS)  # what `helmet-predict --boxes` reads
ImportFormat = Literal["voc", "yolo", "coco", "folders"]
IMPORT_FORMATS: tuple[str, ...] = ("voc", "yolo", "coco", "folders")  # `folders`: sub-folders of crops by class

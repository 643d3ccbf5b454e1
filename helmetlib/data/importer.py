"""`helmet-import`: annotated site photos (VOC, YOLO, COCO, or folders of crops) -> a data folder in the study's format.

One crop per head box by the crop rule (`photos.CropRule`), written as `images_proj.npy` (BGR, streamed into the
file: memory stays bounded whatever the number of photos), `Labels_proj.csv`, `provenance.csv` (one row per crop:
the photo, the box, its class, the window; its `path` column is the photo, which runs use as the groups of a
grouped split) and `manifest.json` (counts, skipped boxes and files by reason, every problem with its file, the
crop rule that prediction reuses). The folder appears only when the import succeeded.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from helmetlib.core.records import Record, output_folder_problem, record, write_json
from helmetlib.data.annotations import (
    LINK_LEAVES,
    SIZE_DIFFERS,
    AnnotatedPhoto,
    Annotations,
    PhotoIndex,
    Problem,
)
from helmetlib.data.dataset import IMAGES_FILE, LABEL_COLUMN, LABELS_FILE, MANIFEST_FILE, PROVENANCE_FILE
from helmetlib.data.formats import ImportFormat, read_annotations
from helmetlib.data.photos import MOSTLY_PADDING, CropRule, HeadBox, image_files, read_image_file

NPY_HEADER_BYTES = 128  # room for the header of any (N, size, size, 3) uint8 array, written when N is known
PROVENANCE_COLUMNS = (
    "row",
    LABEL_COLUMN,
    "class_name",
    "path",
    "annotation",
    "box_index",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "window_left",
    "window_top",
    "window_side",
    "padded_share",
)


class ImportFailed(ValueError):
    """An import that cannot give a usable data folder (nothing written): the message says why."""


@record
class PaddedCrop(Record):
    """A crop whose window lies mostly outside its photo (a head at the photo's edge, larger than the window's room
    there): its row, photo, box and padded share."""

    row: int
    path: str
    box_index: int
    padded_share: float


@record
class DataManifest(Record):
    """What `helmet-import` made (`manifest.json` in the data folder) and the crop rule prediction must reuse."""

    format: Literal["helmetlib-data/1"]
    source: str
    annotation_format: str
    classes: dict[str, int]
    crop_rule: CropRule
    images: int
    labels: dict[str, int]
    per_class: dict[str, int]
    per_source_folder: dict[str, int]
    photos: int
    ignored_classes: dict[str, int]
    skipped_boxes: dict[str, int]
    skipped_files: dict[str, int]
    problem_counts: dict[str, int]
    problems: tuple[Problem, ...]
    created: str
    mostly_padding: tuple[PaddedCrop, ...] = ()
    photos_without_boxes: int = 0  # image files in the source that no annotation names

    def summary(self) -> str:
        """One line: crops per class from how many photos, what was ignored, skipped and wrong."""
        per_class = ", ".join(f"{name} {count}" for name, count in sorted(self.per_class.items()))
        parts = [f"{self.images} crops ({per_class}) from {self.photos} photos"]
        if self.ignored_classes:
            parts.append("ignored " + ", ".join(f"{name} {count}" for name, count in self.ignored_classes.items()))
        skipped = {**self.skipped_boxes, **self.skipped_files}
        if skipped:
            parts.append("skipped " + ", ".join(f"{count} {reason}" for reason, count in skipped.items()))
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.problem_counts.items())
        listed = f": {kinds} (each listed in {MANIFEST_FILE})" if kinds else ""
        parts.append(f"{len(self.problems)} problems{listed}")
        if self.photos_without_boxes:
            parts.append(f"{self.photos_without_boxes} photos without boxes")
        if self.mostly_padding:
            parts.append(f"{len(self.mostly_padding)} crops mostly padding (listed in {MANIFEST_FILE})")
        return "; ".join(parts)


def import_photos(
    source: str | Path,
    out: str | Path,
    *,
    format: ImportFormat,
    classes: dict[str, int],
    rule: CropRule | None = None,
    strict: bool = False,
    progress: bool = False,
) -> DataManifest:
    """Import the annotated photos under `source` into the new data folder `out` and return its manifest.

    `rule` is the crop rule (default `CropRule()`: context 2, shift 0.25, 200 px, heads of 14 px and more).
    `classes` maps annotation class names (for YOLO also indices; for `folders` sub-folder names) to labels 1
    (helmet) and 0 (bare head); boxes of other classes are counted as ignored. Problems (unreadable or missing
    images, malformed annotations, boxes outside the photo or of zero size, unknown class ids, empty annotation
    files) are skipped and listed; with `strict` the first one is an `ImportFailed` and nothing is written.
    `ImportFailed` too when `out` exists or cannot be written, or the import yields no crop or a single class.
    Missing parent folders of `out` are created (and removed again when the import fails).
    """
    source, out, rule = Path(source), Path(out), rule or CropRule()
    if not source.exists():
        raise ImportFailed(f"{source}: no such file or folder")
    if out.exists():
        raise ImportFailed(f"{out}: already exists; give a new folder (an import never mixes into old data)")
    problem = output_folder_problem(out, "out")
    if problem:
        raise ImportFailed(problem)
    annotations = _folder_photos(source, classes) if format == "folders" else _annotated(source, format, classes)
    if strict and annotations.problems:
        raise ImportFailed(_strict_message(annotations.problems))
    created = [parent for parent in reversed(out.parents) if not parent.exists()]  # made here, removed on failure
    staging = out.parent / f".{out.name}.importing-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        with _CropWriter(staging, rule.image_size, source) as writer:
            _write_crops(annotations, writer, rule, whole_images=format == "folders", strict=strict, progress=progress)
        manifest = _manifest(source, format, classes, rule, annotations, writer)
        write_json(staging / MANIFEST_FILE, manifest.to_json())
        staging.rename(out)
    except BaseException:
        shutil.rmtree(created[0] if created else staging, ignore_errors=True)
        raise
    return manifest


def _annotated(source: Path, format: str, classes: dict[str, int]) -> Annotations:
    photos = PhotoIndex.of([source.parent if source.is_file() else source])
    return read_annotations(source, format=format, photos=photos, classes=classes)


def _folder_photos(source: Path, classes: dict[str, int]) -> Annotations:
    """`folders`: each sub-folder of `source` named in `classes` holds crops of that class (searched recursively)."""
    result = Annotations()
    folders = sorted(path for path in source.iterdir() if path.is_dir()) if source.is_dir() else []
    for folder in folders:
        files, leaving = image_files(folder)
        for path in leaving:
            result.problem(path, LINK_LEAVES)
        if folder.name not in classes:
            result.ignored_classes[folder.name] += len(files)
            continue
        whole = HeadBox(0, 0, 0, 0, class_name=folder.name, label=classes[folder.name])  # sized when read
        result.photos.extend(AnnotatedPhoto(path=path, annotation=folder, boxes=(whole,)) for path in files)
    missing = sorted(set(classes) - {folder.name for folder in folders})
    for name in missing:
        result.problem(source / name, "no such class folder (named in --classes)")
    return result


def _strict_message(problems: list[Problem]) -> str:
    first = problems[0]
    return f"--strict: {len(problems)} problems in the input, e.g. {first.file}: {first.reason}; nothing was written"


class _CropWriter:
    """Streams BGR crops into `images_proj.npy` (header written last) and labels / provenance rows into CSV files."""

    def __init__(self, folder: Path, size: int, source: Path):
        self.folder, self.size, self.source = folder, size, source
        self.count = 0
        self.labels: Counter[int] = Counter()
        self.per_class: Counter[str] = Counter()
        self.per_folder: Counter[str] = Counter()
        self.photos: set[Path] = set()
        self.seen: set[bytes] = set()
        self.skipped_boxes: Counter[str] = Counter()
        self.skipped_files: Counter[str] = Counter()
        self.mostly_padding: list[PaddedCrop] = []

    def __enter__(self) -> _CropWriter:
        self.images = (self.folder / IMAGES_FILE).open("wb")
        self.images.write(b"\0" * NPY_HEADER_BYTES)
        self.label_file = (self.folder / LABELS_FILE).open("w", newline="")
        self.provenance_file = (self.folder / PROVENANCE_FILE).open("w", newline="")
        self.label_rows, self.provenance_rows = csv.writer(self.label_file), csv.writer(self.provenance_file)
        self.label_rows.writerow([LABEL_COLUMN])
        self.provenance_rows.writerow(PROVENANCE_COLUMNS)
        return self

    def add(
        self, crop_rgb: np.ndarray, photo: AnnotatedPhoto, box_index: int, box: HeadBox, window, padded: float
    ) -> bool:
        """Append one crop (RGB in, stored BGR) cut from `window`, `padded` of it outside the photo; False for an
        exact duplicate of an earlier crop (not written)."""
        crop_bgr = np.ascontiguousarray(crop_rgb[..., ::-1])
        digest = hashlib.sha1(crop_bgr.tobytes()).digest()
        if digest in self.seen:
            return False
        self.seen.add(digest)
        self.images.write(crop_bgr.tobytes())
        relative = _relative(photo.path, self.source)
        self.label_rows.writerow([box.label])
        self.provenance_rows.writerow(
            [self.count, box.label, box.class_name, relative, _relative(photo.annotation, self.source), box_index]
            + [f"{value:g}" for value in (box.x1, box.y1, box.x2, box.y2)]
            + [window.left, window.top, window.side, f"{padded:.3f}"]
        )
        if padded > MOSTLY_PADDING:
            self.mostly_padding.append(
                PaddedCrop(row=self.count, path=relative, box_index=box_index, padded_share=round(padded, 3))
            )
        self.count += 1
        self.labels[int(box.label)] += 1
        self.per_class[box.class_name] += 1
        self.per_folder[str(Path(relative).parent)] += 1
        self.photos.add(photo.path)
        return True

    def __exit__(self, *exc_info) -> None:
        header = _npy_header((self.count, self.size, self.size, 3))
        self.images.seek(0)
        self.images.write(header)
        for handle in (self.images, self.label_file, self.provenance_file):
            handle.close()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 `.npy` header for a C-ordered uint8 array of `shape`, padded to `NPY_HEADER_BYTES`."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
    padding = NPY_HEADER_BYTES - 10 - len(text) - 1
    if padding < 0:
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER_BYTES}-byte header")
    body = (text + " " * padding + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def _relative(path: Path, source: Path) -> str:
    root = source if source.is_dir() else source.parent
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _write_crops(
    annotations: Annotations,
    writer: _CropWriter,
    rule: CropRule,
    *,
    whole_images: bool,
    strict: bool,
    progress: bool,
) -> None:
    """Read the photos one at a time (decoded once, EXIF orientation applied) and write one crop per usable box,
    placed on that decoded photo; problems are added to `annotations`."""
    from tqdm import tqdm

    whole_rule = replace(rule, context=1.0, shift=0.0)  # a crop of its own: padded to a square, resized

    def skip(file: Path, problem: str, counter: Counter, kind: str) -> None:
        annotations.problem(file, problem)
        counter[kind] += 1
        if strict:
            raise ImportFailed(_strict_message(annotations.problems))

    for photo in tqdm(annotations.photos, unit="photo", file=sys.stderr, disable=not progress):
        image, error = read_image_file(photo.path)
        if error:
            skip(photo.path, error, writer.skipped_files, error.split(" (")[0].split(":")[0])
            continue
        boxes, misplaced = photo.boxes_in(image.shape[:2])
        if misplaced:
            skip(photo.annotation, f"{misplaced} ({photo.path.name})", writer.skipped_files, SIZE_DIFFERS)
            continue
        for box_index, box in enumerate(boxes):
            if whole_images:
                box = replace(box, x2=float(image.shape[1]), y2=float(image.shape[0]))
            used = whole_rule if whole_images else rule
            problem = used.box_problem(box, image.shape[:2])
            if problem:
                skip(photo.annotation, f"box {box_index}: {problem}", writer.skipped_boxes, problem.split(" (")[0])
                continue
            small = used.too_small(box)
            window = used.window(box, image.shape[:2])
            if small:
                writer.skipped_boxes[small.split(" (")[0]] += 1
            elif not writer.add(
                used.crop(image, box), photo, box_index, box, window, window.padded_share(image.shape[:2])
            ):
                writer.skipped_boxes["exact duplicate crop"] += 1


def _manifest(source, format, classes, rule, annotations: Annotations, writer: _CropWriter) -> DataManifest:
    if writer.count == 0:
        raise ImportFailed(
            f"{source}: no head crop imported ({len(annotations.photos)} annotated photos; "
            f"{len(annotations.problems)} problems, e.g. {_first(annotations.problems)}; "
            f"ignored classes {dict(annotations.ignored_classes) or 'none'}; --classes {_classes_text(classes)})"
        )
    if len(writer.labels) < 2:
        only = next(iter(writer.labels))
        raise ImportFailed(
            f"{source}: every imported crop has label {only} ({writer.count} crops of "
            f"{', '.join(writer.per_class)}); a data folder needs both helmets (1) and bare heads (0)"
        )
    return DataManifest(
        format="helmetlib-data/1",
        source=str(source.resolve()),
        annotation_format=format,
        classes=classes,
        crop_rule=rule,
        images=writer.count,
        labels={str(label): count for label, count in sorted(writer.labels.items())},
        per_class=dict(writer.per_class),
        per_source_folder=dict(writer.per_folder),
        photos=len(writer.photos),
        ignored_classes=dict(annotations.ignored_classes),
        skipped_boxes=dict(writer.skipped_boxes),
        skipped_files=dict(writer.skipped_files),
        problem_counts=dict(Counter(problem_kind(problem.reason) for problem in annotations.problems)),
        problems=tuple(annotations.problems),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        mostly_padding=tuple(writer.mostly_padding),
        photos_without_boxes=len(annotations.unannotated),
    )


def problem_kind(reason: str) -> str:
    """A problem's kind, without its file, numbers or details: 'box 3: zero-size box (1 2 1 9)' -> 'zero-size box'."""
    kind = re.sub(r"^box \d+: ", "", reason).split(" (")[0].split(":")[0]
    return re.sub(r"\s*\b\d+\b", "", kind).strip()


def _first(problems: list[Problem]) -> str:
    return f"{problems[0].file}: {problems[0].reason}" if problems else "none"


def _classes_text(classes: dict[str, int]) -> str:
    return ",".join(f"{name}={label}" for name, label in classes.items())

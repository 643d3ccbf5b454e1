"""Head boxes as labelling tools export them, as records: an annotated photo (`AnnotatedPhoto`, its boxes as the
annotation wrote them until `boxes_in` places them on the decoded photo, EXIF orientation applied, refusing a photo
whose size differs from the one its annotation declares), what was read (`Annotations`, every `Problem` with its
file and reason), the photos annotations may name (`PhotoIndex`: names that are ambiguous, absolute or climb out of
the folder read are never guessed or opened) and class names mapped to labels (`parse_classes` for `--classes`,
`head_classes` for the names labelling tools use for heads). The readers of each format: `formats`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from helmetlib.core.records import Record, record
from helmetlib.data.photos import HeadBox, image_files, leaves

MAX_YAML_BYTES = 1_000_000  # a data.yaml names classes: a larger one is not one
LINK_LEAVES = "link leads outside the folder read, not opened"
SIZE_DIFFERS = "annotated size differs from the photo"


@record
class Problem(Record):
    """Something wrong in the input, skipped: the file it is in and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class AnnotatedPhoto:
    """A photo and its head boxes as the annotation wrote them (those of the mapped classes).

    `declared_size` is the (width, height) the annotation says the photo has (VOC `<size>`, COCO `width` /
    `height`; None when it says nothing); `normalized` boxes (YOLO) are fractions of the photo's width and height.
    """

    path: Path
    annotation: Path
    boxes: tuple[HeadBox, ...]
    declared_size: tuple[int, int] | None = None
    normalized: bool = False

    def boxes_in(self, photo_size: tuple[int, int]) -> tuple[tuple[HeadBox, ...], str | None]:
        """(the boxes in pixels of the decoded photo of `photo_size` (height, width), None), or ((), why they cannot
        be placed on it): a declared size that differs from the photo's puts every box on the wrong pixels."""
        height, width = photo_size
        if self.declared_size is not None and self.declared_size != (width, height):
            declared = "x".join(map(str, self.declared_size))
            turned = ", the photo before its EXIF orientation" if self.declared_size == (height, width) else ""
            return (), (
                f"{SIZE_DIFFERS}: the annotation says {declared}{turned}, the decoded photo is {width}x{height}; its "
                "boxes would land on the wrong pixels"
            )
        if not self.normalized:
            return self.boxes, None
        return tuple(  # to a thousandth of a pixel: the fractions were written with a few digits
            replace(
                box,
                x1=round(box.x1 * width, 3),
                y1=round(box.y1 * height, 3),
                x2=round(box.x2 * width, 3),
                y2=round(box.y2 * height, 3),
            )
            for box in self.boxes
        ), None


@dataclass
class Annotations:
    """What a set of annotation files holds: the photos with boxes, the problems, the boxes of ignored classes,
    the class mapping applied, and the photos no annotation names."""

    photos: list[AnnotatedPhoto] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored_classes: Counter[str] = field(default_factory=Counter)
    classes: dict[str, int] = field(default_factory=dict)
    unannotated: list[Path] = field(default_factory=list)

    def problem(self, file: Path, reason: str) -> None:
        self.problems.append(Problem(file=str(file), reason=reason))


class UnknownClasses(ValueError):
    """Annotations whose class names do not say which boxes are heads, and no `--classes` mapping was given."""


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


# the names labelling tools and public helmet datasets give heads (label) and other objects (None), compared
# without case, spaces, '-' and '_'
CLASS_WORDS: dict[str, int | None] = {
    **dict.fromkeys(("helmet", "hardhat", "withhelmet", "helmeton", "safetyhelmet", "helmetworn"), 1),
    **dict.fromkeys(("head", "nohelmet", "withouthelmet", "nohardhat", "barehead", "helmetoff"), 0),
    **dict.fromkeys(("person", "people", "vest", "safetyvest", "novest", "nosafetyvest", "mask", "nomask"), None),
}


def _word(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def head_classes(found: set[str]) -> dict[str, int]:
    """The class mapping the names `found` in the annotations mean, when no `--classes` is given: the names of
    heads with and without a helmet (`CLASS_WORDS`), other known objects (`person`) left out. `UnknownClasses`
    listing every name found when one of them is not known (a box of it might be a head, or not)."""
    unknown = sorted(name for name in found if _word(name) not in CLASS_WORDS)
    if unknown:
        raise UnknownClasses(
            f"cannot tell which boxes are heads: the annotations name the classes {', '.join(sorted(found))} "
            f"({', '.join(map(repr, unknown))} unknown); give --classes NAME=1,NAME=0 (e.g. helmet=1,head=0)"
        )
    return {name: CLASS_WORDS[_word(name)] for name in found if CLASS_WORDS[_word(name)] is not None}


class PhotoIndex:
    """Image files by name and by stem, to find the photo an annotation names wherever the export put it — but only
    among the files under the folders (or the files) given, never through a link that leaves them."""

    def __init__(self, files: list[Path], leaving: list[Path] = ()):
        self.files, self.leaving = files, list(leaving)
        self.resolved = {path.resolve(): path for path in files}
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in files:
            self.by_name.setdefault(path.name, []).append(path)
            self.by_stem.setdefault(path.stem, []).append(path)

    @classmethod
    def of(cls, inputs: list[Path]) -> PhotoIndex:
        """The index of image files and folders (searched recursively; links out of a folder are not followed)."""
        files, leaving = [], []
        for path in inputs:
            inside, outside = image_files(path) if path.is_dir() else ([path], [])
            files += inside
            leaving += outside
        return cls(files, leaving)

    def find(self, name: str, *, near: Path, folder: str = "") -> tuple[Path | None, str | None]:
        """(the photo called `name` (a file name or relative path), None) or (None, why not): not found, a name
        that leaves the folder read, or several photos of that name equally close to `near` (the annotation file;
        `folder`, VOC's `<folder>`, breaks ties)."""
        if leaves(name):
            return None, f"image path leaves the folder read (absolute or '..'), not opened: {name}"
        given = self.resolved.get((near.parent / name).resolve())
        if given is not None:
            return given, None
        basename = Path(name.replace("\\", "/")).name
        candidates = self.by_name.get(basename) or self.by_stem.get(Path(basename).stem) or []
        if folder and len(candidates) > 1:
            candidates = [path for path in candidates if path.parent.name == folder] or candidates
        if not candidates:
            return None, f"image not found: {name}"
        closeness = {path: _shared_parts(path, near) for path in candidates}
        best = max(closeness.values())
        closest = [path for path, shared in closeness.items() if shared == best]
        if len(closest) > 1:
            listed = ", ".join(str(path) for path in closest[:3])
            return None, f"ambiguous image name {name}: {len(closest)} photos match ({listed}); not guessed"
        return closest[0], None


def _shared_parts(path: Path, near: Path) -> int:
    """How many leading folders two paths share (train/images/x.png is closer to train/labels/x.txt)."""
    count = 0
    for first, second in zip(path.parent.parts, near.parent.parts, strict=False):
        if first != second:
            break
        count += 1
    return count

"""Photos and head crops: reading image files safely, and the one rule that cuts a head box out of a site photo.

The crop rule is the same everywhere — `helmet-import` cuts training crops with it, `helmet-predict --boxes` and
`helmet-evaluate` cut crops with the rule recorded in the model's card — so a model sees at prediction time what it
saw in training: a square window of `context` × the longer box side, moved down by `shift` box heights so that face
and shoulders show, resized with area interpolation. Where that window leaves the photo, the `inside` rule (the
default) moves it toward the photo until no more than a fifth of it is padding, as in the training crops (never
shrinking it below the head), so that a head at the photo's edge is not cut into a smear of replicated edge
pixels; moving it further puts the head off-centre, unlike any training crop (on the VOC sample that cost more
accuracy than the smear). Each crop's padded share is recorded. Photos are decoded once, with their EXIF
orientation applied, and boxes are read against that image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import model_validator

from helmetlib.core.quiet import native_stderr_filtered
from helmetlib.core.records import Record, record

MAX_PIXELS = 50_000_000  # larger images are refused from their header, before any decoding
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
MOSTLY_PADDING = 0.5  # a crop whose window is more than this share outside its photo is listed
MAX_PADDED_SHARE = 0.2  # the `inside` rule moves a window until at most this share is outside the photo: helmet-dev's
MOVE_STEPS = 64  # training crops skipped windows less than 80 % inside, so a model saw no more padding than that
MAX_CONTEXT = 8.0  # windows of more than 8 box sides would show a scene, not a head (and cost memory)
FAR_BEYOND = 0.5  # a box reaching beyond its photo by more than this share of its longer side is not a head box
EXIF_ORIENTATION = 0x0112  # OpenCV applies it when decoding; 5-8 are quarter turns (width and height swap)
QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class HeadBox:
    """One annotated head in a photo: corners in photo pixels (x to the right, y down), the annotation's class name
    and the label it maps to (None when the annotation names no class, e.g. a CSV of boxes without one)."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_name: str = ""
    label: int | None = None

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def longer_side(self) -> float:
        return max(self.width, self.height)

    def text(self) -> str:
        """`x1 y1 x2 y2` as the prediction table writes it."""
        return " ".join(f"{value:g}" for value in (self.x1, self.y1, self.x2, self.y2))


@dataclass(frozen=True)
class Window:
    """The square a crop is cut from, in photo pixels: its top-left corner and side (may leave the photo)."""

    left: int
    top: int
    side: int

    def padded_share(self, photo_size: tuple[int, int]) -> float:
        """The share of this window that lies outside a photo of `photo_size` (height, width): what a crop of it
        fills with replicated edge pixels."""
        height, width = photo_size
        inside_x = max(0, min(self.left + self.side, width) - max(self.left, 0))
        inside_y = max(0, min(self.top + self.side, height) - max(self.top, 0))
        return 1 - inside_x * inside_y / self.side**2


EdgeRule = Literal["inside", "replicate"]


@record
class CropRule(Record):
    """How a head box becomes a training or prediction crop (recorded in `manifest.json` and in model cards).

    `edge`: `inside` moves a window that leaves the photo toward it until at most `MAX_PADDED_SHARE` of it is
    outside (shrinking it to the photo, never below the head, only when it is larger than the photo); `replicate`
    keeps it centred on the head and replicates the photo's edge pixels where it leaves the photo (helmetlib before
    the `inside` rule: a record without `edge`).
    """

    context: float = 2.0
    shift: float = 0.25
    image_size: int = 200
    min_box: int = 14
    edge: EdgeRule = "inside"

    @model_validator(mode="before")
    @classmethod
    def _records_before_the_edge_rule(cls, data):
        """A stored rule without `edge` (a manifest or card written before it existed) keeps its rule."""
        if isinstance(data, dict) and "edge" not in data:
            return {**data, "edge": "replicate"}
        return data

    def __post_init__(self):
        if not (math.isfinite(self.context) and 1 <= self.context <= MAX_CONTEXT):
            raise ValueError(
                f"context must lie between 1 (the window holds the box) and {MAX_CONTEXT:g}, got {self.context!r}"
            )
        if not (math.isfinite(self.shift) and -1 <= self.shift <= 1):
            raise ValueError(f"shift must lie between -1 and 1 box heights, got {self.shift!r}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(
                f"image_size must lie between 32 and 1024 pixels (what the models accept), got {self.image_size}"
            )
        if self.min_box < 1:
            raise ValueError(f"min_box must be at least 1 pixel, got {self.min_box}")

    def window(self, box: HeadBox, photo_size: tuple[int, int] | None = None) -> Window:
        """The square window of `box`: `context` × its longer side, centred on it, moved down `shift` heights; with
        the `inside` rule and the photo's `photo_size` (height, width), moved to lie inside the photo."""
        side = max(1, _round(self.context * box.longer_side))
        centre_x = (box.x1 + box.x2) / 2
        centre_y = (box.y1 + box.y2) / 2 + self.shift * box.height
        window = Window(left=_round(centre_x - side / 2), top=_round(centre_y - side / 2), side=side)
        if self.edge == "inside" and photo_size is not None:
            return _moved_inside(window, box, photo_size)
        return window

    def too_small(self, box: HeadBox) -> str | None:
        """Why `box` is skipped by the rule (its longer side under `min_box`), or None."""
        if box.longer_side < self.min_box:
            return f"head smaller than --min-box {self.min_box} px ({box.width:g}x{box.height:g})"
        return None

    def box_problem(self, box: HeadBox, photo_size: tuple[int, int]) -> str | None:
        """What is wrong with `box` in a photo of `photo_size` (height, width): no number, no size, not in the
        photo, larger than the photo or reaching far beyond it (a typo such as x = 1e7); None when it can be
        cropped."""
        height, width = photo_size
        if not all(math.isfinite(value) for value in (box.x1, box.y1, box.x2, box.y2)):
            return "box with a non-numeric corner"
        if box.width <= 0 or box.height <= 0:
            return f"zero-size box ({box.text()})"
        if box.x2 <= 0 or box.y2 <= 0 or box.x1 >= width or box.y1 >= height:
            return f"box outside the photo ({box.text()} in {width}x{height})"
        if box.width > width or box.height > height:
            return f"box larger than the photo ({box.text()} in {width}x{height})"
        beyond = max(-box.x1, -box.y1, box.x2 - width, box.y2 - height)
        if beyond > FAR_BEYOND * box.longer_side:
            return f"box reaching far beyond the photo ({box.text()} in {width}x{height})"
        return None

    def crop(self, photo: np.ndarray, box: HeadBox) -> np.ndarray:
        """The crop of `box` from `photo` (H, W, 3), as (image_size, image_size, 3) in the photo's channel order."""
        return square_crop(photo, self.window(box, photo.shape[:2]), self.image_size)


def _moved_inside(window: Window, box: HeadBox, photo_size: tuple[int, int]) -> Window:
    """`window` moved toward the inside of the photo just until at most `MAX_PADDED_SHARE` of it lies outside (as
    in the training crops); one larger than the photo first shrunk to the photo's shorter side, never below the
    head's longer side."""
    height, width = photo_size
    if window.padded_share(photo_size) <= MAX_PADDED_SHARE:
        return window
    side = window.side
    if side > min(height, width):  # shrunk to the photo, centred on the head
        side = max(min(height, width), math.ceil(box.longer_side))
        centre_x, centre_y = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        window = Window(left=_round(centre_x - side / 2), top=_round(centre_y - side / 2), side=side)
    left = min(max(window.left, 0), width - side) if side <= width else window.left
    top = min(max(window.top, 0), height - side) if side <= height else window.top
    for step in range(MOVE_STEPS + 1):  # the padded share falls as the window moves toward the photo
        fraction = step / MOVE_STEPS
        moved = Window(
            left=_round(window.left + fraction * (left - window.left)),
            top=_round(window.top + fraction * (top - window.top)),
            side=side,
        )
        if moved.padded_share(photo_size) <= MAX_PADDED_SHARE:
            return moved
    return moved


def _round(value: float) -> int:
    """Half away from zero after removing float noise (a YOLO box decoded to 99.99999 is the 100 it was)."""
    value = round(value, 6)
    return int(math.floor(value + 0.5))


def square_crop(photo: np.ndarray, window: Window, size: int) -> np.ndarray:
    """The `window` of `photo` (H, W, 3), edges replicated where it leaves the photo, resized to `size` × `size`."""
    height, width = photo.shape[:2]
    left, top, right, bottom = window.left, window.top, window.left + window.side, window.top + window.side
    inside = photo[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    padded = cv2.copyMakeBorder(
        inside,
        max(-top, 0),
        max(bottom - height, 0),
        max(-left, 0),
        max(right - width, 0),
        cv2.BORDER_REPLICATE,
    )
    if padded.shape[:2] == (size, size):
        return np.ascontiguousarray(padded)
    return cv2.resize(padded, (size, size), interpolation=cv2.INTER_AREA)


def fit_to_input(image_rgb: np.ndarray, size: tuple[int, int], *, pad: bool = False) -> np.ndarray:
    """Resize to the model's input; with `pad`, keep the aspect ratio by replicating edges to a square first."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or 0 in image_rgb.shape:
        raise ValueError(f"not an RGB image (shape {image_rgb.shape})")
    if pad:
        height, width = image_rgb.shape[:2]
        side = max(height, width)
        window = Window(left=-((side - width) // 2), top=-((side - height) // 2), side=side)
        image_rgb = square_crop(image_rgb, window, side)
    if image_rgb.shape[:2] == size:
        return image_rgb
    return cv2.resize(image_rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def read_image_file(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """(RGB uint8 image (H, W, 3), None) or (None, why it cannot be read): missing, empty, too large (from the
    header, without decoding), truncated or partly decoded, or not an image."""
    if not path.is_file():
        return None, "file not found"
    if path.stat().st_size == 0:
        return None, "empty file"
    size = header_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        return None, f"image too large: {size[0]}x{size[1]} pixels (limit {max_pixels:,}; see --max-pixels)"
    if size is not None:
        problem = _incomplete_decoding(path)
        if problem:
            return None, f"truncated or partly decoded image ({problem})"
    try:
        with native_stderr_filtered():  # OpenCV and libpng complain about broken files on stderr; the row says it
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, grayscale expanded to 3 channels
    except cv2.error as error:
        return None, f"unreadable image ({str(error).strip().splitlines()[-1]})"
    if image is None or image.size == 0:
        kind = "corrupt image" if path.suffix.lower() in IMAGE_SUFFIXES else "not an image"
        return None, f"{kind}: OpenCV cannot decode it"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None


def header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding its pixels, with its EXIF orientation applied (as
    `read_image_file` decodes it: a quarter turn swaps them), or None when Pillow cannot tell."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies, from the header alone
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                turned = image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS
            except Exception:  # damaged metadata: the decoder's check says what is wrong
                turned = False
            return (height, width) if turned else (width, height)
    except Exception:  # not an image Pillow knows: OpenCV decides below
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _incomplete_decoding(path: Path) -> str | None:
    """The decoder's complaint when an image file that Pillow recognises does not decode completely (a truncated
    JPEG, whose missing part OpenCV would fill with grey after a warning), else None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for broken data
        return str(error) or type(error).__name__
    return None


def files_under(folder: Path, suffixes: set[str] | tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(files under `folder` with one of `suffixes`, searched recursively and sorted; the paths among them that lead
    outside `folder` through a link, never to be read)."""
    root = folder.resolve()
    inside, leaving = [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        (inside if path.resolve().is_relative_to(root) else leaving).append(path)
    return inside, leaving


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files under `folder`, by suffix, recursively and sorted; those that link outside it)."""
    return files_under(folder, IMAGE_SUFFIXES)


def leaves(name: str) -> bool:
    """True when a file name written in an annotation is absolute or climbs out of its folder (`..`): such a name
    is never opened, whether or not the file exists."""
    text = name.replace("\\", "/")
    return text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in Path(text).parts

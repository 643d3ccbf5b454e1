"""Photos and head crops: reading image files safely, and the one rule that cuts a head box out of a site photo.

The crop rule is the same everywhere — `helmet-import` cuts training crops with it, `helmet-predict --boxes` cuts
prediction crops with the rule recorded in the model's card — so a model sees at prediction time what it saw in
training: a square window of `context` × the longer box side, moved down by `shift` box heights so that face and
shoulders show, padded by edge replication where it leaves the photo, resized with area interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from helmetlib.quiet import native_stderr_filtered
from helmetlib.records import Record, RecordError, read_json, record

MAX_PIXELS = 50_000_000  # larger images are refused from their header, before any decoding
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


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

    def text(self) -> str:
        """`x1 y1 x2 y2` as the prediction table writes it."""
        return " ".join(f"{value:g}" for value in (self.x1, self.y1, self.x2, self.y2))


@dataclass(frozen=True)
class Window:
    """The square a crop is cut from, in photo pixels: its top-left corner and side (may leave the photo)."""

    left: int
    top: int
    side: int


@record
class CropRule(Record):
    """How a head box becomes a training or prediction crop (recorded in `manifest.json` and in model cards)."""

    context: float = 2.0
    shift: float = 0.25
    image_size: int = 200
    min_box: int = 14

    def __post_init__(self):
        if not (math.isfinite(self.context) and self.context >= 1):
            raise ValueError(f"context must be at least 1 (the window holds the box), got {self.context!r}")
        if not (math.isfinite(self.shift) and -1 <= self.shift <= 1):
            raise ValueError(f"shift must lie between -1 and 1 box heights, got {self.shift!r}")
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must lie between 16 and 1024 pixels, got {self.image_size}")
        if self.min_box < 1:
            raise ValueError(f"min_box must be at least 1 pixel, got {self.min_box}")

    def window(self, box: HeadBox) -> Window:
        """The square window of `box`: `context` × its longer side, centred on it, moved down `shift` heights."""
        side = max(1, _round(self.context * max(box.width, box.height)))
        centre_x = (box.x1 + box.x2) / 2
        centre_y = (box.y1 + box.y2) / 2 + self.shift * box.height
        return Window(left=_round(centre_x - side / 2), top=_round(centre_y - side / 2), side=side)

    def too_small(self, box: HeadBox) -> str | None:
        """Why `box` is skipped by the rule (its longer side under `min_box`), or None."""
        if max(box.width, box.height) < self.min_box:
            return f"head smaller than --min-box {self.min_box} px ({box.width:g}x{box.height:g})"
        return None

    def box_problem(self, box: HeadBox, photo_size: tuple[int, int]) -> str | None:
        """What is wrong with `box` in a photo of `photo_size` (height, width): no number, no size, not in the
        photo; None when it can be cropped (a box partly outside is cropped with the photo's edges replicated)."""
        height, width = photo_size
        if not all(math.isfinite(value) for value in (box.x1, box.y1, box.x2, box.y2)):
            return "box with a non-numeric corner"
        if box.width <= 0 or box.height <= 0:
            return f"zero-size box ({box.text()})"
        if box.x2 <= 0 or box.y2 <= 0 or box.x1 >= width or box.y1 >= height:
            return f"box outside the photo ({box.text()} in {width}x{height})"
        return None

    def crop(self, photo: np.ndarray, box: HeadBox) -> np.ndarray:
        """The crop of `box` from `photo` (H, W, 3), as (image_size, image_size, 3) in the photo's channel order."""
        window = self.window(box)
        return square_crop(photo, window, self.image_size)


def crop_rule_of(data_dir: str | Path) -> CropRule | None:
    """The crop rule recorded in a data folder's `manifest.json` by `helmet-import`; None when there is no
    manifest or it records no crop rule (another tool's). `DatasetError` naming the file and key when the manifest
    is not JSON or its crop rule is malformed: prediction must never cut crops another way without a word."""
    from helmetlib.data import MANIFEST_FILE, DatasetError

    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
        rule = manifest.get("crop_rule") if isinstance(manifest, dict) else None
        return CropRule.from_json(rule, source=path) if rule is not None else None
    except RecordError as error:
        raise DatasetError(str(error)) from None


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
    """(width, height) from the file's header without decoding its pixels, or None when Pillow cannot tell."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit applies, from the header alone
    try:
        with Image.open(path) as image:
            return image.size
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


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, by suffix), sorted."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


HELMET_RGB, BARE_HEAD_RGB, NOT_JUDGED_RGB = (0, 170, 0), (230, 0, 0), (150, 150, 150)


def draw_predictions(table, out_dir: str | Path, *, max_pixels: int = MAX_PIXELS) -> Path:
    """Draw each photo of a `predict_photos` table with its boxes (green: helmet, red: bare head, grey: no answer;
    each with P(helmet)) and a banner counting its heads, into `out_dir`; write `summary.csv` there (one row per
    photo: heads, bare heads, helmets, not judged, drawn file) and return its path."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    boxed = table[table["box"].notna()]
    summary, used_names = [], set()
    for source, rows in boxed.groupby("source", sort=False):
        image, error = read_image_file(Path(source), max_pixels)
        if error:
            continue
        drawn = _drawn(image, rows)
        name = Path(source).stem + ".png"
        if name in used_names:  # photos of the same name in different folders
            name = f"{Path(source).parent.name}_{name}"
        used_names.add(name)
        cv2.imwrite(str(out_dir / name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        judged = rows["label"].notna()
        summary.append(
            {
                "photo": source,
                "heads": len(rows),
                "bare_heads": int((rows["label"][judged] == 0).sum()),
                "helmets": int((rows["label"][judged] == 1).sum()),
                "not_judged": int((~judged).sum()),
                "drawn": name,
            }
        )
    summary_file = out_dir / "summary.csv"
    pd.DataFrame(summary, columns=["photo", "heads", "bare_heads", "helmets", "not_judged", "drawn"]).to_csv(
        summary_file, index=False
    )
    return summary_file


def _drawn(image_rgb: np.ndarray, rows) -> np.ndarray:
    """A copy of the photo with each row's box and answer, and a banner with the counts."""
    import pandas as pd

    canvas = np.ascontiguousarray(image_rgb.copy())
    scale = max(image_rgb.shape[:2]) / 800
    thickness, font_scale = max(1, round(2 * scale)), max(0.35, 0.5 * scale)
    for row in rows.itertuples(index=False):
        x1, y1, x2, y2 = (int(round(float(value))) for value in row.box.split())
        if pd.isna(row.label):
            colour, text = NOT_JUDGED_RGB, "?"
        else:
            colour = HELMET_RGB if int(row.label) == 1 else BARE_HEAD_RGB
            text = f"{'helmet' if int(row.label) == 1 else 'bare'} {row.probability:.2f}"
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        cv2.putText(canvas, text, (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness)
    judged = rows["label"].dropna().astype(int)
    banner = f"{len(rows)} heads: {int((judged == 0).sum())} bare, {int((judged == 1).sum())} helmet"
    if len(judged) < len(rows):
        banner += f", {len(rows) - len(judged)} not judged"
    height = int(22 * max(scale, 1))
    canvas = cv2.copyMakeBorder(canvas, height, 0, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(canvas, banner, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness)
    return canvas

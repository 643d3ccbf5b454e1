"""Drawn photos for a safety officer: each head box of `predict_photos` with its answer, readable at a glance.

Every photo is drawn at least `MIN_DRAWN_SIDE` pixels wide (small exports are enlarged, so that thin boxes and text
stay sharp), with labels in a real font sized to the photo (`LABEL_SHARE` of its longer side, at least 12 photo
pixels), placed where they neither overlap each other nor leave the image, joined to their box by a line when
they had to move. A head whose answer differs from its annotation gets a dashed magenta frame and a "≠" in its
label. A banner counts what the summary table counts, from the same rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helmetlib.data.photos import MAX_PIXELS, read_image_file

HELMET_RGB, BARE_HEAD_RGB, NOT_JUDGED_RGB, DIFFERS_RGB = (0, 150, 0), (220, 0, 0), (110, 110, 110), (230, 0, 230)
MIN_DRAWN_SIDE = 800  # pixels: a 416 px export is drawn twice as large
LABEL_SHARE = 0.03  # label text height as a share of the photo's longer side
MIN_LABEL_PX = 12  # ... and never under 12 photo pixels
LABEL_GAP = 3  # drawing pixels kept free between two labels
SUMMARY_COLUMNS = ["photo", "heads", "bare_heads", "helmets", "not_judged", "differ_from_annotation", "drawn"]


@dataclass(frozen=True)
class Counts:
    """What one photo's rows say: heads, bare heads, helmets, heads not judged, answers that differ from the
    annotation (the banner and `summary.csv` both show these)."""

    heads: int
    bare_heads: int
    helmets: int
    not_judged: int
    differ: int

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Counts:
        judged = rows["label"].notna()
        labels = rows.loc[judged, "label"].astype(int)
        return cls(
            heads=len(rows),
            bare_heads=int((labels == 0).sum()),
            helmets=int((labels == 1).sum()),
            not_judged=int((~judged).sum()),
            differ=int(_differs(rows).sum()),
        )

    def banner(self) -> str:
        text = f"{self.heads} heads: {self.bare_heads} bare, {self.helmets} helmet"
        if self.not_judged:
            text += f", {self.not_judged} not judged"
        if self.differ:
            text += f"  |  ≠ {self.differ} differ from the annotation"
        return text


def _differs(rows: pd.DataFrame) -> pd.Series:
    """Rows whose answer differs from the annotated label (both known)."""
    known = rows["label"].notna() & rows["annotated_label"].notna()
    return known & (rows["label"].fillna(-1).astype(int) != rows["annotated_label"].fillna(-1).astype(int))


def drawn_names(sources: list[str]) -> dict[str, str]:
    """A distinct file name for each photo: its path below the photos' common folder, folders joined by `__`
    (`site-a/x.png` and `site-b/x.png` -> `site-a__x.png`, `site-b__x.png`), always `.png`."""
    resolved = {source: Path(source).resolve() for source in sources}
    root = Path(os.path.commonpath([path.parent for path in resolved.values()])) if resolved else Path()
    names = {}
    for source, path in resolved.items():
        relative = path.relative_to(root).with_suffix("")
        names[source] = "__".join(relative.parts) + ".png"
    return names


def draw_predictions(table: pd.DataFrame, out_dir: str | Path, *, max_pixels: int = MAX_PIXELS) -> Path:
    """Draw each photo of a `predict_photos` table with its boxes (green: helmet, red: bare head, grey: no answer;
    each with P(helmet); magenta dashes: the answer differs from the annotation) and a banner counting its heads,
    into `out_dir`; write `summary.csv` there (one row per photo: `SUMMARY_COLUMNS`) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    boxed = table[table["box"].notna()]
    names = drawn_names(list(dict.fromkeys(boxed["source"])))
    summary = []
    for source, rows in boxed.groupby("source", sort=False):
        image, error = read_image_file(Path(source), max_pixels)
        if error:
            continue
        counts = Counts.of(rows)
        draw_photo(image, rows, counts).save(out_dir / names[source])
        summary.append([source, counts.heads, counts.bare_heads, counts.helmets, counts.not_judged, counts.differ])
        summary[-1].append(names[source])
    summary_file = out_dir / "summary.csv"
    pd.DataFrame(summary, columns=SUMMARY_COLUMNS).to_csv(summary_file, index=False)
    return summary_file


def label_font(photo_size: tuple[int, int], scale: float):
    """The labels' font (DejaVu Sans Bold, which matplotlib ships) for a photo of `photo_size` drawn `scale` times
    enlarged."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), round(label_pixels(photo_size) * scale))


def label_pixels(photo_size: tuple[int, int]) -> int:
    """The label text height in photo pixels for a photo of `photo_size` (height, width)."""
    return max(MIN_LABEL_PX, round(LABEL_SHARE * max(photo_size)))


@dataclass(frozen=True)
class Label:
    """A drawn head: its box and its label's rectangle on the drawing (x1, y1, x2, y2), the label's text and colour,
    and whether the answer differs from the annotation."""

    box: tuple[int, int, int, int]
    rect: tuple[int, int, int, int]
    text: str
    colour: tuple[int, int, int]
    differs: bool


def layout(rows: pd.DataFrame, photo_size: tuple[int, int], font, scale: float) -> list[Label]:
    """Where each row's box and label go on the drawing (the photo enlarged `scale` times), top to bottom: every
    label inside the drawing, clear of the labels before it (and of other boxes where it can)."""
    from PIL import Image, ImageDraw

    height, width = photo_size
    size = (round(width * scale), round(height * scale))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    differs = _differs(rows).to_numpy()
    order = np.argsort([float(box.split()[1]) for box in rows["box"]], kind="stable")
    boxes = [tuple(round(float(value) * scale) for value in rows["box"].iloc[i].split()) for i in order]
    labels: list[Label] = []
    for i, box in zip(order, boxes, strict=True):
        colour, text = _label(rows.iloc[i], bool(differs[i]))
        rect = _place(measure, font, text, box, [label.rect for label in labels], size, obstacles=boxes)
        labels.append(Label(box=box, rect=rect, text=text, colour=colour, differs=bool(differs[i])))
    return labels


def draw_photo(image_rgb: np.ndarray, rows: pd.DataFrame, counts: Counts):
    """The photo (H, W, 3) with its rows' boxes and answers under a banner, as a PIL image."""
    from PIL import Image, ImageDraw

    height, width = image_rgb.shape[:2]
    scale = max(1.0, MIN_DRAWN_SIDE / max(height, width))
    font = label_font((height, width), scale)
    photo = Image.fromarray(image_rgb).resize((round(width * scale), round(height * scale)), Image.LANCZOS)
    canvas = ImageDraw.Draw(photo)
    line = max(2, round(2 * scale))
    for label in layout(rows, (height, width), font, scale):
        canvas.rectangle(label.box, outline=label.colour, width=line)
        if label.differs:
            _dashed_rectangle(canvas, _grown(label.box, line * 2), DIFFERS_RGB, line)
        canvas.rectangle(label.rect, fill=label.colour)
        canvas.text((label.rect[0] + line, label.rect[1]), label.text, font=font, fill=(255, 255, 255))
        if not _touches(label.rect, label.box):
            canvas.line(
                [_nearest(label.rect, label.box), _nearest(label.box, label.rect)], fill=label.colour, width=line
            )
    return _with_banner(photo, counts.banner(), font, line)


def _label(row, differs: bool) -> tuple[tuple[int, int, int], str]:
    if pd.isna(row["label"]):
        reason = str(row["error"]).split(" (")[0] if pd.notna(row["error"]) else "no answer"
        return NOT_JUDGED_RGB, f"? {reason[:28]}"
    label = int(row["label"])
    text = f"{'helmet' if label == 1 else 'BARE'} {row['probability']:.2f}"
    if differs:
        text += f" ≠ annotated {'helmet' if int(row['annotated_label']) == 1 else 'bare'}"
    return (HELMET_RGB if label == 1 else BARE_HEAD_RGB), text


def _place(canvas, font, text, box, placed, size, *, obstacles) -> tuple[int, int, int, int]:
    """Where the label of `box` goes: above it, below it, or nearby, inside the image and clear of the labels
    already placed (and, where it can, of other boxes); the least crowded spot when none is clear."""
    left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
    pad = max(2, (bottom - top) // 6)
    label_width, label_height = right - left + 2 * pad, bottom + pad
    width, height = size
    step = label_height // 2 + 1
    candidates = []
    for dy in range(0, height, step):
        for y in (box[1] - label_height - dy, box[3] + dy):
            for x in (box[0], box[2] - label_width, box[0] - label_width // 2):
                x, y = min(max(x, 0), width - label_width), min(max(y, 0), height - label_height)
                candidates.append((x, y, x + label_width, y + label_height))
        if dy > 6 * label_height:
            break

    def crowding(rect) -> tuple[int, int]:
        labels = sum(_overlap(_grown(rect, LABEL_GAP), other) for other in placed)
        others = sum(_overlap(rect, other) for other in obstacles if other != box)
        return labels, others

    return min(candidates, key=lambda rect: (crowding(rect), abs(rect[1] - box[1])))


def _overlap(first, second) -> int:
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    return max(0, width) * max(0, height)


def _touches(label, box) -> bool:
    return _overlap(_grown(label, 2), _grown(box, 2)) > 0


def _grown(rect, by: int):
    return rect[0] - by, rect[1] - by, rect[2] + by, rect[3] + by


def _nearest(rect, other) -> tuple[int, int]:
    """The point of `rect` nearest to the centre of `other`."""
    centre_x, centre_y = (other[0] + other[2]) / 2, (other[1] + other[3]) / 2
    return round(min(max(centre_x, rect[0]), rect[2])), round(min(max(centre_y, rect[1]), rect[3]))


def _dashed_rectangle(canvas, rect, colour, width: int) -> None:
    dash = 4 * width
    x1, y1, x2, y2 = rect
    for start, stop, fixed, horizontal in (
        (x1, x2, y1, True),
        (x1, x2, y2, True),
        (y1, y2, x1, False),
        (y1, y2, x2, False),
    ):
        for position in range(start, stop, 2 * dash):
            end = min(position + dash, stop)
            points = [(position, fixed), (end, fixed)] if horizontal else [(fixed, position), (fixed, end)]
            canvas.line(points, fill=colour, width=width)


def _with_banner(photo, text: str, font, line: int):
    """The photo under a white band holding `text`, wrapped to the photo's width."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(photo)
    lines, words = [], text.split(" ")
    for word in words:
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and measure.textlength(candidate, font=font) <= photo.width - 4 * line:
            lines[-1] = candidate
        else:
            lines.append(word)
    _, top, _, bottom = measure.textbbox((0, 0), "Hg", font=font)
    step = bottom + line
    band = step * len(lines) + 3 * line
    framed = Image.new("RGB", (photo.width, photo.height + band), (255, 255, 255))
    framed.paste(photo, (0, band))
    for number, words_on_line in enumerate(lines):
        ImageDraw.Draw(framed).text((2 * line, 2 * line + number * step - top // 2), words_on_line, font=font, fill=0)
    return framed

"""Load and validate the helmet dataset (`images_proj.npy` + `Labels_proj.csv`) and make a synthetic demo set.

Images are read from the file only where indexed (`RowFile`: slices memory-mapped window by window, scattered rows
by positioned reads), never whole: a dataset larger than memory (or than the address space a process may map) loads
in constant memory, and every consumer reads it batch by batch (`batches`).
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helmetlib.core.preprocess import to_rgb
from helmetlib.core.records import RecordError, read_json
from helmetlib.data.photos import CropRule

IMAGES_FILE = "images_proj.npy"
LABELS_FILE = "Labels_proj.csv"
LABEL_COLUMN = "Label"
PROVENANCE_FILE = "provenance.csv"  # optional: one row per image, its `path` column the source photo (the group)
MANIFEST_FILE = "manifest.json"  # optional: what made the folder (`helmet-import` records its crop rule there)
IMAGE_SIZE = (200, 200)
CLASS_NAMES = ("no helmet", "helmet")  # index = label
BATCH = 256  # images per chunk when streaming through a dataset


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the problem."""


class RowFile:
    """A read-only (N, ...) array in a `.npy` file, read only where indexed.

    Indexing with an int, a slice or an index array returns a NumPy array of just those rows: a slice is
    memory-mapped over its rows and unmapped at once, scattered rows are gathered with positioned reads, so neither
    memory nor address space ever holds the whole file. `subset(indices)` gives a lazy view of some rows;
    `np.asarray(rows)` reads everything.
    """

    def __init__(
        self, path: Path, shape: tuple[int, ...], offset: int, dtype: np.dtype, rows: np.ndarray | None = None
    ):
        self.path, self.offset, self.rows = Path(path), offset, rows
        self.file_shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.shape = (len(rows) if rows is not None else shape[0], *shape[1:])
        self.ndim = len(shape)
        self.row_bytes = math.prod(shape[1:]) * self.dtype.itemsize

    @classmethod
    def open(cls, path: str | Path) -> RowFile:
        """The rows of a C-ordered, non-object `.npy` file (its header read, its data not)."""
        path = Path(path)
        with path.open("rb") as f:
            shape, fortran_order, dtype = _read_npy_header(f)
            offset = f.tell()
        if fortran_order or dtype.hasobject:
            raise ValueError(f"{path}: only C-ordered arrays of plain values can be read by rows")
        if path.stat().st_size < offset + math.prod(shape) * dtype.itemsize:
            raise ValueError(f"{path}: truncated (shorter than its header announces)")
        return cls(path, shape, offset, dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name}, shape={self.shape})"

    def subset(self, indices: np.ndarray) -> RowFile:
        """A lazy view of the rows `indices` (k,), read only when indexed."""
        rows = np.asarray(indices, dtype=np.int64)
        view = copy.copy(self)
        view.rows = rows if self.rows is None else self.rows[rows]
        view.shape = (len(rows), *self.file_shape[1:])
        return view

    def _converted(self, rows: np.ndarray) -> np.ndarray:
        """Rows read from the file (a mapping is copied into memory), as this view presents them."""
        return np.array(rows) if isinstance(rows, np.memmap) else rows

    def _read_file_rows(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.file_shape[1:]), self.dtype)
        window = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r",
            offset=self.offset + start * self.row_bytes,
            shape=(stop - start, *self.file_shape[1:]),
        )
        rows = self._converted(window)
        del window
        return rows

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        """The file's rows `file_rows` (in that order), gathered with one positioned read per run of consecutive
        rows: mapping a window per run costs ~4x more for scattered rows (a shuffled training batch)."""
        ordered_rows = np.empty((len(file_rows), *self.file_shape[1:]), self.dtype)
        order = np.argsort(file_rows, kind="stable")
        ordered = file_rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        with self.path.open("rb", buffering=0) as f:
            position = 0
            for run in np.split(ordered, breaks) if len(ordered) else []:
                start, count = int(run[0]), int(run[-1]) - int(run[0]) + 1
                target = memoryview(ordered_rows[position : position + count]).cast("B")
                done = 0
                while done < len(target):  # the kernel may return less than asked (reads above 2 GB)
                    read = os.preadv(f.fileno(), [target[done:]], self.offset + start * self.row_bytes + done)
                    if read == 0:
                        raise EOFError(f"{self.path}: ends before row {start + count}")
                    done += read
                position += count
        rows = np.empty_like(ordered_rows)
        rows[order] = ordered_rows
        return self._converted(rows)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        single = isinstance(key, int | np.integer)
        if single:
            rows = self[np.array([int(key) % len(self)])][0]
        elif isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if self.rows is None and step == 1:
                rows = self._read_file_rows(start, stop)
            else:
                rows = self[np.arange(start, stop, step)]
        else:
            positions = np.asarray(key)
            if positions.dtype == bool:
                positions = np.flatnonzero(positions)
            positions = positions.astype(np.int64) % max(len(self), 1)
            rows = self._read(positions if self.rows is None else self.rows[positions])
        if not rest:
            return rows
        return rows[rest] if single else rows[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        rows = self[:]
        return rows.astype(dtype) if dtype is not None else rows


class ImageArray(RowFile):
    """A read-only (N, H, W, 3) uint8 RGB view of a BGR `.npy` file, read only where indexed (see `RowFile`)."""

    def __init__(self, path: Path, shape: tuple[int, ...], offset: int, rows: np.ndarray | None = None):
        super().__init__(path, shape, offset, np.uint8, rows)

    def _converted(self, rows: np.ndarray) -> np.ndarray:
        return np.array(rows[..., ::-1])  # BGR file -> RGB copy


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (N, H, W, 3) uint8 in RGB order, labels (N,) int64 of 0/1, with where they came from.

    For a loaded dataset `images` is an `ImageArray`: the file seen in RGB order, read only where indexed (by
    batches, slices or index arrays); `np.asarray(dataset.images)` reads everything.
    """

    images: np.ndarray
    labels: np.ndarray
    images_path: Path | None
    labels_path: Path | None
    content_hash: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_counts(self) -> dict[int, int]:
        """Number of images per label."""
        return {label: int((self.labels == label).sum()) for label in (0, 1)}


def select_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The rows (k, ...) of `array` at `indices` (k,): a lazy view of a `RowFile` (a loaded dataset's images,
    cached features), read batch by batch where used; an in-memory copy of an in-memory array."""
    return array.subset(indices) if isinstance(array, RowFile) else array[indices]


def batches(images: np.ndarray, size: int = BATCH) -> Iterator[np.ndarray]:
    """Consecutive contiguous in-memory batches of at most `size` images of a (possibly memory-mapped) array."""
    for start in range(0, len(images), size):
        yield np.ascontiguousarray(images[start : start + size])


def content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """Short sha256 of the images' and labels' values, shape and dtype (identifies a dataset in run metadata).

    Computed chunk by chunk, so a memory-mapped dataset is never read whole.
    """
    digest = hashlib.sha256()
    digest.update(f"{images.shape}{images.dtype}".encode())
    for chunk in batches(images):
        digest.update(chunk.tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def load_dataset(
    path: str | Path,
    labels_path: str | Path | None = None,
    *,
    image_size: tuple[int, int] | None = IMAGE_SIZE,
) -> Dataset:
    """Load a folder holding `images_proj.npy` + `Labels_proj.csv` (or the two files), validated, images in RGB.

    `image_size=None` accepts any height and width (small test sets); otherwise the images must be that size.
    Raises `DatasetError` naming the file and the problem for every bad input.
    """
    path = Path(path)
    if labels_path is None:
        if not path.is_dir():
            raise DatasetError(f"{path}: no such data folder (expected a folder with {IMAGES_FILE} and {LABELS_FILE})")
        images_path, labels_path = path / IMAGES_FILE, path / LABELS_FILE
    else:
        images_path, labels_path = path, Path(labels_path)

    images_bgr = read_image_array(images_path, image_size)
    labels = _read_labels(labels_path)
    if len(labels) != len(images_bgr):
        raise DatasetError(
            f"{labels_path}: {len(labels)} labels but {images_path} holds {len(images_bgr)} images; "
            "they must match row for row"
        )
    images = images_bgr  # an ImageArray: RGB, read window by window
    return Dataset(
        images=images,
        labels=labels,
        images_path=images_path.resolve(),
        labels_path=labels_path.resolve(),
        content_hash=content_hash(images, labels),
    )


def read_image_array(path: Path, image_size: tuple[int, int] | None) -> ImageArray:
    """Check a BGR uint8 image file (N, H, W, 3) from its header and give its RGB `ImageArray`, never unpickling.

    `DatasetError` naming the file for a bad header, a size that does not fit the file, wrong shape or dtype.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    if path.suffix != ".npy":
        raise DatasetError(f"{path}: not a .npy file (expected {IMAGES_FILE})")
    with path.open("rb") as f:
        try:
            shape, fortran_order, dtype = _read_npy_header(f)
        except (ValueError, EOFError) as error:
            raise DatasetError(f"{path}: not a valid .npy file ({error})") from None
        header_size = f.tell()
    if dtype.hasobject:
        raise DatasetError(f"{path}: holds a pickled object array; only plain uint8 arrays are accepted")
    expected_bytes = header_size + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    actual_bytes = path.stat().st_size
    if actual_bytes < expected_bytes:
        raise DatasetError(f"{path}: truncated file ({actual_bytes} bytes, its header announces {expected_bytes})")
    if len(shape) != 4:
        raise DatasetError(f"{path}: expected 4 dimensions (N, height, width, 3), got shape {shape}")
    if shape[-1] != 3:
        raise DatasetError(f"{path}: expected 3 colour channels (BGR) in the last axis, got shape {shape}")
    if image_size is not None and tuple(shape[1:3]) != tuple(image_size):
        raise DatasetError(f"{path}: expected images of {image_size[0]}x{image_size[1]} pixels, got shape {shape}")
    if dtype != np.uint8:
        raise DatasetError(f"{path}: expected dtype uint8, got {dtype}")
    if shape[0] == 0:
        raise DatasetError(f"{path}: empty dataset (0 images)")
    if 0 in shape[1:3]:
        raise DatasetError(f"{path}: images of zero size, got shape {shape}")
    if fortran_order:
        raise DatasetError(f"{path}: Fortran-ordered array; save it in C order (np.save of a normal array)")
    return ImageArray(path, shape, header_size)


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from an open `.npy` file, which is left at the start of the data."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(f)


def _read_labels(path: Path) -> np.ndarray:
    """Read and check the 0/1 label column; a blank or non-numeric line anywhere is an error naming its number."""
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")  # blank lines at the very end shift nothing
        frame = pd.read_csv(io.StringIO(text), skip_blank_lines=False, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable CSV file ({error})") from None
    if LABEL_COLUMN not in frame.columns:
        raise DatasetError(f"{path}: no '{LABEL_COLUMN}' column (columns: {list(frame.columns)})")
    column = frame[LABEL_COLUMN].str.strip()
    if len(column) == 0:
        raise DatasetError(f"{path}: empty dataset (no labels)")
    blank = column == ""
    if blank.any():
        lines = [row + 2 for row in np.flatnonzero(blank)[:5]]  # line 1 is the header
        raise DatasetError(
            f"{path}: blank label on line {', '.join(map(str, lines))}; every line after the header must hold 0 or 1 "
            "(a blank line would shift every later label by one row)"
        )
    bad = ~pd.to_numeric(column, errors="coerce").isin([0, 1])
    if bad.any():
        examples = [f"line {row + 2}: {column.iloc[row]!r}" for row in np.flatnonzero(bad)[:5]]
        raise DatasetError(f"{path}: labels must be 0 or 1; {int(bad.sum())} rows are not (e.g. {', '.join(examples)})")
    labels = pd.to_numeric(column).to_numpy(dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise DatasetError(f"{path}: only one class present (all labels are {labels[0]}); need both 0 and 1")
    return labels


def crop_rule_of(data_dir: str | Path) -> CropRule | None:
    """The crop rule recorded in a data folder's `manifest.json` by `helmet-import`; None when there is no
    manifest or it records no crop rule (another tool's). `DatasetError` naming the file and key when the manifest
    is not JSON or its crop rule is malformed: prediction must never cut crops another way without a word."""
    path = Path(data_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = read_json(path)
        rule = manifest.get("crop_rule") if isinstance(manifest, dict) else None
        return CropRule.from_json(rule, source=path) if rule is not None else None
    except RecordError as error:
        raise DatasetError(str(error)) from None


WINDOW_COLUMNS = ("window_side", "crop_side_px")  # helmet-import's provenance, helmet-dev's


def window_sides(data_dir: str | Path) -> np.ndarray | None:
    """The native side in pixels of the window each image was cut from (N,), from the folder's `provenance.csv`
    (`helmet-import` records it, and so does helmet-dev); None when the folder does not record it."""
    path = Path(data_dir) / PROVENANCE_FILE if data_dir else None
    if path is None or not path.is_file():
        return None
    try:
        provenance = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable CSV file ({error})") from None
    column = next((name for name in WINDOW_COLUMNS if name in provenance.columns), None)
    if column is None:
        return None
    sides = pd.to_numeric(provenance[column], errors="coerce").to_numpy(float)
    return sides if np.isfinite(sides).all() and (sides > 0).all() else None


def load_run_data(data_dir: str | Path, *, demo_size: int = 160, image_size: int = 0) -> Dataset:
    """A run's data: the validated set in `data_dir` (the synthetic demo set when empty), resized to
    `image_size` x `image_size` when that is not 0 (chunk by chunk; the hash still names the source files).

    The images must be 200 x 200, the study's format, or the size `helmet-import --image-size` recorded in the
    folder's `manifest.json`.
    """
    from dataclasses import replace

    from helmetlib.core.preprocess import resize

    if data_dir:
        rule = crop_rule_of(data_dir)
        dataset = load_dataset(data_dir, image_size=(rule.image_size,) * 2 if rule else IMAGE_SIZE)
    else:
        dataset = make_demo_dataset(demo_size)
    if not image_size or dataset.images.shape[1:3] == (image_size, image_size):
        return dataset
    resized = np.empty((len(dataset), image_size, image_size, 3), dtype=np.uint8)
    for start, chunk in zip(range(0, len(dataset), BATCH), batches(dataset.images), strict=True):
        resized[start : start + len(chunk)] = resize(chunk, image_size)
    return replace(dataset, images=resized)


def write_dataset(dataset: Dataset, folder: str | Path) -> Path:
    """Write a dataset in the study's file format (images back to BGR) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(folder / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=dataset.images.shape)
    for start, chunk in zip(range(0, len(dataset), BATCH), batches(dataset.images), strict=True):
        out[start : start + len(chunk)] = to_rgb(chunk)  # RGB -> BGR is the same swap
    out.flush()
    del out
    pd.DataFrame({LABEL_COLUMN: dataset.labels}).to_csv(folder / LABELS_FILE, index=False)
    return folder


HELMET_COLOURS_RGB = ((250, 210, 20), (245, 245, 245), (255, 120, 0), (220, 30, 30), (30, 90, 220))
SKIN_COLOURS_RGB = ((240, 200, 170), (200, 150, 110), (150, 100, 70), (90, 60, 40))
HAIR_COLOURS_RGB = ((30, 25, 20), (90, 60, 30), (160, 140, 110))


def make_demo_dataset(n: int = 160, *, seed: int = 0, image_size: int = 200) -> Dataset:
    """A deterministic synthetic set of drawn head-and-shoulder figures, half of them wearing a helmet (label 1).

    Backgrounds, clothing, skin, position and scale vary at random; only the helmet shape separates the classes.
    """
    import cv2

    if n < 4:
        raise ValueError(f"n must be at least 4 to hold both classes, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.array([index % 2 for index in range(n)], dtype=np.int64)
    rng.shuffle(labels)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    s = image_size / 200  # all geometry is drawn for 200 px and scaled
    for index, label in enumerate(labels):
        top, bottom = rng.integers(40, 200, size=3), rng.integers(40, 200, size=3)
        gradient = np.linspace(0, 1, image_size)[:, None, None]
        image = (top * (1 - gradient) + bottom * gradient).repeat(image_size, axis=1)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        cx = int((100 + rng.integers(-25, 26)) * s)
        cy = int((95 + rng.integers(-15, 16)) * s)
        r = int(rng.integers(28, 40) * s)
        shirt = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.ellipse(image, (cx, cy + int(2.6 * r)), (int(2.2 * r), int(1.4 * r)), 0, 180, 360, shirt, -1)
        skin = SKIN_COLOURS_RGB[rng.integers(len(SKIN_COLOURS_RGB))]
        cv2.circle(image, (cx, cy), r, skin, -1)
        if label == 1:
            helmet = HELMET_COLOURS_RGB[rng.integers(len(HELMET_COLOURS_RGB))]
            cv2.ellipse(image, (cx, cy - r // 4), (int(1.15 * r), int(1.05 * r)), 0, 180, 360, helmet, -1)
            cv2.rectangle(
                image, (cx - int(1.35 * r), cy - r // 4), (cx + int(1.35 * r), cy - r // 4 + max(2, r // 6)), helmet, -1
            )
        else:
            hair = HAIR_COLOURS_RGB[rng.integers(len(HAIR_COLOURS_RGB))]
            cv2.ellipse(image, (cx, cy - r // 5), (r, int(0.85 * r)), 0, 195, 345, hair, -1)
        eye_y = cy + r // 5
        for dx in (-r // 3, r // 3):
            cv2.circle(image, (cx + dx, eye_y), max(1, r // 10), (20, 20, 20), -1)
        images[index] = cv2.GaussianBlur(image, (3, 3), 0)
    return Dataset(
        images=images,
        labels=labels,
        images_path=None,
        labels_path=None,
        content_hash=content_hash(images, labels),
    )

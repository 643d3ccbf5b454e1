"""Load and validate the helmet dataset (`images_proj.npy` + `Labels_proj.csv`) and make a synthetic demo set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helmetlib.preprocess import to_rgb

IMAGES_FILE = "images_proj.npy"
LABELS_FILE = "Labels_proj.csv"
LABEL_COLUMN = "Label"
IMAGE_SIZE = (200, 200)
CLASS_NAMES = ("no helmet", "helmet")  # index = label


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (N, H, W, 3) uint8 in RGB order, labels (N,) int64 of 0/1, with where they came from."""

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


def content_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """Short sha256 of the images' and labels' values, shape and dtype (identifies a dataset in run metadata)."""
    digest = hashlib.sha256()
    digest.update(f"{images.shape}{images.dtype}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
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
    images = to_rgb(images_bgr)
    return Dataset(
        images=images,
        labels=labels,
        images_path=images_path.resolve(),
        labels_path=labels_path.resolve(),
        content_hash=content_hash(images, labels),
    )


def read_image_array(path: Path, image_size: tuple[int, int] | None) -> np.ndarray:
    """Read and check a BGR uint8 image array (N, H, W, 3) without ever unpickling; `DatasetError` when bad."""
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    if path.suffix != ".npy":
        raise DatasetError(f"{path}: not a .npy file (expected {IMAGES_FILE})")
    with path.open("rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _fortran_order, dtype = read_header(f)
        except (ValueError, EOFError) as error:
            raise DatasetError(f"{path}: not a valid .npy file ({error})") from None
        header_size = f.tell()
    if dtype.hasobject:
        raise DatasetError(f"{path}: holds a pickled object array; only plain uint8 arrays are accepted")
    expected_bytes = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
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
    return np.load(path, allow_pickle=False)


def _read_labels(path: Path) -> np.ndarray:
    """Read and check the 0/1 label column."""
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable CSV file ({error})") from None
    if LABEL_COLUMN not in frame.columns:
        raise DatasetError(f"{path}: no '{LABEL_COLUMN}' column (columns: {list(frame.columns)})")
    column = frame[LABEL_COLUMN]
    if len(column) == 0:
        raise DatasetError(f"{path}: empty dataset (no labels)")
    bad = ~pd.to_numeric(column, errors="coerce").isin([0, 1])
    if bad.any():
        examples = sorted({str(value) for value in column[bad].head(5)})
        raise DatasetError(f"{path}: labels must be 0 or 1; {int(bad.sum())} rows are not (e.g. {', '.join(examples)})")
    labels = pd.to_numeric(column).to_numpy(dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise DatasetError(f"{path}: only one class present (all labels are {labels[0]}); need both 0 and 1")
    return labels


def write_dataset(dataset: Dataset, folder: str | Path) -> Path:
    """Write a dataset in the study's file format (images back to BGR) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / IMAGES_FILE, to_rgb(dataset.images), allow_pickle=False)  # RGB -> BGR is the same swap
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

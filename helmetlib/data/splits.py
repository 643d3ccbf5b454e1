"""Stratified train / validation / test split, as in the study (70/15/15, random_state=42), or by group."""

from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import train_test_split

from helmetlib.core.records import Record, record

if TYPE_CHECKING:
    import pandas as pd

SPLIT_NAMES = ("train", "validation", "test")


@record
class SplitRecord(Record):
    """What a split was, as run records, results and cards keep it: its parts' sizes and how it was drawn
    (stratified by label in both kinds; `grouped` keeps each group in one part)."""

    train: int
    validation: int
    test: int = 0
    kind: str = "random"
    random_state: int = 42
    stratified: bool = True


@dataclass(frozen=True, eq=False)
class Split:
    """Index arrays (n_part,) into the dataset for each part, with how they were drawn."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    kind: str = "random"
    random_state: int = 42

    def sizes(self) -> dict[str, int]:
        """Number of images in each part."""
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    def same_parts(self, other: Split) -> bool:
        """Whether `other` holds the same images in each part (repeats on one split, told apart from resplits)."""
        return all(np.array_equal(getattr(self, part), getattr(other, part)) for part in SPLIT_NAMES)

    def record(self) -> SplitRecord:
        """The split's typed record (sizes, kind, random state)."""
        return SplitRecord(**self.sizes(), kind=self.kind, random_state=self.random_state)

    def parts(self) -> dict[str, np.ndarray]:
        """Index arrays by part name, in the order train, validation, test."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}

    def save(self, path: str | Path, *, key: str) -> None:
        """Record the split in `path` (`.npz`, written whole or not at all) under `key`, what it was drawn from."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
        np.savez(partial, **self.parts(), kind=self.kind, random_state=self.random_state, key=key)
        partial.replace(path)

    @classmethod
    def load(cls, path: str | Path, *, key: str) -> Split | None:
        """The split recorded in `path` under `key`, or None when there is none or it was drawn from other data or
        settings. A damaged record is None too, with a warning naming it (it is decided again, the same way)."""
        if not Path(path).is_file():
            return None
        try:
            with open(path, "rb") as file, np.load(file) as stored:  # the file closed even when it is no zip
                if str(stored["key"]) != key:
                    return None
                parts = {name: stored[name] for name in SPLIT_NAMES}
                return cls(**parts, kind=str(stored["kind"]), random_state=int(stored["random_state"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            warnings.warn(f"{path}: recorded split unreadable ({error}); decided again", stacklevel=2)
            return None


def indices_digest(indices: np.ndarray) -> str:
    """Short sha256 of an index array (n,): names a part of a split in cache keys and run records."""
    import hashlib

    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def split(
    labels: np.ndarray,
    *,
    validation_size: float = 0.15,
    test_size: float = 0.15,
    random_state: int = 42,
) -> Split:
    """Stratified split of `labels` into index arrays, the study's two-step way (631 images give 441/95/95)."""
    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    train_val, test = train_test_split(indices, test_size=test_size, stratify=labels, random_state=random_state)
    train, validation = train_test_split(
        train_val,
        test_size=validation_size / (1 - test_size),
        stratify=labels[train_val],
        random_state=random_state,
    )
    return Split(train=train, validation=validation, test=test, random_state=random_state)


def grouped_split(
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    validation_size: float = 0.15,
    test_size: float = 0.15,
    random_state: int = 42,
) -> Split:
    """Split so that no group (e.g. the photo of a crop) lands in two parts, stratified as far as groups allow.

    Sizes are close to, not exactly, 70/15/15: whole groups move together.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} labels; they must match row for row")
    indices = np.arange(len(labels))
    outer = StratifiedGroupKFold(n_splits=round(1 / test_size), shuffle=True, random_state=random_state)
    train_val, test = next(outer.split(indices, labels, groups))
    inner_splits = round((1 - test_size) / validation_size)
    inner = StratifiedGroupKFold(n_splits=inner_splits, shuffle=True, random_state=random_state)
    train, validation = next(inner.split(train_val, labels[train_val], groups[train_val]))
    return Split(
        train=train_val[train],
        validation=train_val[validation],
        test=test,
        kind="grouped",
        random_state=random_state,
    )


def make_split(
    labels: np.ndarray,
    *,
    kind: str = "random",
    random_state: int = 42,
    groups_csv: str | Path = "",
    group_column: str = "path",
    images: np.ndarray | None = None,
) -> Split:
    """A run's split: the study's stratified random split, or (`kind="grouped"`) one that keeps groups together.

    Groups come from `groups_csv`; without one, from clusters of near-duplicate images (which needs `images`).
    """
    if kind == "random":
        return split(labels, random_state=random_state)
    if groups_csv:
        groups = read_groups(groups_csv, group_column, expected_rows=len(labels))
    elif images is not None:
        from helmetlib.data.audit import duplicate_groups, near_duplicate_pairs

        pairs = near_duplicate_pairs(images, split(labels, random_state=random_state))
        groups = duplicate_groups(len(labels), pairs)
    else:
        raise ValueError("a grouped split needs a groups CSV (GROUPS_CSV / --groups) or the images")
    return grouped_split(labels, groups, random_state=random_state)


def read_groups(csv_path: str | Path, column: str = "path", *, expected_rows: int | None = None) -> np.ndarray:
    """Group ids, one per dataset row, from a column of a CSV in dataset order (e.g. helmet-dev's provenance.csv)."""
    import pandas as pd

    try:
        frame = pd.read_csv(csv_path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{csv_path}: not a readable groups CSV ({error})") from None
    if column not in frame.columns:
        raise ValueError(f"{csv_path}: no {column!r} column (columns: {list(frame.columns)})")
    if expected_rows is not None and len(frame) != expected_rows:
        raise ValueError(f"{csv_path}: {len(frame)} rows but the dataset has {expected_rows} images")
    return frame[column].astype(str).to_numpy()


def shared_groups(split: Split, groups: np.ndarray) -> pd.DataFrame:
    """For each pair of parts: groups present in both, and images of the later part whose group is in the earlier."""
    import pandas as pd

    groups = np.asarray(groups)
    parts = split.parts()
    rows = {}
    for first, second in (("train", "validation"), ("train", "test"), ("validation", "test")):
        earlier = set(groups[parts[first]])
        rows[f"{first} / {second}"] = {
            "shared groups": len(earlier & set(groups[parts[second]])),
            "images of the second part with a group in the first": int(
                sum(group in earlier for group in groups[parts[second]])
            ),
            "images of the second part": len(parts[second]),
        }
    return pd.DataFrame(rows).T

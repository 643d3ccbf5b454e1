"""Per-image statistics and how the classes differ in them, split summaries, and the random-vs-grouped score check
for the exploration report; every claim the EDA makes follows a rule stated here on the numbers it shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from helmetlib.core.preprocess import to_grayscale
from helmetlib.data.dataset import CLASS_NAMES, Dataset, batches
from helmetlib.data.splits import Split
from helmetlib.evaluation.metrics import Scores
from helmetlib.evaluation.uncertainty import Interval


def image_statistics(images_rgb: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per image: class, brightness (mean gray), contrast (gray std), sharpness (Laplacian variance).

    Images are read batch by batch, so a memory-mapped set larger than memory is fine.
    """
    brightness, contrast, sharpness = [], [], []
    for batch in batches(images_rgb, 64):
        gray = to_grayscale(batch)
        brightness.append(gray.mean(axis=(1, 2)))
        contrast.append(gray.std(axis=(1, 2)))
        sharpness.append([float(cv2.Laplacian(image, cv2.CV_64F).var()) for image in gray])
    return pd.DataFrame(
        {
            "class": [CLASS_NAMES[label] for label in labels],
            "brightness": np.concatenate(brightness),
            "contrast": np.concatenate(contrast),
            "sharpness": np.concatenate(sharpness),
        }
    )


def split_table(split: Split, labels: np.ndarray) -> pd.DataFrame:
    """Images per part and class (integers), with each part's share of the data."""
    rows = {}
    for name, indices in split.parts().items():
        part_labels = np.asarray(labels)[indices]
        rows[name] = {
            "images": len(indices),
            CLASS_NAMES[0]: int((part_labels == 0).sum()),
            CLASS_NAMES[1]: int((part_labels == 1).sum()),
            "share": f"{len(indices) / len(labels):.1%}",
        }
    return pd.DataFrame(rows).T


STATISTICS = ("brightness", "contrast", "sharpness")
SMALL, LARGE = 0.2, 0.5  # |standardised difference|: below SMALL the classes are alike, from LARGE on a shortcut


@dataclass(frozen=True)
class ClassDifference:
    """How one image statistic differs between the classes: each class's mean and standard deviation, and the
    standardised difference (helmet minus bare head, in pooled standard deviations) with its 95 % interval."""

    statistic: str
    bare: tuple[float, float]
    helmet: tuple[float, float]
    effect: Interval

    @property
    def verdict(self) -> str:
        """By the stated rule: "alike" when the interval includes 0 or the difference is under `SMALL`, "differ"
        (a possible shortcut) from `LARGE` on, "differ a little" between."""
        size = abs(self.effect.value)
        if self.effect.low <= 0 <= self.effect.high or size < SMALL:
            return "alike"
        return "differ" if size >= LARGE else "differ a little"


def class_differences(statistics: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> list[ClassDifference]:
    """`ClassDifference` of each statistic of an `image_statistics` table, the interval by a percentile bootstrap
    of both classes (scipy)."""
    from scipy.stats import bootstrap

    def effect(helmet, bare, axis=-1):
        pooled = np.sqrt((np.var(helmet, axis=axis, ddof=1) + np.var(bare, axis=axis, ddof=1)) / 2)
        return (np.mean(helmet, axis=axis) - np.mean(bare, axis=axis)) / np.where(pooled > 0, pooled, np.inf)

    differences = []
    for column in STATISTICS:
        bare = statistics.loc[statistics["class"] == CLASS_NAMES[0], column].to_numpy(float)
        helmet = statistics.loc[statistics["class"] == CLASS_NAMES[1], column].to_numpy(float)
        interval = bootstrap(
            (helmet, bare), effect, n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed)
        ).confidence_interval
        differences.append(
            ClassDifference(
                statistic=column,
                bare=(float(bare.mean()), float(bare.std(ddof=1))),
                helmet=(float(helmet.mean()), float(helmet.std(ddof=1))),
                effect=Interval(value=float(effect(helmet, bare)), low=float(interval.low), high=float(interval.high)),
            )
        )
    return differences


def statistics_table(differences: list[ClassDifference]) -> pd.DataFrame:
    """One row per statistic: each class's mean ± standard deviation, the standardised difference with its
    interval, and the verdict of the rule."""
    return pd.DataFrame(
        {
            difference.statistic: {
                CLASS_NAMES[0]: f"{difference.bare[0]:.1f} ± {difference.bare[1]:.1f}",
                CLASS_NAMES[1]: f"{difference.helmet[0]:.1f} ± {difference.helmet[1]:.1f}",
                "standardised difference": difference.effect.text(2),
                "verdict": difference.verdict,
            }
            for difference in differences
        }
    ).T


def reference_model(config) -> str:
    """The model the EDA trains on each split: `vgg16_linear` (its backbone features are cached for the run's
    models), or the CNN when no model of the run uses the backbone (its weights are then never loaded)."""
    return "cnn" if config.weights.used == "unused" else "vgg16_linear"


@dataclass(frozen=True)
class SplitCheck:
    """A reference model's validation scores on the random split and on a grouped one (no group on two sides), and
    the difference of accuracy (random minus grouped) with its 95 % interval (each validation part resampled)."""

    model: str
    groups: int
    scores: dict[str, Scores]
    accuracy: dict[str, Interval]
    difference: Interval

    @property
    def verdict(self) -> str:
        """By the stated rule: optimistic when the interval lies above 0, not when below, else undecided."""
        difference = self.difference
        if difference.low > 0:
            return f"the random split is optimistic: its validation accuracy is higher by {difference.text()}"
        if difference.high < 0:
            return (
                "no sign that the random split is optimistic: the grouped split scored higher by "
                f"{-difference.value:.3f} (95 % CI {-difference.high:.3f} to {-difference.low:.3f})"
            )
        return f"cannot tell whether the random split is optimistic: random minus grouped {difference.text()}"

    def table(self) -> pd.DataFrame:
        """Validation scores of the reference model on each split (3 decimals) and the images they rest on."""
        rows = {
            kind: {
                "accuracy": self.accuracy[kind].text(),
                "F1": f"{scores.f1:.3f}",
                "bare-head recall": f"{scores.bare_head_recall:.3f}",
                "validation images": scores.n,
            }
            for kind, scores in self.scores.items()
        }
        return pd.DataFrame(rows).T


def split_check(
    dataset: Dataset,
    splits: dict[str, Split],
    groups: int,
    *,
    model_name: str,
    n_resamples: int = 1000,
    **train_options,
) -> SplitCheck:
    """`SplitCheck` of `model_name` trained on each of the two splits (`random split`, `grouped split`)."""
    from scipy.stats import bootstrap

    from helmetlib.evaluation.metrics import performance
    from helmetlib.training.repeats import train_model

    scores, correct = {}, {}
    for kind, parts in splits.items():
        trained = train_model(model_name, dataset, parts, **train_options)
        labels = dataset.labels[parts.validation]
        scores[kind] = performance(labels, trained.probabilities["validation"])
        correct[kind] = ((trained.probabilities["validation"] >= 0.5) == labels).astype(float)

    def interval(samples, statistic) -> Interval:
        found = bootstrap(
            samples, statistic, n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(0)
        )
        value = statistic(*samples)
        return Interval(
            value=float(value), low=float(found.confidence_interval.low), high=float(found.confidence_interval.high)
        )

    accuracy = {kind: interval((hits,), np.mean) for kind, hits in correct.items()}
    difference = interval(
        (correct["random split"], correct["grouped split"]),
        lambda first, second, axis=-1: np.mean(first, axis=axis) - np.mean(second, axis=axis),
    )
    return SplitCheck(model=model_name, groups=groups, scores=scores, accuracy=accuracy, difference=difference)


def split_description(kind: str, random_state: int, groups_csv: str, group_column: str) -> str:
    """Which split a run used, in one sentence (and where its groups came from)."""
    if kind == "grouped":
        source = f"column `{group_column}` of `{groups_csv}`" if groups_csv else "clusters of near-duplicate images"
        return (
            f"**Split used: grouped** (random state {random_state}): no group on two sides, groups from {source}; "
            "sizes are close to 70 / 15 / 15."
        )
    return f"**Split used: random**, stratified 70 / 15 / 15 with random state {random_state}, as in the study."


@dataclass(frozen=True)
class SourcePhoto:
    """A source photo of an imported data folder (RGB) and its rows of `provenance.csv` (boxes, windows)."""

    name: str
    photo: np.ndarray
    rows: pd.DataFrame


def source_photo_examples(
    data_dir: str | Path, *, count: int = 3, per_photo: int = 4, seed: int = 0
) -> list[SourcePhoto]:
    """Up to `count` photos of an imported data folder that are still reachable (from `manifest.json`'s source
    and `provenance.csv`'s paths), the photos with most crops first, each with up to `per_photo` of its rows;
    [] when the folder was not imported or its photos are gone."""
    from helmetlib.core.records import RecordError, read_json
    from helmetlib.data.dataset import PROVENANCE_FILE
    from helmetlib.data.photos import read_image_file

    data_dir = Path(data_dir) if data_dir else None
    if data_dir is None or not (data_dir / PROVENANCE_FILE).is_file():
        return []
    try:
        source = Path(read_json(data_dir / "manifest.json")["source"])
    except (RecordError, KeyError, TypeError):
        return []
    provenance = pd.read_csv(data_dir / PROVENANCE_FILE)
    needed = {"row", "Label", "path", "xmin", "ymin", "xmax", "ymax", "window_left", "window_top", "window_side"}
    if not needed <= set(provenance.columns):
        return []
    root = source if source.is_dir() else source.parent
    busiest = provenance["path"].value_counts()
    examples = []
    for name in busiest.index[: 4 * count]:
        photo, error = read_image_file(root / name)
        if error is None:
            rows = provenance[provenance["path"] == name].sample(frac=1, random_state=seed).head(per_photo)
            examples.append(SourcePhoto(name=str(name), photo=photo, rows=rows))
        if len(examples) == count:
            break
    return examples

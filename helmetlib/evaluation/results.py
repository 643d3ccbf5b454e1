"""What a run found, as typed records: the data it saw (`DataInfo`), each model's repeats and deployed model
(`ModelResult`), the selection with its evidence (`Selection`), the leakage audit and the comparison with the
previous run. Free of TensorFlow and of the run's settings and folders (`runs`), which read and write them.
"""

from __future__ import annotations

from dataclasses import field

import numpy as np
from pydantic import computed_field

from helmetlib.core.records import Record, record
from helmetlib.core.weights import WeightsChoice
from helmetlib.data.dataset import crop_rule_of
from helmetlib.data.photos import CropRule
from helmetlib.data.splits import SplitRecord
from helmetlib.evaluation.calibration import Calibration
from helmetlib.evaluation.ensembles import CrossEnsemble
from helmetlib.evaluation.health import Health
from helmetlib.evaluation.metrics import HEADLINE_METRICS, Scores, confusion
from helmetlib.evaluation.uncertainty import Interval


@record
class DataInfo(Record):
    """Which data a run or model saw: where it came from, its content hash and counts."""

    path: str
    demo: bool
    content_hash: str
    images: int
    class_counts: dict[str, int]
    crop_rule: CropRule | None = None  # how `helmet-import` cut the crops; prediction on photos cuts them alike

    @classmethod
    def of(cls, dataset, data_dir: str) -> DataInfo:
        """The record of a loaded `Dataset` read from `data_dir` ("" for the demo set)."""
        return cls(
            path=data_dir or "synthetic demo set",
            demo=not data_dir,
            content_hash=dataset.content_hash,
            images=len(dataset),
            class_counts={str(label): count for label, count in dataset.class_counts.items()},
            crop_rule=crop_rule_of(data_dir) if data_dir else None,
        )


@record
class Restart(Record):
    """A training attempt abandoned (its model collapsed, or was unhealthy at its health check or its end) and
    restarted with another seed; `epoch` is the last epoch it trained."""

    seed: int
    epoch: int
    reason: str


@record
class RepeatResult(Record):
    """One training of a model: its seed, scores on train and validation, and whether it collapsed."""

    seed: int
    seed_used: int
    split_seed: int
    train: Scores
    validation: Scores
    epochs_run: int
    collapsed: bool
    restarts: tuple[Restart, ...] = ()
    seconds: float = 0.0
    health: Health | None = None


@record
class Spread(Record):
    """Mean, standard deviation (ddof 1; 0 for one repeat), minimum and maximum of a metric over repeats."""

    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        array = np.asarray(values, dtype=float)
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return cls(mean=float(array.mean()), std=std, min=float(array.min()), max=float(array.max()))


SPREAD_METRICS = (*HEADLINE_METRICS, "bare_head_recall")
# `ModelResult.mode` (how the trainer ran) in a reader's words
TRAINED_ON = {
    "direct": "images, end to end",
    "fast": "cached backbone features",
    "faithful": "images through the frozen backbone",
}


@record
class TrainingDetails(Record):
    """How a model's trainer ran, as facts (the pages put them in words): which head family trained it, the CNN's
    start, the backbone feature cache, the augmented views, early stopping and the logistic fit's penalty."""

    family: str  # "cnn", "feature_head", "augmented_views" or "logistic" (`helmetlib.training.trainers`)
    faithful: bool
    healthy_start: bool = False  # the CNN: bottleneck units centred on the training images
    cache_reused: int = 0  # backbone feature passes read from the cache
    cache_computed: int = 0
    cache_warnings: tuple[str, ...] = ()
    augmented_views: int = 0  # pre-drawn augmented views per training image (fast mode)
    views_seed: int | None = None
    early_stopping_patience: int = 0  # 0: no early stopping
    class_weights: dict[str, float] | None = None
    logistic_grid: tuple[float, ...] = ()
    logistic_chosen: tuple[float, ...] = ()  # the penalty C chosen by cross-validation, per fit


@record
class ModelResult(Record):
    """A model's results over its repeats and how it was trained; `train` / `validation` are the deployed model's.

    `deployed` says which model is kept for this architecture: the seed ensemble (probabilities averaged over the
    healthy repeats) unless validation shows it clearly worse than the best repeat (`deployed_reason`);
    `deployed_health` is that model's `Health` on the training part, `left_out` the repeats kept out and why.
    """

    name: str
    description: str
    parameters: int  # of one member of the deployed seed ensemble (`deployed_seeds`), or of the one deployed repeat
    trainable_parameters: int
    normalization: str
    input_shape: tuple[int, int, int]
    mode: str
    precision: str
    view_precision: str | None
    weights: WeightsChoice | None
    threshold: float
    repeats: tuple[RepeatResult, ...]
    deployed: str
    deployed_seeds: tuple[int, ...]
    train: Scores
    validation: Scores
    best_repeat_validation: Scores | None
    ensemble_validation: Scores | None
    details: TrainingDetails
    data: DataInfo
    split: SplitRecord
    train_seconds: float
    deployed_reason: str = ""
    deployed_health: Health | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # repeats (by seed) kept out of the seed ensemble, why
    unhealthy: bool = False  # no repeat was healthy: the best one is deployed with a warning
    validation_brier: float | None = None  # the deployed model's validation Brier score (None: an older helmetlib)

    @computed_field
    @property
    def collapsed(self) -> bool:
        """True only when every repeat collapsed (such a model is never selected)."""
        return all(repeat.collapsed for repeat in self.repeats)

    @computed_field
    @property
    def summary(self) -> dict[str, Spread]:
        """Spread of each validation metric over the repeats."""
        return {
            metric: Spread.of([_metric(repeat.validation, metric) for repeat in self.repeats])
            for metric in SPREAD_METRICS
        }

    @property
    def trained_on(self) -> str:
        """What the trainable part saw, in words (`TRAINED_ON`)."""
        return TRAINED_ON.get(self.mode, self.mode)

    @property
    def epochs_run(self) -> int:
        """Epochs of the first repeat's final attempt (all repeats train the same number unless they stop early)."""
        return self.repeats[0].epochs_run


def _metric(scores: Scores, metric: str) -> float:
    return scores.bare_head_recall if metric == "bare_head_recall" else getattr(scores, metric)


@record
class Verdict(Record):
    """Whether validation separates the selected model from the runner-up, in words and numbers."""

    runner_up: str | None
    difference: dict[str, Interval]
    separated: bool
    text: str


@record
class DeployThreshold(Record):
    """The threshold written into the selected model's card, and how it was chosen."""

    value: float
    rule: str
    description: str


@record
class ExportedFile(Record):
    """A TensorFlow Lite export of the selected model, its size and its agreement with the Keras model."""

    file: str
    megabytes: float
    sha256: str
    label_agreement: float | None = None
    max_probability_difference: float | None = None


@record
class Selection(Record):
    """What the comparison decided: the selected model, what is deployed (it, or the cross-architecture ensemble
    with it) and the deployed model's test scores (the only look at the test part).

    `test` (and `test_intervals`) is the deployed decision: `test_probabilities`, P(helmet) as `helmet-predict`
    answers it (calibrated as the card says), at the deployed `threshold`; recomputing from `test_labels` and
    `test_probabilities` at `threshold.value` gives these numbers exactly. `test_at_study_threshold` is the study's
    own decision, its threshold (0.5) on the model's own output (`test_model_output`, kept for the paired
    comparison with the next run).
    """

    selected_model: str | None
    rule: str
    candidates: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    verdict: Verdict | None = None
    threshold: DeployThreshold | None = None
    test: Scores | None = None
    test_intervals: dict[str, Interval] = field(default_factory=dict)
    test_at_study_threshold: Scores | None = None
    test_intervals_at_study_threshold: dict[str, Interval] = field(default_factory=dict)
    test_labels: tuple[int, ...] = ()
    test_probabilities: tuple[float, ...] = ()
    test_model_output: tuple[float, ...] = ()
    test_indices_hash: str | None = None
    validation_labels: tuple[int, ...] = ()
    validation_brier: float | None = None
    validation_ece: float | None = None
    export: dict[str, ExportedFile] | None = None
    calibration: Calibration | None = None
    deployed_model: str | None = None
    cross_ensemble: CrossEnsemble | None = None

    def test_confusion(self) -> np.ndarray:
        """The deployed decision's test confusion matrix (2, 2): rows true bare head / helmet, columns predicted,
        from `test_labels` and `test_probabilities` at the deployed threshold (the counts behind `test`)."""
        labels, probabilities = np.asarray(self.test_labels), np.asarray(self.test_probabilities)
        return confusion(labels, probabilities, threshold=self.threshold.value)

    @property
    def deployed(self) -> str | None:
        """The model file to deploy (`models/<deployed>.keras`): the selected model, or the cross-architecture
        ensemble (`ensemble`) when validation showed it clearly better."""
        return self.deployed_model or self.selected_model


@record
class Audit(Record):
    """The EDA's leakage audit in numbers and one verdict line (shown in the decision block)."""

    verdict: str
    leakage: bool
    exact_pairs_across: int
    near_pairs_across: int
    look_alike_pairs_across: int | None
    shared_groups: int | None


@record
class MetricChange(Record):
    """A metric now minus the same metric in the previous run, with a paired bootstrap interval."""

    metric: str
    previous: float
    current: float
    change: Interval
    regression: bool


@record
class PreviousRunComparison(Record):
    """This run against the previous ok run on the same data: per-model validation changes, selected test changes."""

    previous_run: str | None
    same_data: bool
    note: str
    validation: dict[str, tuple[MetricChange, ...]]
    test: tuple[MetricChange, ...]
    selection_lost: str | None = None

    @property
    def regressions(self) -> list[str]:
        """One line per change whose interval excludes 0 in the bad direction (and a selection that vanished)."""
        lines = []
        if self.selection_lost:
            lines.append(f"no model selected now; the previous run selected {self.selection_lost}")
        lines += [f"selected model, test {c.metric}: {c.change.text()}" for c in self.test if c.regression]
        for name, changes in self.validation.items():
            lines += [f"{name}, validation {c.metric}: {c.change.text()}" for c in changes if c.regression]
        return lines

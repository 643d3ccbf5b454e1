"""`helmet-evaluate`: score a finished run's models on another dataset (photos from elsewhere)."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.records import Record, RecordError, record
from helmetlib.data.annotations import Problem
from helmetlib.data.dataset import load_dataset
from helmetlib.data.formats import ImportFormat
from helmetlib.deploy.cards import ModelError
from helmetlib.evaluation.metrics import Scores, confusion, performance
from helmetlib.evaluation.results import DataInfo
from helmetlib.evaluation.uncertainty import Interval, bootstrap_intervals, brier_score, curves
from helmetlib.models.features import PASSES, backbone_precision, pass_extractor
from helmetlib.run.folder import RunFolder, RunRecord


@record
class ModelEvaluation(Scores):
    """One model's scores on the other dataset at its card's threshold (`threshold`) on its calibrated P(helmet), and
    threshold-free ones; `refused`: images it gave no answer for (blank ones), by reason, left out of the scores."""

    roc_auc: float
    average_precision: float
    brier: float
    confusion: tuple[tuple[int, int], tuple[int, int]]
    refused: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)  # 95 % bootstrap intervals of the headline metrics


@record
class Dropped(Record):
    """What an evaluation on annotated photos could not score: each problem of the input (unreadable photos,
    malformed annotations, boxes outside their photo...), the photos no annotation names, and the heads under the
    crop rule's smallest size."""

    problems: tuple[Problem, ...] = ()
    problem_counts: dict[str, int] = field(default_factory=dict)
    photos_without_boxes: int = 0
    heads_under_min_box: int = 0

    @classmethod
    def of(cls, manifest) -> Dropped:
        """From an import's `DataManifest`."""
        small = sum(count for reason, count in manifest.skipped_boxes.items() if reason.startswith("head smaller"))
        return cls(
            problems=manifest.problems,
            problem_counts=manifest.problem_counts,
            photos_without_boxes=manifest.photos_without_boxes,
            heads_under_min_box=small,
        )

    def text(self) -> str:
        """One line: what was dropped and why ("nothing" when nothing was)."""
        parts = [f"{count} {kind}" for kind, count in self.problem_counts.items()]
        if self.photos_without_boxes:
            parts.append(f"{self.photos_without_boxes} photos without boxes")
        if self.heads_under_min_box:
            parts.append(f"{self.heads_under_min_box} heads under --min-box")
        return ", ".join(parts) or "nothing"


@record
class Evaluation(Record):
    """Every model of a run scored on another dataset (`evaluation.json`); `dropped`: what annotated photos held
    that could not be scored (None for a data folder); `deployed`: the run's deployed model (the selected one, or
    the cross-architecture ensemble); `backbone_precision`: the precision of the shared backbone passes."""

    run: str
    data: DataInfo
    selected_model: str | None
    models: dict[str, ModelEvaluation]
    dropped: Dropped | None = None
    deployed: str | None = None
    backbone_precision: str = "float32"

    def verdict(self, run) -> str | None:
        """How the deployed model does on these images against its own test scores (`run`: its `RunRecord`), by the
        rule: clearly worse (or better) when the 95 % intervals of accuracy do not overlap, else alike."""
        scored = self.models.get(self.deployed) if self.deployed else None
        test = run.selection.test_intervals if run.selection else {}
        if scored is None or "accuracy" not in test or "accuracy" not in scored.intervals:
            return None
        here, there = scored.intervals["accuracy"], test["accuracy"]
        words = (
            "clearly worse than on its own test set"
            if here.high < there.low
            else "clearly better than on its own test set"
            if here.low > there.high
            else "as on its own test set (the 95 % intervals overlap)"
        )
        recall = scored.intervals.get("bare_head_recall")
        return (
            f"{self.deployed} does {words}: accuracy {here.text()} on these {scored.n} images against "
            f"{there.text()} on test; it catches {recall.text() if recall else 'n/a'} of the bare heads here at its "
            f"card's threshold {scored.threshold:.3f} (test: {test['bare_head_recall'].text()})."
        )


@dataclass
class EvaluationResult:
    """The record plus the arrays the page draws: per model the labels and P(helmet) of the images it answered."""

    evaluation: Evaluation
    labels: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]


class SharedBackbone:
    """The frozen backbone's features for a batch, computed in one pass per weights fingerprint and normalisation
    and reused by every model of a run that reads them: the three models on VGG16's block 5 (/255) share one pass,
    `vgg16_gap` and `vgg16_multiscale` (VGG16's own normalisation) another, each pass giving every feature kind of
    its normalisation (`features.PASSES`), in `precision` (the faster one here by default: the heads of a fast run
    were trained on features of that precision)."""

    def __init__(self, precision: str | None = None):
        self.precision = precision or backbone_precision()
        self.extractors: dict[tuple[str, str], object] = {}
        self.outputs: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self.passes = 0

    def wrap(self, loaded):
        """`loaded` (an `inference.LoadedModel`) predicting through the shared backbone outputs when it is an
        image -> backbone -> head model; unchanged otherwise (the CNN, TFLite, seed ensembles)."""
        from helmetlib.models.builders import BACKBONE_LAYER

        card, model = loaded.card, loaded.model
        layers = getattr(model, "layers", [])
        if card.backbone is None or len(layers) != 3 or layers[1].name != BACKBONE_LAYER:
            return loaded
        backbone, head = layers[1], layers[2]
        weights, normalization = card.backbone.fingerprint, card.input.normalization

        def predict_batch(x: np.ndarray) -> np.ndarray:
            key = (weights, normalization, hashlib.sha1(x.tobytes()).hexdigest())
            if key not in self.outputs:
                extractor = self._extractor(weights, normalization, backbone)
                arrays = extractor.predict(x, verbose=0)
                arrays = arrays if isinstance(arrays, list) else [arrays]
                self.outputs[key] = dict(zip(PASSES[normalization], arrays, strict=True))
                self.passes += 1
            return head.predict(self.outputs[key][card.backbone.features], verbose=0).ravel()

        return dataclasses.replace(loaded, predict_batch=predict_batch)

    def _extractor(self, weights: str, normalization: str, backbone):
        """The one-pass extractor of `normalization`'s feature kinds, on the backbone weights of `backbone` (a
        model's frozen `backbone` layer: every weighted layer of the plain backbone, by name)."""
        if (weights, normalization) not in self.extractors:
            base = BACKBONE.build(backbone.input_shape[1:])
            for layer in base.layers:
                if layer.weights:
                    layer.set_weights(backbone.get_layer(layer.name).get_weights())
            self.extractors[weights, normalization] = pass_extractor(base, normalization, self.precision)
        return self.extractors[weights, normalization]


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    *,
    models: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Scores of every model of `run_dir` on the dataset in `data_dir`, at each model card's threshold, on the
    probabilities `helmet-predict` gives (calibrated as each card says), the backbone computed in the faster
    precision here (`Evaluation.backbone_precision`; in bfloat16 a probability moves by 0.002-0.004 on average, at
    most 0.03, on the VOC sample's heads: docs/benchmarks.md).

    Models are loaded through their cards (the selected model's self-contained file, the others' heads over the
    backbone store, and the cross-architecture ensemble when it is deployed), so a card that does not match its
    file is refused. Models on one normalisation share one backbone pass per batch (`SharedBackbone`). `models`
    names the models to score (default: all, and the deployed ensemble); `progress` receives a line per model.
    """
    folder = RunFolder(Path(run_dir))
    run = _read_run(folder)
    return _score_run(folder, run, data_dir, data_source=Path(data_dir), models=models, progress=progress)


def _read_run(folder: RunFolder) -> RunRecord:
    try:
        return folder.read_record()
    except RecordError:
        raise ModelError(f"{folder.path}: not a helmet-reports run folder (no readable run.json)") from None


def _score_run(
    folder: RunFolder,
    run: RunRecord,
    data_dir: Path | str,
    *,
    data_source: Path,
    models: tuple[str, ...] | None,
    progress: Callable[[str], None] | None,
    dropped: Dropped | None = None,
) -> EvaluationResult:
    """`evaluate_run`'s work, on a run already read; the evaluation names `data_source` as its data."""
    from helmetlib.deploy.predict import load_model, predict

    names = scored_models(run, models)
    dataset = load_dataset(data_dir, image_size=None)
    scores, labels, probabilities = {}, {}, {}
    shared = SharedBackbone()
    for number, name in enumerate(names, start=1):
        if progress:
            progress(f"helmet-evaluate: scoring {name} ({number}/{len(names)}) on {len(dataset)} images")
        path = folder.loadable_file(name)
        model = shared.wrap(load_model(path))
        table = predict(model, dataset.images, check_crops=False)  # annotated heads, cut by the card's rule
        answered = table["error"].isna().to_numpy()
        labels[name], probabilities[name] = dataset.labels[answered], table["probability"].to_numpy(float)[answered]
        threshold = model.card.threshold.value
        shape = curves(labels[name], probabilities[name])
        scores[name] = ModelEvaluation(
            **vars(performance(labels[name], probabilities[name], threshold=threshold)),
            roc_auc=shape.roc_auc,
            average_precision=shape.average_precision,
            brier=brier_score(labels[name], probabilities[name]),
            confusion=confusion(labels[name], probabilities[name], threshold=threshold).tolist(),
            refused={str(reason): int(count) for reason, count in table["error"].value_counts().items()},
            intervals=bootstrap_intervals(labels[name], probabilities[name], threshold=threshold, n_resamples=1000),
        )
    evaluation = Evaluation(
        run=str(folder.path.resolve()),
        data=DataInfo.of(dataset, str(data_source.resolve())),
        selected_model=run.selected_model,
        models=scores,
        dropped=dropped,
        deployed=run.selection.deployed if run.selection else None,
        backbone_precision=shared.precision,
    )
    return EvaluationResult(evaluation=evaluation, labels=labels, probabilities=probabilities)


def scored_models(run: RunRecord, models: tuple[str, ...] | None) -> list[str]:
    """The models an evaluation scores: `models` (`--models`), or every model of the run and the deployed
    cross-architecture ensemble; `ModelError` naming an unknown one."""
    deployed = run.selection.deployed if run.selection else None
    available = [*run.models, *([deployed] if deployed and deployed not in run.models else [])]
    if models is None:
        return available
    unknown = [name for name in models if name not in available]
    if unknown:
        raise ModelError(f"--models: {', '.join(unknown)} not in this run (it has {', '.join(available)})")
    return list(models)


def evaluate_photos(
    run_dir: str | Path,
    photos: str | Path,
    *,
    format: ImportFormat,
    classes: dict[str, int],
    models: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """`evaluate_run` on annotated site photos: every head box of `photos` (as `helmet-import` reads them) is cut
    by the crop rule the deployed model's card records, and scored; what could not be scored is `dropped`."""
    from helmetlib.data.importer import import_photos
    from helmetlib.deploy.cards import read_card

    folder = RunFolder(Path(run_dir))
    run = _read_run(folder)
    if run.selection is None or not run.selection.deployed:
        raise ModelError(f"{folder.path}: the run deployed no model: there is no crop rule to cut heads with")
    rule = read_card(folder.model_file(run.selection.deployed)).cutting_rule
    with tempfile.TemporaryDirectory(prefix="helmet-evaluate-") as scratch:
        data_dir = Path(scratch) / "data"
        manifest = import_photos(photos, data_dir, format=format, classes=classes, rule=rule)
        return _score_run(
            folder,
            run,
            data_dir,
            data_source=Path(photos),
            models=models,
            progress=progress,
            dropped=Dropped.of(manifest),
        )

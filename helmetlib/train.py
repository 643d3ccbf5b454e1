"""Train a model on a split, repeatedly over seeds, with collapse detection and restarts.

Fast mode (default) trains a VGG16 model's head on backbone features computed once (`features`); `faithful=True`
runs the study's computation instead: the frozen backbone on every batch of every epoch, augmentation on the fly.
Images and cached features are read batch by batch (`ImageBatches`, `ViewBatches`) from their files, so sets
larger than memory train in bounded memory. The test part is never touched.

A model whose output stops depending on its input (the CNN's Dense(4, relu) bottleneck can die) is detected at
the end of the epoch it happens in and training restarts with another seed, up to `max_restarts` times; every
restart is recorded. Models whose validation predictions are (nearly) one class are flagged `collapsed`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helmetlib import specs
from helmetlib.backend import keras
from helmetlib.data import Dataset, batches, select_rows
from helmetlib.env import PROGRESS_ENV
from helmetlib.features import FeatureCache, backbone_precision, cached_features, compute_features, pass_key
from helmetlib.health import HEALTH_SAMPLE_SIZE, Health, layer_health, output_health
from helmetlib.metrics import Scores, is_collapsed, performance
from helmetlib.models import (
    BACKBONE_LAYER,
    HEAD_LAYER,
    assemble,
    augmentation,
    average_of,
    build_head,
    compile_model,
    frozen_backbone,
    healthy_start,
    simple_cnn,
    vgg16_backbone,
)
from helmetlib.preprocess import normalize
from helmetlib.results import DataInfo, ModelResult, RepeatResult, Restart
from helmetlib.specs import ModelSpec, get_spec
from helmetlib.splits import Split, indices_digest
from helmetlib.uncertainty import brier_score, f1_difference
from helmetlib.weights import WeightsChoice, resolve_weights

RESTART_SEED_STEP = 100_003  # restart k of seed s uses s + k * step: never another repeat's seed
LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
VARIANCE_FLOOR = 1e-3  # of the mean feature variance: the smallest variance a standardised feature is divided by
DEAD_OUTPUT_SPAN = 1e-5  # probabilities of a training sample spanning less than this: the output is constant
COLLAPSE_SAMPLE_SIZE = 64  # training inputs whose output span tells a collapse
HEALTH_RESTARTS = 2  # fast mode: a training that ends unhealthy is restarted at most this often (docs/seeds.md)
UNHEALTHY = "half-dead"  # the reason a health restart starts with
HEALTHY_START_SAMPLE_SIZE = 64  # training images that set the CNN's healthy start
FEATURE_ROWS_PER_READ = 1024  # rows of cached features read at once for predictions


@dataclass
class TrainedModel:
    """A trained model: the full image model, its head (backbone models), history, probabilities, how it ran."""

    name: str
    model: keras.Model
    head: keras.Model | None
    history: dict[str, list[float]]
    probabilities: dict[str, np.ndarray]
    weights: WeightsChoice | None
    mode: str
    precision: str
    seconds: float
    seed: int
    seed_used: int
    collapsed: bool
    split: Split
    restarts: list[Restart] = field(default_factory=list)
    health: Health | None = None
    view_precision: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))


class ImageBatches(keras.utils.PyDataset):
    """(normalised images, labels) batches read from a (memory-mapped) RGB array at `indices`.

    With `seed` the order is reshuffled every epoch from that seed (the same order for images and features, so
    fast and faithful training see identical batches); without it the order is `indices` as given.
    """

    def __init__(self, source, indices, labels, batch_size, *, seed=None, transform=None, **kwargs):
        super().__init__(**kwargs)
        self.source, self.indices, self.labels = source, np.asarray(indices), labels
        self.batch_size, self.transform = batch_size, transform
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.order = np.arange(len(self.indices))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.source[self.indices[rows]]
        x = self.transform(x) if self.transform is not None else np.asarray(x)
        return x, self.labels[rows]

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.indices))


class ViewBatches(ImageBatches):
    """Batches over K pre-computed augmented views (each (N, ...), a `RowFile`): each epoch picks one view per
    image and reshuffles."""

    def __init__(self, views, labels, batch_size, *, seed):
        self.views = views
        self.choice = np.zeros(len(labels), dtype=int)
        super().__init__(views[0], np.arange(len(labels)), labels, batch_size, seed=seed)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        choice = self.choice[rows]
        batch = np.empty((len(rows), *self.views[0].shape[1:]), np.float32)
        for view_index, view in enumerate(self.views):  # one read per view of the rows that picked it
            picked = choice == view_index
            if picked.any():
                batch[picked] = view[rows[picked]]
        return batch, self.labels[rows]

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        self.choice = self.rng.integers(len(self.views), size=len(self.labels))


class CollapseMonitor(keras.callbacks.Callback):
    """Stops training at the end of an epoch after which the model's output no longer depends on its input.

    `sample` is a fixed batch of training inputs; when its probabilities span less than `DEAD_OUTPUT_SPAN` (a
    dead ReLU bottleneck gives one constant output) the epoch is recorded in `collapsed_at`.
    """

    def __init__(self, sample: np.ndarray):
        super().__init__()
        self.sample = sample
        self.collapsed_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        probabilities = self.model.predict(self.sample, verbose=0).ravel()
        if probabilities.max() - probabilities.min() < DEAD_OUTPUT_SPAN:
            self.collapsed_at = epoch + 1
            self.model.stop_training = True


class ProgressLog(keras.callbacks.Callback):
    """Appends one line per epoch to the file named by HELMETLIB_PROGRESS_FILE (the report runner prints it)."""

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.path = os.environ.get(PROGRESS_ENV)

    def on_epoch_end(self, epoch, logs=None):
        if not self.path:
            return
        shown = " ".join(f"{k} {v:.3f}" for k, v in (logs or {}).items() if k in ("loss", "val_loss", "val_accuracy"))
        with open(self.path, "a") as f:
            f.write(f"{self.label} epoch {epoch + 1}/{self.epochs} {shown}\n")


def progress_line(text: str) -> None:
    """One line for the runner's log (nothing when no runner listens)."""
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


def train_model(
    name: str,
    dataset: Dataset,
    split: Split,
    *,
    weights: str | Path | WeightsChoice | None = "imagenet",
    epochs: int = specs.EPOCHS,
    batch_size: int = specs.BATCH_SIZE,
    seed: int = specs.SEED,
    faithful: bool = False,
    augmented_views: int = specs.AUGMENTED_VIEWS,
    views_seed: int | None = None,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    max_restarts: int = specs.MAX_RESTARTS,
    threshold: float = specs.THRESHOLD,
    verbose: int = 0,
) -> TrainedModel:
    """Build `name`, train it on `split.train` with `split.validation` for validation, predict both parts.

    Fast mode (default) trains a VGG16 model's head on backbone features computed once (cached under
    `cache_dir`), in float32 unless `precision` says otherwise; model 4 trains on `augmented_views` pre-drawn
    augmented views per training image (drawn from `views_seed`, default `seed`), computed in the faster
    `backbone_precision()`. `faithful=True` runs the study's computation instead. A collapse (constant output)
    restarts training with seed `seed + k * 100003`, at most `max_restarts` times; `collapsed` says whether the
    final model's validation predictions are (nearly) one class.
    """
    [trained] = train_repeats(
        name,
        dataset,
        split,
        repeats=1,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        faithful=faithful,
        augmented_views=augmented_views,
        views_seed=views_seed,
        cache_dir=cache_dir,
        precision=precision,
        max_restarts=max_restarts,
        threshold=threshold,
        verbose=verbose,
    )
    return trained


def train_repeats(
    name: str,
    dataset: Dataset,
    split: Split | list[Split],
    *,
    repeats: int = 1,
    seed: int = specs.SEED,
    weights: str | Path | WeightsChoice | None = "imagenet",
    epochs: int = specs.EPOCHS,
    batch_size: int = specs.BATCH_SIZE,
    faithful: bool = False,
    augmented_views: int = specs.AUGMENTED_VIEWS,
    views_seed: int | None = None,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    max_restarts: int = specs.MAX_RESTARTS,
    threshold: float = specs.THRESHOLD,
    verbose: int = 0,
) -> list[TrainedModel]:
    """Train `name` `repeats` times, with seeds `seed`, `seed + 1`, ..., on one split (or on `split[i]` each).

    The backbone features and augmented views are computed once and shared by the repeats (views are drawn from
    `views_seed`, default `seed`); only the head's initialisation, the batch order and dropout change with the
    seed. Options as in `train_model`. A deterministic model (`ModelSpec.deterministic`) is fitted once per
    distinct split: its repeats would be identical copies.
    """
    spec = get_spec(name)
    choice = resolve_weights(weights) if spec.uses_backbone else None
    splits = split if isinstance(split, list) else [split] * repeats
    if len(splits) != repeats:
        raise ValueError(f"{len(splits)} splits for {repeats} repeats; give one split or one per repeat")
    if spec.deterministic:
        splits = list({id(part): part for part in splits}.values())
        repeats = len(splits)
    trainers: dict[int, _Trainer] = {}
    trained = []
    for index, part in enumerate(splits):
        label = f"{name}" + (f" repeat {index + 1}/{repeats}" if repeats > 1 else "")
        started = time.perf_counter()
        trainer = trainers.get(id(part))
        if trainer is None:
            trainer = trainers[id(part)] = _Trainer(
                spec,
                dataset,
                part,
                weights=choice,
                batch_size=batch_size,
                faithful=faithful,
                augmented_views=augmented_views,
                views_seed=seed if views_seed is None else views_seed,
                cache=FeatureCache(cache_dir),
                precision=precision,
            )
        trained.append(
            _train_with_restarts(trainer, seed + index, epochs, max_restarts, threshold, label, verbose, started)
        )
    return trained


def _train_with_restarts(trainer, seed, epochs, max_restarts, threshold, label, verbose, started) -> TrainedModel:
    """Train until an attempt neither collapses nor (fast mode, at most `HEALTH_RESTARTS` times) ends unhealthy;
    each abandoned attempt is a `Restart` with its reason, the next one uses the next restart seed."""
    restarts: list[Restart] = []
    for attempt in range(max_restarts + 1):
        seed_used = seed + attempt * RESTART_SEED_STEP
        model, head, history, collapsed_at = trainer.fit(seed_used, epochs, label, verbose)
        probabilities = trainer.predict(model, head)
        health = trainer.health(model, head, probabilities["train"], restarts=len(restarts))
        health_restarts = sum(restart.reason.startswith(UNHEALTHY) for restart in restarts)
        if collapsed_at is not None:
            restart = Restart(seed=seed_used, epoch=collapsed_at, reason="constant output (dead units)")
        elif health.problem and trainer.restarts_unhealthy and health_restarts < HEALTH_RESTARTS:
            what = health.problem.split(": it cannot")[0]
            restart = Restart(seed=seed_used, epoch=len(history.get("loss", [])), reason=f"{UNHEALTHY}: {what}")
        else:
            break
        if attempt == max_restarts:
            break
        restarts.append(restart)
        progress_line(f"{label}: {restart.reason} at epoch {restart.epoch} (seed {seed_used}), restarting")
    collapsed = collapsed_at is not None or is_collapsed(
        trainer.labels["validation"], probabilities["validation"], threshold=threshold
    )
    return TrainedModel(
        name=trainer.spec.name,
        model=model,
        head=head,
        history=history,
        probabilities=probabilities,
        weights=trainer.weights,
        mode=trainer.mode,
        precision=trainer.precision,
        view_precision=trainer.view_precision,
        seconds=time.perf_counter() - started,
        seed=seed,
        seed_used=seed_used,
        collapsed=collapsed,
        restarts=restarts,
        health=health,
        notes=trainer.notes(),
        split=trainer.split,
    )


@dataclass
class Deployed:
    """The model kept for an architecture: the seed ensemble of its healthy repeats, or its best repeat when
    validation shows the ensemble clearly worse (or there is nothing to average); `reason` says which. `left_out`:
    the repeats (by seed) kept out of the seed ensemble, and why; `unhealthy`: no repeat was healthy, so the best
    one is deployed all the same (a red warning on every page)."""

    model: keras.Model
    head: keras.Model | None
    probabilities: dict[str, np.ndarray]
    description: str
    reason: str
    seeds: tuple[int, ...]
    best_repeat: TrainedModel
    ensemble_validation: Scores | None
    health: Health | None
    left_out: dict[int, str] = field(default_factory=dict)
    unhealthy: bool = False


def deploy(
    repeats: list[TrainedModel],
    dataset: Dataset,
    *,
    threshold: float = specs.THRESHOLD,
    n_resamples: int = 2000,
) -> Deployed:
    """Choose what to keep of `repeats`: by default one model averaging the probabilities of the healthy repeats
    (neither collapsed nor flagged by `Health.problem`: the seed ensemble; repeats on one split only). The best
    healthy repeat on validation F1 is kept instead only when validation shows the ensemble clearly worse: the
    paired bootstrap 95 % interval of the F1 difference (best repeat minus ensemble, `n_resamples` resamples of the
    validation images) lies above 0. When no repeat is healthy, the best non-collapsed one is deployed, `unhealthy`.

    One validation set of ~90 images cannot tell a repeat that generalises from a lucky one, while the average of
    the repeats ranks photos from elsewhere better than any one of them (see docs/seeds.md).
    """
    left_out = {trained.seed: _unfit_for_ensemble(trained) for trained in repeats if _unfit_for_ensemble(trained)}
    healthy = [trained for trained in repeats if trained.seed not in left_out]
    usable = healthy or [trained for trained in repeats if not trained.collapsed] or repeats
    scores = [_validation_scores(trained, dataset, threshold) for trained in usable]
    best = usable[max(range(len(usable)), key=lambda i: (scores[i].f1, -i))]
    single = _best_repeat(best, repeats, left_out=left_out, unhealthy=not healthy)
    if len(usable) < 2 or not healthy:
        return single
    if not all(trained.split is repeats[0].split for trained in usable):
        single.reason = "repeats on different splits (RESPLIT) cannot be averaged: the best on validation F1"
        return single
    averaged = {part: np.mean([t.probabilities[part] for t in usable], axis=0) for part in ("train", "validation")}
    validation_labels = dataset.labels[best.split.validation]
    single.ensemble_validation = performance(validation_labels, averaged["validation"], threshold=threshold)
    difference = f1_difference(
        validation_labels,
        best.probabilities["validation"],
        averaged["validation"],
        threshold=threshold,
        n_resamples=n_resamples,
    )
    if difference.low > 0:
        single.reason = (
            f"validation shows the seed ensemble clearly worse: best repeat minus ensemble F1 {difference.text()} "
            "(paired bootstrap)"
        )
        return single
    reason = (
        "the seed ensemble, deployed unless validation shows it clearly worse: best repeat minus ensemble F1 "
        f"{difference.text()} (paired bootstrap; the interval includes 0)"
    )
    deployed = _seed_ensemble(usable, best, averaged, dataset, reason=reason, validation=single.ensemble_validation)
    deployed.left_out = left_out
    return deployed


def _unfit_for_ensemble(trained: TrainedModel) -> str | None:
    """Why a repeat is kept out of its seed ensemble (collapsed, or unhealthy by `Health.problem`), or None."""
    if trained.collapsed:
        return "collapsed: (nearly) one class on validation"
    problem = trained.health.problem if trained.health else None
    return f"unhealthy: it {problem}" if problem else None


def _best_repeat(best: TrainedModel, repeats: list[TrainedModel], *, left_out: dict, unhealthy: bool) -> Deployed:
    """`best` deployed alone, described and with the reason when it is the only usable one (a deterministic
    model's one fit needs none)."""
    if get_spec(best.name).deterministic:
        description, reason = "deterministic: one fit, the seed changes nothing", ""
    else:
        description = f"repeat with seed {best.seed}" + (" (collapsed)" if best.collapsed else "")
        if len(repeats) == 1:
            reason = "only one repeat" + (", and it is unhealthy" if unhealthy else "")
        elif unhealthy:
            reason = f"no repeat is healthy: the best of {len(repeats)} on validation F1, deployed with a warning"
        else:
            reason = "only one repeat is healthy"
    return Deployed(
        model=best.model,
        head=best.head,
        probabilities=best.probabilities,
        description=description,
        reason=reason,
        seeds=(best.seed,),
        best_repeat=best,
        ensemble_validation=None,
        health=best.health,
        left_out=left_out,
        unhealthy=unhealthy,
    )


def _seed_ensemble(
    usable: list[TrainedModel], best: TrainedModel, averaged: dict, dataset: Dataset, *, reason: str, validation
) -> Deployed:
    """One model averaging the outputs of `usable` (for backbone models: one backbone under an averaged head)."""
    if best.head is None:
        model, head = average_of([trained.model for trained in usable], name=best.name), None
    else:
        head = average_of([trained.head for trained in usable], name=HEAD_LAYER)
        model = assemble(best.name, best.model.get_layer(BACKBONE_LAYER), head)
    return Deployed(
        model=model,
        head=head,
        probabilities=averaged,
        description=f"seed ensemble of {len(usable)} repeats",
        reason=reason,
        seeds=tuple(trained.seed for trained in usable),
        best_repeat=best,
        ensemble_validation=validation,
        health=output_health(
            dataset.labels[best.split.train],
            averaged["train"],
            restarts=sum(len(trained.restarts) for trained in usable),
        ),
    )


def _validation_scores(trained: TrainedModel, dataset: Dataset, threshold: float) -> Scores:
    return performance(
        dataset.labels[trained.split.validation], trained.probabilities["validation"], threshold=threshold
    )


def model_result(
    repeats: list[TrainedModel], deployed: Deployed, dataset: Dataset, data: DataInfo, *, threshold: float
) -> ModelResult:
    """The typed record of an architecture's repeats and deployed model (what the comparison reads)."""
    first = repeats[0]
    spec = get_spec(first.name)
    model, member = deployed.model, deployed.best_repeat.model
    split = deployed.best_repeat.split
    repeat_results = tuple(
        RepeatResult(
            seed=trained.seed,
            seed_used=trained.seed_used,
            split_seed=trained.split.random_state,
            train=performance(dataset.labels[trained.split.train], trained.probabilities["train"], threshold=threshold),
            validation=_validation_scores(trained, dataset, threshold),
            epochs_run=trained.epochs_run,
            collapsed=trained.collapsed,
            restarts=tuple(trained.restarts),
            seconds=round(trained.seconds, 2),
            health=trained.health,
        )
        for trained in repeats
    )
    return ModelResult(
        name=spec.name,
        description=spec.description,
        parameters=int(member.count_params()),  # one member of a seed ensemble: `deployed_seeds` says how many
        trainable_parameters=int(sum(int(np.prod(w.shape)) for w in member.trainable_weights)),
        normalization=spec.normalization,
        input_shape=tuple(int(size) for size in model.input_shape[1:]),
        mode=first.mode,
        precision=first.precision,
        view_precision=first.view_precision,
        weights=first.weights,
        threshold=threshold,
        repeats=repeat_results,
        deployed=deployed.description,
        deployed_reason=deployed.reason,
        deployed_seeds=deployed.seeds,
        deployed_health=deployed.health,
        left_out={str(seed): why for seed, why in deployed.left_out.items()},
        unhealthy=deployed.unhealthy,
        train=performance(dataset.labels[split.train], deployed.probabilities["train"], threshold=threshold),
        validation=performance(
            dataset.labels[split.validation], deployed.probabilities["validation"], threshold=threshold
        ),
        validation_brier=brier_score(dataset.labels[split.validation], deployed.probabilities["validation"]),
        best_repeat_validation=_validation_scores(deployed.best_repeat, dataset, threshold),
        ensemble_validation=deployed.ensemble_validation,
        notes=tuple(first.notes),
        data=data,
        split=split.sizes(),
        train_seconds=round(sum(trained.seconds for trained in repeats), 2),
    )


class _Trainer:
    """What the attempts of one training share: data access, the frozen backbone and its features."""

    def __init__(
        self,
        spec: ModelSpec,
        dataset,
        split,
        *,
        weights,
        batch_size,
        faithful,
        augmented_views,
        views_seed,
        cache,
        precision,
    ):
        self.spec, self.dataset, self.split, self.weights = spec, dataset, split, weights
        self.batch_size, self.faithful, self.cache = batch_size, faithful, cache
        self.augmented_views, self.views_seed = augmented_views, views_seed
        self.labels = {part: dataset.labels[getattr(split, part)] for part in ("train", "validation")}
        self.view_precision: str | None = None
        self.logistic_c: list[float] = []
        input_shape = dataset.images.shape[1:]
        if not spec.uses_backbone:
            self.mode, self.precision = "direct", "float32"
            return
        self.vgg16 = vgg16_backbone(weights, input_shape)
        self.backbone = frozen_backbone(spec.features, self.vgg16)
        self.mode = "faithful" if faithful else "fast"
        self.precision = "float32" if faithful else (precision or _feature_precision())
        self.features = None  # fast mode: every image's features (N, ...), a `RowFile` read batch by batch
        self.train_features = None  # models 5 and 6: the training images' pooled features, in memory
        if faithful:
            if spec.standardised:  # the standardisation needs the training features once
                [self.train_features] = compute_features(
                    self.backbone, select_rows(dataset.images, split.train), normalization=spec.normalization
                )
        else:
            self.features = cached_features(
                dataset.images, dataset.content_hash, self.vgg16, cache, kind=spec.features, precision=self.precision
            )
            if spec.standardised:
                self.train_features = np.asarray(self.features[split.train])  # pooled: at most 2,560 per image
            if spec.augmented:
                self.views = self._augmented_views(precision)

    @property
    def restarts_unhealthy(self) -> bool:
        """Whether a training that ends unhealthy is restarted: in fast mode, for a model the seed changes."""
        return not self.faithful and not self.spec.deterministic

    def notes(self) -> list[str]:
        """How this model was trained, in a few lines for the reports."""
        spec, notes = self.spec, []
        if not spec.uses_backbone:
            notes.append(
                "the study's start: Keras' default initialisation (--faithful)"
                if self.faithful
                else "healthy start: bottleneck units centred on the training images (each fires on half of them) and "
                "the prediction layer's kernel at zero, so the Dense(4, relu) bottleneck stays alive; architecture, "
                "optimizer and learning rate are the study's (--faithful starts as the study did)"
            )
        if spec.uses_backbone and not self.faithful:
            notes.append(
                f"head trained on frozen VGG16 features computed once in {self.precision} "
                f"(cache: {self.cache.hits} reused, {self.cache.misses} computed)"
            )
        if spec.augmented:
            notes.append(
                "augmentation applied on the fly to every batch (study-faithful)"
                if self.faithful
                else f"augmentation approximated by {self.augmented_views} pre-drawn augmented views per training "
                f"image (features in {self.view_precision}, drawn from seed {self.views_seed}), one drawn at random "
                "per image and epoch (fast mode; --faithful augments every batch on the fly)"
            )
        if spec.early_stopping:
            weights = balanced_class_weights(self.labels["train"])
            notes.append(
                f"early stopping on validation loss (patience {EARLY_STOPPING_PATIENCE}, best weights kept), "
                "learning rate halved on plateau" + (f", class weights {weights}" if weights else "")
            )
        if self.logistic_c:
            grid, chosen = (", ".join(f"{c:g}" for c in values) for values in (LOGISTIC_CS, self.logistic_c))
            notes.append(
                "logistic head fitted by L-BFGS, L2 penalty C chosen by 5-fold cross-validation on the training part "
                f"(grid {grid}; chosen {chosen}); validation stays unseen"
            )
        return notes + self.cache.warnings

    def _augmented_views(self, precision: str | None) -> list[np.ndarray]:
        """K `RowFile`s (n_train, ...): backbone features of K augmented copies of the training images, cached."""
        self.view_precision = precision or backbone_precision()  # views approximate anyway: take the fast path
        train_images = select_rows(self.dataset.images, self.split.train)
        from helmetlib.features import pass_extractor

        def view(index: int) -> np.ndarray:
            key = pass_key(
                self.dataset.content_hash,
                self.vgg16,
                self.spec.normalization,
                self.view_precision,
                f"augmented-{index}",
                seed=self.views_seed,
                indices=indices_digest(self.split.train),
            )
            shape = (len(train_images), *self.backbone.output_shape[1:])
            [array] = self.cache.get_or_compute(
                key,
                ("block5",),
                lambda outputs, start, on_batch: compute_features(
                    pass_extractor(self.vgg16, self.spec.normalization, self.view_precision),
                    train_images,
                    normalization=self.spec.normalization,
                    augmenter=augmentation(self.views_seed + index),
                    outputs=outputs,
                    start=start,
                    on_batch=on_batch,
                ),
                shapes=[shape],
            )
            return array

        return [view(index) for index in range(self.augmented_views)]

    def _normalised(self, images: np.ndarray) -> np.ndarray:
        return normalize(np.asarray(images), self.spec.normalization)

    def fit(self, seed: int, epochs: int, label: str, verbose: int):
        """One attempt: (full model, head or None, history, epoch of collapse or None)."""
        spec = self.spec
        keras.utils.set_random_seed(seed)  # after the features: training never depends on the cache's state
        train, validation = self.split.train, self.split.validation
        if not spec.uses_backbone:
            model = simple_cnn(self.dataset.images.shape[1:])
            if not self.faithful:
                healthy_start(model, self._normalised(self.dataset.images[train[:HEALTHY_START_SAMPLE_SIZE]]))
            compile_model(model, spec.learning_rate)
            data = ImageBatches(
                self.dataset.images, train, self.labels["train"], self.batch_size, seed=seed, transform=self._normalised
            )
            sample = self._normalised(self.dataset.images[train[:COLLAPSE_SAMPLE_SIZE]])
            history, collapsed_at = self._fit(model, data, self._image_validation(), sample, epochs, label, verbose)
            return model, None, history, collapsed_at
        mean, variance = self._standardisation()
        head = build_head(spec, self.backbone.output_shape[1:], mean=mean, variance=variance)
        model = assemble(spec.name, self.backbone, head)
        if spec.deterministic:  # closed form
            return model, head, self._fit_logistic(head, seed), None
        if self.faithful:
            compile_model(model, spec.learning_rate)
            transform = self._augment_on_the_fly(seed) if spec.augmented else self._normalised
            data = ImageBatches(
                self.dataset.images, train, self.labels["train"], self.batch_size, seed=seed, transform=transform
            )
            sample = self._normalised(self.dataset.images[train[:COLLAPSE_SAMPLE_SIZE]])
            history, collapsed_at = self._fit(model, data, self._image_validation(), sample, epochs, label, verbose)
        else:
            compile_model(head, spec.learning_rate)
            if spec.augmented:
                data = ViewBatches(self.views, self.labels["train"], self.batch_size, seed=seed)
            else:
                data = ImageBatches(self.features, train, self.labels["train"], self.batch_size, seed=seed)
            validation_data = ImageBatches(self.features, validation, self.labels["validation"], self.batch_size)
            sample = np.asarray(self.features[train[:COLLAPSE_SAMPLE_SIZE]])
            history, collapsed_at = self._fit(head, data, validation_data, sample, epochs, label, verbose)
        return model, head, history, collapsed_at

    def _image_validation(self) -> ImageBatches:
        return ImageBatches(
            self.dataset.images,
            self.split.validation,
            self.labels["validation"],
            self.batch_size,
            transform=self._normalised,
        )

    def _augment_on_the_fly(self, seed: int):
        augmenter = augmentation(seed)
        return lambda images: np.asarray(augmenter(self._normalised(images), training=True))

    def _fit(self, model, data, validation_data, sample, epochs, label, verbose):
        monitor = CollapseMonitor(sample)
        callbacks = [monitor, ProgressLog(label, epochs)]
        class_weight = None
        if self.spec.early_stopping:
            callbacks += [
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=EARLY_STOPPING_PATIENCE, restore_best_weights=True
                ),
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6),
            ]
            class_weight = balanced_class_weights(self.labels["train"])
        history = model.fit(
            data,
            validation_data=validation_data,
            epochs=epochs,
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=verbose,
        )
        history = {key: [float(v) for v in values] for key, values in history.history.items()}
        return history, monitor.collapsed_at

    def _standardisation(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-feature mean and variance of the training features (models 5 and 6), else (None, None)."""
        if not self.spec.standardised:
            return None, None
        train = self.train_features
        variance = train.var(axis=0)
        # near-constant features (rare activations of a channel) would otherwise blow up to huge values
        return train.mean(axis=0), np.maximum(variance, VARIANCE_FLOOR * variance.mean())

    def _fit_logistic(self, head: keras.Model, seed: int) -> dict[str, list[float]]:
        """Model 6: L2-regularised logistic regression on the standardised features, C by cross-validation."""
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        mean, variance = self._standardisation()
        scale = np.maximum(np.sqrt(variance), keras.config.epsilon())
        x = (self.train_features - mean) / scale
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        fit = LogisticRegressionCV(
            Cs=list(LOGISTIC_CS),
            l1_ratios=(0.0,),  # pure L2
            cv=folds,
            scoring="neg_log_loss",
            max_iter=5000,
            use_legacy_attributes=False,
        )
        fit.fit(x, self.labels["train"])
        head.get_layer("prediction").set_weights([fit.coef_.T.astype(np.float32), fit.intercept_.astype(np.float32)])
        self.logistic_c.append(float(fit.C_))
        return {}

    def health(self, model, head, train_probabilities: np.ndarray, *, restarts: int) -> Health:
        """Dead units of the ReLU layers feeding the output, measured on the first training inputs (read
        `FEATURE_ROWS_PER_READ` rows at a time), and the outputs' identity and spread over the whole training part."""
        rows = self.split.train[:HEALTH_SAMPLE_SIZE]
        source = self.features if head is not None and self.features is not None else self.dataset.images
        chunks = batches(select_rows(source, rows), FEATURE_ROWS_PER_READ)
        if source is self.dataset.images:
            chunks = (self._normalised(chunk) for chunk in chunks)
            if head is not None:  # faithful: the head's inputs come from the backbone
                chunks = (self.backbone.predict(chunk, verbose=0) for chunk in chunks)
        parts = [relu_activations(head if head is not None else model, chunk) for chunk in chunks]
        activations = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return output_health(
            self.labels["train"],
            train_probabilities,
            layers=layer_health(activations, self.dataset.labels[rows]),
            restarts=restarts,
        )

    def predict(self, model, head) -> dict[str, np.ndarray]:
        """P(helmet) for the train and validation parts (float64)."""
        if self.spec.uses_backbone and not self.faithful:
            return {
                part: _predict_rows(head, self.features, getattr(self.split, part)) for part in ("train", "validation")
            }
        return {
            part: predict_proba(
                model,
                select_rows(self.dataset.images, getattr(self.split, part)),
                normalization=self.spec.normalization,
            )
            for part in ("train", "validation")
        }


EARLY_STOPPING_PATIENCE = 5


def _feature_precision() -> str:
    from helmetlib.features import precision_override

    return precision_override() or "float32"  # float32: the study's computation


def relu_activations(model: keras.Model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """{layer name: activations (n, units)} of every Dense layer of `model` with a ReLU activation (the CNN's
    bottleneck, an MLP head's hidden layers) on `inputs` (n, ...)."""
    layers = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense) and keras.activations.serialize(layer.activation) == "relu"
    ]
    if not layers:
        return {}
    outputs = keras.Model(model.inputs, [layer.output for layer in layers]).predict(inputs, verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return {layer.name: values for layer, values in zip(layers, outputs, strict=True)}


def balanced_class_weights(labels: np.ndarray, *, tolerance: float = 0.1) -> dict[int, float] | None:
    """Weights n / (2 n_class) when the smaller class is more than `tolerance` below the larger, else None."""
    counts = np.bincount(np.asarray(labels), minlength=2)
    if counts.min() >= (1 - tolerance) * counts.max():
        return None
    return {label: float(len(labels) / (2 * count)) for label, count in enumerate(counts)}


def predict_proba(model: keras.Model, images_rgb: np.ndarray, *, normalization: str = "unit") -> np.ndarray:
    """P(helmet) (N,) float64 for uint8 RGB images (N, H, W, 3) through a full image model, batch by batch."""
    parts = [_predict(model, normalize(batch, normalization)) for batch in batches(images_rgb, 256)]
    return np.concatenate(parts) if parts else np.empty(0)


def _predict(model: keras.Model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return model.predict(x, batch_size=batch_size, verbose=0).ravel().astype(np.float64)


def _predict_rows(head: keras.Model, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """P(helmet) (k,) float64 of a head for the rows `indices` (k,) of cached features (N, ...), read
    `FEATURE_ROWS_PER_READ` rows at a time."""
    parts = [_predict(head, chunk) for chunk in batches(select_rows(features, indices), FEATURE_ROWS_PER_READ)]
    return np.concatenate(parts) if parts else np.empty(0)

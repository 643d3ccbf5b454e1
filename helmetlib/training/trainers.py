"""One trainer per head family, behind one interface: `make_trainer(inputs)` gives the trainer of a model, whose
`fit(seed, epochs, label, verbose)` makes one attempt (`Attempt`), `predict` scores the train and validation parts,
`health` measures the attempt and `details` says how it ran (`TrainingDetails`, facts the pages put in words).

- `CnnTrainer`: the study's CNN on images, end to end (with the healthy start in fast mode).
- `FeatureHeadTrainer`: a head on the frozen VGG16: in fast mode on backbone features computed once (cached),
  with `faithful` through the backbone on every batch (the study's computation).
- `AugmentedViewsTrainer`: model 4, on pre-drawn augmented views (fast) or augmenting every batch (faithful).
- `LogisticTrainer`: model 6, a logistic regression fitted in closed form on standardised pooled features.

The attempts of one training share what the trainer holds (data access, the backbone, its features), so restarts
and repeats never recompute them. The test part is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from helmetlib.core.backend import keras
from helmetlib.core.preprocess import normalize
from helmetlib.core.specs import ModelSpec
from helmetlib.core.timings import timed
from helmetlib.core.weights import WeightsChoice
from helmetlib.data.dataset import Dataset, batches, select_rows
from helmetlib.data.splits import Split, indices_digest
from helmetlib.evaluation.health import HEALTH_SAMPLE_SIZE, Health, layer_health, output_health
from helmetlib.evaluation.results import TrainingDetails
from helmetlib.models.builders import (
    assemble,
    augmentation,
    build_head,
    compile_model,
    frozen_backbone,
    healthy_start,
    simple_cnn,
    vgg16_backbone,
    with_weights_dtype,
)
from helmetlib.models.features import (
    FeatureCache,
    backbone_precision,
    cached_features,
    compute_features,
    feature_precision,
    pass_extractor,
    pass_key,
)
from helmetlib.training.batches import (
    FEATURE_ROWS_PER_READ,
    CollapseMonitor,
    HealthCheck,
    ImageBatches,
    ProgressLog,
    ShuffledImageBatches,
    balanced_class_weights,
    batches_in_order,
    predict_proba,
    predict_rows,
    relu_activations,
    training_batches,
)

LOGISTIC_CS = (0.001, 0.01, 0.1, 1.0, 10.0)
VARIANCE_FLOOR = 1e-3  # of the mean feature variance: the smallest variance a standardised feature is divided by
COLLAPSE_SAMPLE_SIZE = 64  # training inputs whose output span tells a collapse
HEALTHY_START_SAMPLE_SIZE = 64  # training images that set the CNN's healthy start
EARLY_STOPPING_PATIENCE = 5
PARTS = ("train", "validation")


@dataclass(frozen=True)
class TrainingInputs:
    """What a trainer is fed: the model's spec, the data and its split, and how to train (batch size, faithful or
    fast, augmented views drawn from `views_seed`, the feature cache, the features' precision: None for the
    mode's own)."""

    spec: ModelSpec
    dataset: Dataset
    split: Split
    weights: WeightsChoice | None
    batch_size: int
    faithful: bool
    augmented_views: int
    views_seed: int
    cache: FeatureCache
    precision: str | None = None


@dataclass
class Attempt:
    """One training attempt: the full image model, its head (None for the CNN), the per-epoch history, the
    epoch the output went constant (None when it did not) and, for a training stopped by its health check, the
    health measured then."""

    model: keras.Model
    head: keras.Model | None
    history: dict[str, list[float]]
    collapsed_at: int | None
    unhealthy: Health | None = None


def make_trainer(inputs: TrainingInputs) -> Trainer:
    """The trainer of `inputs.spec`'s head family."""
    spec = inputs.spec
    if not spec.uses_backbone:
        return CnnTrainer(inputs)
    if spec.deterministic:
        return LogisticTrainer(inputs)
    return AugmentedViewsTrainer(inputs) if spec.augmented else FeatureHeadTrainer(inputs)


class Trainer:
    """The interface every head family implements, and what they share: labels, Keras fits with the collapse
    monitor and progress lines, health and predictions on the images."""

    family = ""

    def __init__(self, inputs: TrainingInputs):
        self.inputs, self.spec, self.split, self.weights = inputs, inputs.spec, inputs.split, inputs.weights
        self.labels = {part: inputs.dataset.labels[getattr(inputs.split, part)] for part in PARTS}
        self.mode, self.precision, self.view_precision = "direct", "float32", None

    @property
    def restarts_unhealthy(self) -> bool:
        """Whether an unhealthy training (at its health check or its end) is restarted: in fast mode, for a model
        the seed changes."""
        return not self.inputs.faithful and not self.spec.deterministic

    def fit(self, seed: int, epochs: int, label: str, verbose: int, *, check_health_at: int | None = None) -> Attempt:
        """One attempt; with `check_health_at`, a training unhealthy at the end of that epoch stops there
        (`HealthCheck`)."""
        raise NotImplementedError

    def details(self) -> TrainingDetails:
        """How this trainer ran, as facts."""
        return TrainingDetails(family=self.family, faithful=self.inputs.faithful)

    def predict(self, attempt: Attempt) -> dict[str, np.ndarray]:
        """P(helmet) (n_part,) float64 for the train and validation parts, through the full image model."""
        images, normalization = self.inputs.dataset.images, self.spec.normalization
        return {
            part: predict_proba(
                attempt.model, select_rows(images, getattr(self.split, part)), normalization=normalization
            )
            for part in PARTS
        }

    def health(self, attempt: Attempt, train_probabilities: np.ndarray, *, restarts: int) -> Health:
        """Dead units of the ReLU layers feeding the output, measured on the first training inputs, and the
        outputs' identity and spread over the whole training part."""
        rows = self.split.train[:HEALTH_SAMPLE_SIZE]
        model = attempt.head if attempt.head is not None else attempt.model
        parts = [relu_activations(model, chunk) for chunk in self._health_inputs(rows)]
        activations = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return output_health(
            self.labels["train"],
            train_probabilities,
            layers=layer_health(activations, self.inputs.dataset.labels[rows]),
            restarts=restarts,
        )

    def _health_inputs(self, rows: np.ndarray):
        """The inputs (chunks of at most `FEATURE_ROWS_PER_READ`) of the model `health` measures, for `rows`."""
        chunks = batches(select_rows(self.inputs.dataset.images, rows), FEATURE_ROWS_PER_READ)
        return (self._normalised(chunk) for chunk in chunks)

    def _normalised(self, images: np.ndarray) -> np.ndarray:
        return normalize(np.asarray(images), self.spec.normalization)

    def _images_in_order(self, part: str):
        """The normalised images of `part` and their labels, in batches, in order (`batches_in_order`)."""
        images, rows = self.inputs.dataset.images, getattr(self.split, part)
        return batches_in_order(images, rows, self.labels[part], self.inputs.batch_size, transform=self._normalised)

    def _health_check(self, training_inputs, epoch: int | None) -> HealthCheck | None:
        """The `HealthCheck` at the end of `epoch` on `training_inputs()` (the training part in order), or None."""
        return HealthCheck(training_inputs(), self.labels["train"], epoch) if epoch else None

    def _image_sample(self) -> np.ndarray:
        return self._normalised(self.inputs.dataset.images[self.split.train[:COLLAPSE_SAMPLE_SIZE]])

    def _fit(
        self, model, data, validation_data, sample, epochs, label, verbose, steps_per_epoch, health_check=None
    ) -> tuple[dict, int | None, Health | None]:
        """Keras' fit with the collapse monitor, progress lines and an optional `HealthCheck` (and, for the GAP
        head, early stopping) on endless `data` that comes shuffled (a head's `training_batches`, the CNN's
        `ShuffledImageBatches`), `steps_per_epoch` batches an epoch. Returns the history, the epoch the output
        went constant and the health that stopped the training (Nones when not)."""
        monitor = CollapseMonitor(sample)
        callbacks = [monitor, ProgressLog(label, epochs), *([health_check] if health_check else [])]
        class_weight = None
        if self.spec.early_stopping:
            callbacks += [
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=EARLY_STOPPING_PATIENCE, restore_best_weights=True
                ),
                keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6),
            ]
            class_weight = balanced_class_weights(self.labels["train"])
        with timed("training"):
            history = model.fit(
                data,
                validation_data=validation_data,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                shuffle=False,
                callbacks=callbacks,
                class_weight=class_weight,
                verbose=verbose,
            )
        history = {key: [float(v) for v in values] for key, values in history.history.items()}
        return history, monitor.collapsed_at, health_check.unhealthy if health_check else None


class CnnTrainer(Trainer):
    """The study's CNN on images, end to end; fast mode starts it healthy (`models.healthy_start`) and trains it in
    bfloat16 where the hardware computes in it (`backbone_precision`; Keras' mixed precision: float32 weights, the
    prediction layer and the loss in float32), then keeps a float32 copy of the same weights (what is scored, saved
    and exported). `faithful` trains as the study did, in float32."""

    family = "cnn"

    def __init__(self, inputs: TrainingInputs):
        super().__init__(inputs)
        if not inputs.faithful:
            self.precision = inputs.precision or ("bfloat16" if backbone_precision() == "bfloat16" else "float32")

    def fit(self, seed: int, epochs: int, label: str, verbose: int, *, check_health_at: int | None = None) -> Attempt:
        keras.utils.set_random_seed(seed)
        mixed = self.precision != "float32"
        model = simple_cnn(
            self.inputs.dataset.images.shape[1:], dtype_policy=f"mixed_{self.precision}" if mixed else None
        )
        if not self.inputs.faithful:
            images = self.inputs.dataset.images[self.split.train[:HEALTHY_START_SAMPLE_SIZE]]
            healthy_start(model, self._normalised(images))
        compile_model(model, self.spec.learning_rate)
        batches_of = (self.inputs.dataset.images, self.split.train, self.labels["train"], self.inputs.batch_size)
        data = ShuffledImageBatches(*batches_of, seed=seed, transform=self._normalised)
        check = self._health_check(lambda: ImageBatches(*batches_of, transform=self._normalised), check_health_at)
        validation, sample = self._images_in_order("validation"), self._image_sample()
        fitted = self._fit(model, data, validation, sample, epochs, label, verbose, data.steps, check)
        return Attempt(with_weights_dtype(model, "float32") if mixed else model, None, *fitted)

    def details(self) -> TrainingDetails:
        return TrainingDetails(
            family=self.family, faithful=self.inputs.faithful, healthy_start=not self.inputs.faithful
        )


class FeatureHeadTrainer(Trainer):
    """A head on the frozen VGG16 backbone: in fast mode trained on every image's backbone features computed once
    (a cached `RowFile`, read batch by batch); with `faithful` through the backbone on every batch."""

    family = "feature_head"

    def __init__(self, inputs: TrainingInputs):
        super().__init__(inputs)
        spec, dataset = self.spec, inputs.dataset
        self.vgg16 = vgg16_backbone(inputs.weights, dataset.images.shape[1:])
        self.backbone = frozen_backbone(spec.features, self.vgg16)
        self.mode = "faithful" if inputs.faithful else "fast"
        self.precision = inputs.precision or feature_precision(faithful=inputs.faithful)
        self.features = None  # fast mode: every image's features (N, ...)
        self.train_features = None  # standardised heads: the training images' pooled features, in memory
        if inputs.faithful:
            if spec.standardised:  # the standardisation needs the training features once
                [self.train_features] = compute_features(
                    self.backbone, select_rows(dataset.images, self.split.train), normalization=spec.normalization
                )
            return
        self.features = cached_features(
            dataset.images, dataset.content_hash, self.vgg16, inputs.cache, kind=spec.features, precision=self.precision
        )
        if spec.standardised:
            self.train_features = np.asarray(self.features[self.split.train])  # pooled: at most 2,560 per image

    def fit(self, seed: int, epochs: int, label: str, verbose: int, *, check_health_at: int | None = None) -> Attempt:
        keras.utils.set_random_seed(seed)  # after the features: training never depends on the cache's state
        head, model = self._build()
        if self.inputs.faithful:
            compile_model(model, self.spec.learning_rate)
            data, steps = training_batches(
                [self.inputs.dataset.images],
                self.split.train,
                self.labels["train"],
                self.inputs.batch_size,
                seed=seed,
                epochs=epochs,
                transform=self._faithful_transform(seed),
            )
            validation, sample, check = self._images_in_order("validation"), self._image_sample(), None
        else:
            compile_model(head, self.spec.learning_rate)
            data, steps = self._feature_batches(seed, epochs)
            validation = batches_in_order(
                self.features, self.split.validation, self.labels["validation"], self.inputs.batch_size
            )
            sample = np.asarray(self.features[self.split.train[:COLLAPSE_SAMPLE_SIZE]])
            check = self._health_check(
                lambda: batches_in_order(self.features, self.split.train, self.labels["train"], self.inputs.batch_size),
                check_health_at,
            )
        fitted = model if self.inputs.faithful else head
        return Attempt(model, head, *self._fit(fitted, data, validation, sample, epochs, label, verbose, steps, check))

    def details(self) -> TrainingDetails:
        cache = self.inputs.cache
        weights = balanced_class_weights(self.labels["train"]) if self.spec.early_stopping else None
        return TrainingDetails(
            family=self.family,
            faithful=self.inputs.faithful,
            cache_reused=cache.hits,
            cache_computed=cache.misses,
            cache_warnings=tuple(cache.warnings),
            early_stopping_patience=EARLY_STOPPING_PATIENCE if self.spec.early_stopping else 0,
            class_weights={str(label): weight for label, weight in weights.items()} if weights else None,
        )

    def predict(self, attempt: Attempt) -> dict[str, np.ndarray]:
        if self.inputs.faithful:
            return super().predict(attempt)
        return {part: predict_rows(attempt.head, self.features, getattr(self.split, part)) for part in PARTS}

    def _build(self) -> tuple[keras.Model, keras.Model]:
        """(head, full model: the backbone under the head)."""
        mean, variance = self._standardisation()
        head = build_head(self.spec, self.backbone.output_shape[1:], mean=mean, variance=variance)
        return head, assemble(self.spec.name, self.backbone, head)

    def _feature_batches(self, seed: int, epochs: int):
        """(batches, steps per epoch) of the training part's cached features."""
        return training_batches(
            [self.features], self.split.train, self.labels["train"], self.inputs.batch_size, seed=seed, epochs=epochs
        )

    def _faithful_transform(self, seed: int):
        return self._normalised

    def _health_inputs(self, rows: np.ndarray):
        if self.features is not None:
            return batches(select_rows(self.features, rows), FEATURE_ROWS_PER_READ)
        return (self.backbone.predict(chunk, verbose=0) for chunk in super()._health_inputs(rows))

    def _standardisation(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-feature mean and variance of the training features (standardised heads), else (None, None)."""
        if not self.spec.standardised:
            return None, None
        variance = self.train_features.var(axis=0)
        # near-constant features (rare activations of a channel) would otherwise blow up to huge values
        return self.train_features.mean(axis=0), np.maximum(variance, VARIANCE_FLOOR * variance.mean())


class AugmentedViewsTrainer(FeatureHeadTrainer):
    """Model 4: in fast mode the head trains on K pre-drawn augmented views per training image (their backbone
    features cached, in the faster `backbone_precision()`), one picked at random per image and epoch; with
    `faithful`, every batch is augmented on the fly."""

    family = "augmented_views"

    def __init__(self, inputs: TrainingInputs):
        super().__init__(inputs)
        if not inputs.faithful:
            self.view_precision = inputs.precision or backbone_precision()  # views approximate anyway: fast path
            self.views = [self._view(index) for index in range(inputs.augmented_views)]

    def details(self) -> TrainingDetails:
        details = super().details()
        if self.inputs.faithful:
            return details
        return replace(details, augmented_views=self.inputs.augmented_views, views_seed=self.inputs.views_seed)

    def _feature_batches(self, seed: int, epochs: int):
        """(batches, steps per epoch) of the augmented views' features, one view per image and epoch."""
        rows = np.arange(len(self.split.train))
        return training_batches(
            self.views, rows, self.labels["train"], self.inputs.batch_size, seed=seed, epochs=epochs
        )

    def _faithful_transform(self, seed: int):
        augmenter = augmentation(seed)
        return lambda images: np.asarray(augmenter(self._normalised(images), training=True))

    def _view(self, index: int) -> np.ndarray:
        """A `RowFile` (n_train, ...): the backbone features of augmented view `index` of the training images."""
        inputs, spec = self.inputs, self.spec
        train_images = select_rows(inputs.dataset.images, self.split.train)
        key = pass_key(
            inputs.dataset.content_hash,
            self.vgg16,
            spec.normalization,
            self.view_precision,
            f"augmented-{index}",
            seed=inputs.views_seed,
            indices=indices_digest(self.split.train),
        )
        [array] = inputs.cache.get_or_compute(
            key,
            ("block5",),
            lambda outputs, start, on_batch: compute_features(
                pass_extractor(self.vgg16, spec.normalization, self.view_precision),
                train_images,
                normalization=spec.normalization,
                augmenter=augmentation(inputs.views_seed + index),
                outputs=outputs,
                start=start,
                on_batch=on_batch,
            ),
            shapes=[(len(train_images), *self.backbone.output_shape[1:])],
        )
        return array


class LogisticTrainer(FeatureHeadTrainer):
    """Model 6: L2-regularised logistic regression on the standardised pooled features, its penalty C chosen by
    5-fold cross-validation on the training part (validation stays unseen); closed form, no epochs."""

    family = "logistic"

    def __init__(self, inputs: TrainingInputs):
        super().__init__(inputs)
        self.chosen: list[float] = []

    def fit(self, seed: int, epochs: int, label: str, verbose: int, *, check_health_at: int | None = None) -> Attempt:
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from threadpoolctl import threadpool_limits

        head, model = self._build()
        mean, variance = self._standardisation()
        scale = np.maximum(np.sqrt(variance), keras.config.epsilon())
        fit = LogisticRegressionCV(
            Cs=list(LOGISTIC_CS),
            l1_ratios=(0.0,),  # pure L2
            cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=seed),
            scoring="neg_log_loss",
            max_iter=5000,
            use_legacy_attributes=False,
        )
        # one BLAS thread: L-BFGS makes thousands of small products with the (n, 2,560) features, which OpenBLAS's
        # threads slowed 14-fold (6.6 s against 0.45 s on helmet-dev, 2 cores, beside TensorFlow's threads)
        with timed("training"), threadpool_limits(limits=1, user_api="blas"):
            fit.fit((self.train_features - mean) / scale, self.labels["train"])
        head.get_layer("prediction").set_weights([fit.coef_.T.astype(np.float32), fit.intercept_.astype(np.float32)])
        self.chosen.append(float(fit.C_))
        return Attempt(model, head, {}, None)

    def details(self) -> TrainingDetails:
        return replace(super().details(), logistic_grid=LOGISTIC_CS, logistic_chosen=tuple(self.chosen))

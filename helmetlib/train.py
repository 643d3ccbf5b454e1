"""Train a study model on a split: a fast path over cached backbone features, or the study-faithful path."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from helmetlib.data import Dataset
from helmetlib.features import (
    FeatureCache,
    backbone_precision,
    cached_features,
    compute_features,
    feature_extractor,
    feature_key,
    precision_override,
)
from helmetlib.models import BACKBONE_LAYER, HEAD_LAYER, augmentation, build_model, compile_model
from helmetlib.preprocess import normalize
from helmetlib.specs import AUGMENTED_VIEWS, BATCH_SIZE, EPOCHS, SEED, get_spec
from helmetlib.splits import Split
from helmetlib.weights import WeightsChoice, resolve_weights


@dataclass
class TrainedModel:
    """A trained study model with its history, train/validation probabilities and how it was trained."""

    name: str
    model: keras.Model
    history: dict[str, list[float]]
    probabilities: dict[str, np.ndarray]
    weights: WeightsChoice | str | Path | None
    mode: str
    precision: str
    seconds: float
    view_precision: str | None = None
    notes: list[str] = field(default_factory=list)


def train_model(
    name: str,
    dataset: Dataset,
    split: Split,
    *,
    weights: str | Path | WeightsChoice | None = "imagenet",
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    faithful: bool = False,
    augmented_views: int = AUGMENTED_VIEWS,
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    verbose: int = 0,
) -> TrainedModel:
    """Build `name`, train it on `split.train` with `split.validation` for validation, predict both parts.

    Fast mode (default) trains a VGG16 model's head on backbone features computed once (cached in `cache_dir`),
    in float32 unless `precision` says otherwise, and model 4 on `augmented_views` pre-drawn augmented views per
    training image, computed in the faster `backbone_precision()` (bfloat16 on capable CPUs). `faithful=True` runs the
    study's computation instead: the frozen backbone on every batch of every epoch, augmentation on the fly.
    The test part is never touched.
    """
    spec = get_spec(name)
    choice = weights if isinstance(weights, WeightsChoice) or not spec.uses_backbone else resolve_weights(weights)
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = build_model(name, weights=choice, input_shape=dataset.images.shape[1:])
    parts = {"train": split.train, "validation": split.validation}
    y = {part: dataset.labels[indices] for part, indices in parts.items()}
    fit_options = {"epochs": epochs, "batch_size": batch_size, "verbose": verbose}
    notes: list[str] = []
    if spec.early_stopping:
        fit_options["callbacks"] = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6),
        ]
        fit_options["class_weight"] = balanced_class_weights(y["train"])
        notes.append(
            "early stopping on validation loss (patience 5, best weights kept), learning rate halved on plateau"
            + (f", class weights {fit_options['class_weight']}" if fit_options["class_weight"] else "")
        )
    view_precision = None  # set when model 4 trains on pre-drawn augmented views

    if faithful or not spec.uses_backbone:
        x = {part: normalize(dataset.images[indices], spec.normalization) for part, indices in parts.items()}
        if spec.augmented:
            train_data = _augmented_batches(x["train"], y["train"], batch_size, seed)
            history = model.fit(train_data, validation_data=(x["validation"], y["validation"]), **fit_options)
            notes.append("augmentation applied on the fly to every batch (study-faithful)")
        else:
            history = model.fit(
                x["train"], y["train"], validation_data=(x["validation"], y["validation"]), **fit_options
            )
        probabilities = {part: _predict(model, x[part], batch_size) for part in parts}
        mode, used_precision = ("faithful" if spec.uses_backbone else "direct"), "float32"
    else:
        used_precision = precision or precision_override() or "float32"  # float32: the study's computation
        backbone, head = model.get_layer(BACKBONE_LAYER), model.get_layer(HEAD_LAYER)
        cache = FeatureCache(cache_dir)
        features = cached_features(
            dataset.images,
            dataset.content_hash,
            backbone,
            cache,
            normalization=spec.normalization,
            precision=used_precision,
        )
        f = {part: features[indices] for part, indices in parts.items()}
        compile_model(head, spec.learning_rate)
        if spec.augmented:
            view_precision = precision or backbone_precision()  # views approximate anyway: take the fast path
            train_images = dataset.images[split.train]

            def view_features(view: int) -> np.ndarray:
                key = feature_key(
                    dataset.content_hash, backbone, spec.normalization, view_precision, f"augmented-{view}"
                )
                return cache.get_or_compute(
                    key | {"seed": seed, "indices": _digest(split.train)},
                    lambda: compute_features(
                        feature_extractor(backbone, view_precision),
                        train_images,
                        normalization=spec.normalization,
                        augmenter=augmentation(seed + view),
                    ),
                )

            views = np.stack([view_features(view) for view in range(augmented_views)])
            train_data = _ViewBatches(views, y["train"], batch_size, seed)
            history = head.fit(
                train_data, validation_data=(f["validation"], y["validation"]), epochs=epochs, verbose=verbose
            )
            notes.append(
                f"augmentation approximated by {augmented_views} pre-drawn augmented views per training image "
                f"(features in {view_precision}), one drawn at random per image and epoch "
                "(fast mode; --faithful augments every batch on the fly)"
            )
        else:
            history = head.fit(
                f["train"], y["train"], validation_data=(f["validation"], y["validation"]), **fit_options
            )
        probabilities = {part: _predict(head, f[part], batch_size) for part in parts}
        mode = "fast"
        notes.append(
            f"head trained on frozen VGG16 features computed once in {used_precision} "
            f"(cache: {cache.hits} reused, {cache.misses} computed)"
        )
    return TrainedModel(
        name=name,
        model=model,
        history={key: [float(v) for v in values] for key, values in history.history.items()},
        probabilities=probabilities,
        weights=choice,
        mode=mode,
        precision=used_precision,
        view_precision=view_precision,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def balanced_class_weights(labels: np.ndarray, *, tolerance: float = 0.1) -> dict[int, float] | None:
    """Weights n / (2 n_class) when the smaller class is more than `tolerance` below the larger, else None."""
    counts = np.bincount(np.asarray(labels), minlength=2)
    if counts.min() >= (1 - tolerance) * counts.max():
        return None
    return {label: float(len(labels) / (2 * count)) for label, count in enumerate(counts)}


def predict_proba(
    model: keras.Model, images_rgb: np.ndarray, *, normalization: str = "unit", batch_size: int = 32
) -> np.ndarray:
    """P(helmet) for uint8 RGB images (N, H, W, 3) through a full image model."""
    return _predict(model, normalize(images_rgb, normalization), batch_size)


def _predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return model.predict(x, batch_size=batch_size, verbose=0).ravel().astype(np.float64)


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def _augmented_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """tf.data batches of (augmented image, label), reshuffled every epoch, augmentation drawn per batch."""
    import tensorflow as tf

    augmenter = augmentation(seed)
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda images, labels: (augmenter(images, training=True), labels), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


class _ViewBatches(keras.utils.PyDataset):
    """Batches over pre-computed augmented views (K, N, ...): each epoch picks one view per image and reshuffles."""

    def __init__(self, views: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.views, self.labels, self.batch_size = views, labels, batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.views[self.choice[rows], rows], self.labels[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.labels))
        self.choice = self.rng.integers(len(self.views), size=len(self.labels))


def save_trained(trained: TrainedModel, folder: str | Path) -> dict[str, Path]:
    """Write `<name>.keras`, `<name>.history.json` and `<name>.probabilities.npz` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "model": folder / f"{trained.name}.keras",
        "history": folder / f"{trained.name}.history.json",
        "probabilities": folder / f"{trained.name}.probabilities.npz",
    }
    trained.model.save(paths["model"])
    paths["history"].write_text(json.dumps(trained.history, indent=2))
    np.savez(paths["probabilities"], **trained.probabilities)
    return paths

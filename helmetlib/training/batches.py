"""What Keras trains on and what watches it: batches read from (memory-mapped) images or cached features, one
pre-drawn augmented view per image and epoch, the collapse monitor and the runner's progress lines; and
predictions read batch by batch."""

from __future__ import annotations

import math
import os
import random

import numpy as np

from helmetlib.core.backend import keras, tf
from helmetlib.core.env import PROGRESS_ENV
from helmetlib.core.preprocess import normalize
from helmetlib.core.timings import timed
from helmetlib.data.dataset import batches, select_rows
from helmetlib.evaluation.health import Health, output_health

DEAD_OUTPUT_SPAN = 1e-5  # probabilities of a training sample spanning less than this: the output is constant
FEATURE_ROWS_PER_READ = 1024  # rows of cached features read at once for predictions
FEATURES_IN_MEMORY_BYTES = 512 * 2**20  # a head trains from memory on features (or views) up to this size


class ImageBatches(keras.utils.PyDataset):
    """(normalised images, labels) batches read in order from a (memory-mapped) RGB array at `indices`, batch by
    batch: what is scored of a part too large to hold in memory (`batches_in_order`), and the CNN's training part
    at its health check."""

    def __init__(self, source, indices, labels, batch_size, *, transform=None):
        super().__init__()
        self.source, self.indices, self.labels = source, np.asarray(indices), labels
        self.batch_size, self.transform = batch_size, transform

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        x = self.source[self.indices[rows]]
        x = self.transform(x) if self.transform is not None else np.asarray(x)
        return x, self.labels[rows]


class ShuffledImageBatches(keras.utils.PyDataset):
    """The CNN's training batches: (normalised images, labels) of the rows `indices` of a (memory-mapped) RGB
    array, endless (batch i is batch i % steps of epoch i // steps: fit with `steps_per_epoch=steps`), so that one
    iterator, read ahead by tf.data's prefetch, serves every epoch.

    Each epoch cuts the rows, in an order drawn from numpy's `default_rng(seed)` (one permutation per epoch, in
    turn, after a first one drawn and left), into batches read in an order Python's `random` shuffles (seeded by
    `keras.utils.set_random_seed`): the batches of the earlier finite `PyDataset`, drawn at its start and again at
    every epoch end (Keras calling that hook once before the first epoch), whose batches Keras shuffled each epoch.
    So trainings are unchanged (tests/test_train.py) without the reader threads Keras started every epoch and
    drained at its end (0.1 s per epoch at least, for the training and the validation part each;
    benchmarks/epoch_feed.py).
    """

    def __init__(self, source, indices, labels, batch_size, *, seed: int, transform=None):
        super().__init__()
        self.source, self.indices, self.labels = source, np.asarray(indices), labels
        self.batch_size, self.transform = batch_size, transform
        self.steps = -(-len(self.indices) // batch_size)
        self._rng, self._epoch = np.random.default_rng(seed), -1
        self._order, self._batch_order = self._rng.permutation(len(self.indices)), list(range(self.steps))

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, index: int):
        epoch, step = divmod(index, self.steps)
        while self._epoch < epoch:  # epochs are read in turn, each drawn after the one before
            self._epoch += 1
            self._order = self._rng.permutation(len(self.indices))
            self._batch_order = list(range(self.steps))
            random.shuffle(self._batch_order)
        start = self._batch_order[step] * self.batch_size
        rows = self._order[start : start + self.batch_size]
        x = self.source[self.indices[rows]]
        return (self.transform(x) if self.transform is not None else np.asarray(x)), self.labels[rows]


def epoch_draw(seed: int, epoch: int, n: int, views: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(order (n,), view (n,)) of epoch `epoch` (from 0) of a head's training on `n` inputs: the order they are
    read in and the augmented view each input is read from, drawn from (seed, epoch) alone, so that every way of
    reading a training's batches (from memory, batch by batch, through the backbone) reads the same ones."""
    rng = np.random.default_rng((seed, epoch))
    return rng.permutation(n), rng.integers(views, size=n)


class EpochBatches(keras.utils.PyDataset):
    """A head's training batches, read batch by batch: (inputs, labels) of the rows `indices` of `sources[view]`
    (one source, or K augmented views (N, ...) each), passed through `transform` (e.g. normalisation).

    Batch i is batch `i % steps` of epoch `i // steps`, in the order `epoch_draw` gives, so the batches do not
    depend on when Keras calls its epoch hooks; the set is endless: fit with `steps_per_epoch=batches.steps`.
    Read by one thread: a `transform` that draws random numbers draws them in reading order.
    """

    def __init__(self, sources, indices, labels, batch_size, *, seed, transform=None):
        super().__init__()
        self.sources, self.indices, self.labels = list(sources), np.asarray(indices), labels
        self.batch_size, self.seed, self.transform = batch_size, seed, transform
        self.steps = -(-len(self.indices) // batch_size)
        self._epoch, self._draw = None, None

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, index: int):
        epoch, step = divmod(index, self.steps)
        if epoch != self._epoch:
            self._epoch = epoch
            self._draw = epoch_draw(self.seed, epoch, len(self.indices), len(self.sources))
        order, view = self._draw
        rows = order[step * self.batch_size : (step + 1) * self.batch_size]
        if len(self.sources) == 1:
            x = np.asarray(self.sources[0][self.indices[rows]])
        else:
            x = np.empty((len(rows), *self.sources[0].shape[1:]), self.sources[0].dtype)
            for number, source in enumerate(self.sources):  # one read per view of the rows that picked it
                picked = view[rows] == number
                if picked.any():
                    x[picked] = source[self.indices[rows[picked]]]
        return (self.transform(x) if self.transform is not None else x), self.labels[rows]


def batches_in_memory(sources: list[np.ndarray], labels: np.ndarray, batch_size: int, *, seed: int, epochs: int):
    """The `epochs` epochs of batches `EpochBatches(sources, range(n), labels, ...)` reads, gathered inside
    TensorFlow from `sources` (K arrays (n, ...)) held in memory: a `tf.data.Dataset` of (inputs, labels) that
    Keras iterates without calling Python per batch (a linear head's 20 epochs: 1.3-2.6 s against 3.2-3.4 s
    batch by batch, `benchmarks/epoch_feed.py`). Fit with `steps_per_epoch` = batches per epoch."""
    n = len(labels)
    draws = (epoch_draw(seed, epoch, n, len(sources)) for epoch in range(epochs))
    rows = np.stack([view[order] * n + order for order, view in draws])  # (epochs, n) rows of the stacked sources
    inputs, targets = tf.constant(np.concatenate(sources)), tf.constant(labels)
    epoch_rows = tf.data.Dataset.from_tensor_slices(rows)
    batch_rows = epoch_rows.flat_map(lambda epoch: tf.data.Dataset.from_tensor_slices(epoch).batch(batch_size))
    return batch_rows.map(lambda batch: (tf.gather(inputs, batch), tf.gather(targets, batch % n))).prefetch(1)


def training_batches(sources, indices, labels, batch_size, *, seed, epochs, transform=None):
    """(batches, steps per epoch) of a head's training on the rows `indices` of `sources` (see `EpochBatches`):
    gathered from memory (`batches_in_memory`) when the inputs need no `transform` and their rows take at most
    `FEATURES_IN_MEMORY_BYTES`, else read batch by batch; the same batches either way."""
    indices = np.asarray(indices)
    steps = -(-len(indices) // batch_size)
    if transform is None and _fit_in_memory(sources, indices):
        held = [np.asarray(select_rows(source, indices)) for source in sources]
        return batches_in_memory(held, labels, batch_size, seed=seed, epochs=epochs), steps
    return EpochBatches(sources, indices, labels, batch_size, seed=seed, transform=transform), steps


def batches_in_order(source, indices, labels, batch_size, *, transform=None):
    """(inputs, labels) batches of the rows `indices` of `source`, in order, passed through `transform` (e.g. the
    CNN's normalisation): the validation part, the training part scored. Held in memory when its rows take at most
    `FEATURES_IN_MEMORY_BYTES` (float32 ones, with a `transform`), else read batch by batch (`ImageBatches`)."""
    if _fit_in_memory([source], indices, transformed=transform is not None):
        held = np.asarray(select_rows(source, indices))
        held = transform(held) if transform is not None else held
        return tf.data.Dataset.from_tensor_slices((held, labels)).batch(batch_size)
    return ImageBatches(source, indices, labels, batch_size, transform=transform)


def _fit_in_memory(sources, indices, *, transformed: bool = False) -> bool:
    """Whether the rows `indices` of every one of `sources` take at most `FEATURES_IN_MEMORY_BYTES` together (as
    float32 when `transformed`)."""
    itemsize = 4 if transformed else np.dtype(sources[0].dtype).itemsize
    return len(sources) * len(indices) * math.prod(sources[0].shape[1:]) * itemsize <= FEATURES_IN_MEMORY_BYTES


class CollapseMonitor(keras.callbacks.Callback):
    """Stops training at the end of an epoch after which the model's output no longer depends on its input.

    `sample` is a fixed batch of training inputs; when its probabilities span less than `DEAD_OUTPUT_SPAN` (a
    dead ReLU bottleneck gives one constant output) the epoch is recorded in `collapsed_at`. The sample is scored as
    one batch (`predict_on_batch`: 0.07 s for the CNN's 64 images where `predict`, which sets up its data pipeline
    at every call, took 0.13 s, every epoch).
    """

    def __init__(self, sample: np.ndarray):
        super().__init__()
        self.sample = sample
        self.collapsed_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        probabilities = np.asarray(self.model.predict_on_batch(self.sample)).ravel()
        if probabilities.max() - probabilities.min() < DEAD_OUTPUT_SPAN:
            self.collapsed_at = epoch + 1
            self.model.stop_training = True


class HealthCheck(keras.callbacks.Callback):
    """Stops training at the end of epoch `epoch` (from 1) when the model is unhealthy on its training inputs
    (`Health.problem`: one identical output for a quarter of them or half of one class's), so that it is restarted
    then instead of after its last epoch; the `Health` measured is kept in `unhealthy`.

    `inputs` are the training part's batches in order (`batches_in_order`, or `ImageBatches` without a seed) and
    `labels` their labels: every training input is scored, as the health of the finished training is."""

    def __init__(self, inputs, labels: np.ndarray, epoch: int):
        super().__init__()
        self.inputs, self.labels, self.epoch = inputs, labels, epoch
        self.unhealthy: Health | None = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.epoch:
            return
        with timed("inference"):
            probabilities = np.asarray(self.model.predict(self.inputs, verbose=0)).ravel()
        health = output_health(self.labels, probabilities)
        if health.problem:
            self.unhealthy = health
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
    with timed("inference"):
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
    parts = [predict_array(model, normalize(batch, normalization)) for batch in batches(images_rgb, 256)]
    return np.concatenate(parts) if parts else np.empty(0)


def predict_array(model: keras.Model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    with timed("inference"):
        return model.predict(x, batch_size=batch_size, verbose=0).ravel().astype(np.float64)


def predict_rows(head: keras.Model, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """P(helmet) (k,) float64 of a head for the rows `indices` (k,) of cached features (N, ...), read
    `FEATURE_ROWS_PER_READ` rows at a time."""
    parts = [predict_array(head, chunk) for chunk in batches(select_rows(features, indices), FEATURE_ROWS_PER_READ)]
    return np.concatenate(parts) if parts else np.empty(0)

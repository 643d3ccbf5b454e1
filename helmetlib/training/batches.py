"""What Keras trains on and what watches it: batches read from (memory-mapped) images or cached features, one
pre-drawn augmented view per image and epoch, the collapse monitor and the runner's progress lines; and
predictions read batch by batch."""

from __future__ import annotations

import os

import numpy as np

from helmetlib.core.backend import keras
from helmetlib.core.env import PROGRESS_ENV
from helmetlib.core.preprocess import normalize
from helmetlib.core.timings import timed
from helmetlib.data.dataset import batches, select_rows

DEAD_OUTPUT_SPAN = 1e-5  # probabilities of a training sample spanning less than this: the output is constant
FEATURE_ROWS_PER_READ = 1024  # rows of cached features read at once for predictions
BATCH_READERS = 2  # threads reading the CNN's next image batches while it trains (Keras' PyDataset workers)


class ImageBatches(keras.utils.PyDataset):
    """(normalised images, labels) batches read from a (memory-mapped) RGB array at `indices`.

    With `seed` the order is reshuffled every epoch from that seed (the same order for images and features, so
    fast and faithful training see identical batches); without it the order is `indices` as given.

    With `readers` > 1, that many threads read an epoch's batches ahead, in order (Keras' enqueuer; the trained
    weights are bit-identical to reading in turn). It pays where a batch is slow to read, and costs where epochs are
    short: CNN epochs on helmet-dev (batches of 128 images normalised) took 1.91-1.97 s instead of 2.09-2.14 (each
    waited 0.01 s for its first batch instead of 0.36-0.39, Keras' tf.data generator being started afresh every
    epoch), while a linear head's 20 epochs over cached features took 5.8-6.0 s instead of 2.6-2.7 (the enqueuer's
    threads start and stop every epoch; benchmarks/epoch_feed.py, two runs). A `transform` that draws random
    numbers needs one reader: its draws follow the order it is called in.
    """

    def __init__(self, source, indices, labels, batch_size, *, seed=None, transform=None, readers=1):
        super().__init__(workers=readers, max_queue_size=readers)
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

"""Benchmark: how an epoch's batches reach Keras. The study's CNN trained as `CnnTrainer` trains it (healthy start,
the machine's precision, batch 128, validation and the collapse monitor every epoch), its batches read the way it
trains now (`ShuffledImageBatches`: one endless iterator over every epoch, read ahead by tf.data's prefetch; the
validation part held in memory) or the earlier way (a finite `PyDataset` Keras shuffles, read by two threads of
Keras' enqueuer, started every epoch and drained at its end, the validation part read the same way), alternately,
each `--rounds` times. Prints per epoch (the first, which traces, left out) the seconds and the wait for the
epoch's first batch, and whether the two ways trained bit-identical weights. Then the heads' side: a linear head's
20 epochs over 420 rows of block5-sized features (6 x 6 x 512, random), read batch by batch (`EpochBatches`) and
from memory as the heads train (`training_batches`: gathered inside TensorFlow, no Python call per batch).

    python benchmarks/epoch_feed.py --data ../shared/data/helmet-dev
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from helmetlib import load_dataset, split
from helmetlib.core.backend import keras
from helmetlib.core.preprocess import normalize
from helmetlib.models.builders import compile_model, healthy_start, simple_cnn
from helmetlib.models.features import backbone_precision
from helmetlib.training.batches import (
    CollapseMonitor,
    EpochBatches,
    ShuffledImageBatches,
    batches_in_order,
    training_batches,
)

READER_THREADS = 2  # the earlier way's enqueuer threads


class EnqueuedBatches(keras.utils.PyDataset):
    """The earlier way: a finite set of (normalised images, labels) batches whose row order is drawn from
    `default_rng(seed)` at its start and every epoch end (in order without a seed), read by Keras' enqueuer."""

    def __init__(self, images, rows, labels, batch_size, seed=None):
        super().__init__(workers=READER_THREADS, max_queue_size=READER_THREADS)
        self.images, self.rows, self.labels, self.batch_size = images, rows, labels, batch_size
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.order = np.arange(len(rows))
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, index):
        order = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return normalize(np.asarray(self.images[self.rows[order]]), "unit"), self.labels[order]

    def on_epoch_end(self):
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.rows))


class EpochClock(keras.callbacks.Callback):
    """Seconds of each epoch and of its wait for the first batch."""

    def __init__(self):
        super().__init__()
        self.epochs: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.first_batch = time.perf_counter(), None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_batch = time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((time.perf_counter() - self.started, self.first_batch))


def train(dataset, parts, *, way: str, epochs: int, policy: str | None):
    def unit(images):
        return normalize(np.asarray(images), "unit")

    train_rows, validation_rows = parts.train, parts.validation
    train_labels, validation_labels = dataset.labels[train_rows], dataset.labels[validation_rows]
    sample = unit(dataset.images[train_rows[:64]])
    keras.utils.set_random_seed(812)
    model = simple_cnn(dataset.images.shape[1:], dtype_policy=policy)
    healthy_start(model, sample)
    compile_model(model, 1e-3)
    clock = EpochClock()
    if way == "now":
        data = ShuffledImageBatches(dataset.images, train_rows, train_labels, 128, seed=812, transform=unit)
        checked = batches_in_order(dataset.images, validation_rows, validation_labels, 128, transform=unit)
        fit_options = {"steps_per_epoch": data.steps, "shuffle": False}
    else:
        data = EnqueuedBatches(dataset.images, train_rows, train_labels, 128, seed=812)
        checked, fit_options = EnqueuedBatches(dataset.images, validation_rows, validation_labels, 128), {}
    callbacks = [clock, CollapseMonitor(sample)]
    model.fit(data, validation_data=checked, epochs=epochs, verbose=0, callbacks=callbacks, **fit_options)
    return model.get_weights(), np.array(clock.epochs[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    parts = split(dataset.labels)
    precision = backbone_precision()
    policy = None if precision == "float32" else f"mixed_{precision}"
    timings, weights = {"now": [], "earlier": []}, {}
    for _ in range(args.rounds):
        for way in timings:
            weights[way], epochs = train(dataset, parts, way=way, epochs=args.epochs, policy=policy)
            timings[way].append(epochs)
    print(f"the CNN on {len(parts.train)} training images, {precision}, {args.rounds} x {args.epochs - 1} epochs each")
    for way, rounds in timings.items():
        epochs = np.concatenate(rounds)
        print(
            f"{way}: epoch {epochs[:, 0].mean():.2f} s (median {np.median(epochs[:, 0]):.2f}), "
            f"first batch waited {epochs[:, 1].mean():.2f} s (max {epochs[:, 1].max():.2f})"
        )
    identical = all(np.array_equal(a, b) for a, b in zip(weights["now"], weights["earlier"], strict=True))
    print(f"trained weights bit-identical: {identical}")
    for _ in range(args.rounds):
        seconds = {
            way: linear_head_seconds(from_memory=way == "from memory") for way in ("batch by batch", "from memory")
        }
        print("a linear head, 20 epochs: " + ", ".join(f"{way}: {s:.2f} s" for way, s in seconds.items()))


def linear_head_seconds(*, from_memory: bool) -> float:
    """Seconds of a linear head's 20 epochs, its batches read batch by batch or gathered from memory."""
    rng = np.random.default_rng(0)
    features, labels = rng.random((510, 6 * 6 * 512), dtype=np.float32), (np.arange(510) % 2).astype("float32")
    head = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(1, activation="sigmoid")])
    compile_model(head, 1e-4)
    train, validation = np.arange(420), np.arange(420, 510)
    started = time.perf_counter()
    if from_memory:
        data, steps = training_batches([features], train, labels[train], 128, seed=812, epochs=20)
    else:
        data = EpochBatches([features], train, labels[train], 128, seed=812)
        steps = data.steps
    checked = batches_in_order(features, validation, labels[validation], 128)
    head.fit(data, steps_per_epoch=steps, validation_data=checked, epochs=20, shuffle=False, verbose=0)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()

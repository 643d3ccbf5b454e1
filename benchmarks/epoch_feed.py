"""Benchmark: how an epoch's batches reach Keras. The study's CNN trained as `CnnTrainer` trains it (healthy start,
the machine's precision, batch 128, validation and the collapse monitor every epoch), its batches read in the
training thread (`readers=1`: Keras' tf.data generator, the heads' way) or by `BATCH_READERS` threads (Keras'
enqueuer, the CNN's way), alternately, each `--rounds` times. Prints per epoch (the first, which traces, left
out) the seconds and the wait for the epoch's first batch, and whether the trained weights are bit-identical. Then
the other side: a linear head's 20 epochs over 420 rows of block5-sized features (6 x 6 x 512, random), with one
reader and with `BATCH_READERS` (short epochs, where the readers' start and stop cost more than they save), and
from memory as the heads now train (`training_batches`: gathered inside TensorFlow, no Python call per batch).

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
    BATCH_READERS,
    CollapseMonitor,
    ImageBatches,
    batches_in_order,
    training_batches,
)


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


def train(dataset, parts, *, readers: int, epochs: int, policy: str | None):
    def unit(images):
        return normalize(np.asarray(images), "unit")

    def batches(part, seed=None):
        rows = getattr(parts, part)
        return ImageBatches(dataset.images, rows, dataset.labels[rows], 128, seed=seed, transform=unit, readers=readers)

    sample = unit(dataset.images[parts.train[:64]])
    keras.utils.set_random_seed(812)
    model = simple_cnn(dataset.images.shape[1:], dtype_policy=policy)
    healthy_start(model, sample)
    compile_model(model, 1e-3)
    clock = EpochClock()
    model.fit(
        batches("train", seed=812),
        validation_data=batches("validation"),
        epochs=epochs,
        verbose=0,
        callbacks=[clock, CollapseMonitor(sample)],
    )
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
    timings, weights = {1: [], BATCH_READERS: []}, {}
    for _ in range(args.rounds):
        for readers in timings:
            weights[readers], epochs = train(dataset, parts, readers=readers, epochs=args.epochs, policy=policy)
            timings[readers].append(epochs)
    print(f"the CNN on {len(parts.train)} training images, {precision}, {args.rounds} x {args.epochs - 1} epochs each")
    for readers, rounds in timings.items():
        epochs = np.concatenate(rounds)
        print(
            f"readers {readers}: epoch {epochs[:, 0].mean():.2f} s (median {np.median(epochs[:, 0]):.2f}), "
            f"first batch waited {epochs[:, 1].mean():.2f} s (max {epochs[:, 1].max():.2f})"
        )
    identical = all(np.array_equal(a, b) for a, b in zip(weights[1], weights[BATCH_READERS], strict=True))
    print(f"trained weights bit-identical: {identical}")
    for _ in range(args.rounds):
        seconds = {f"readers {readers}": linear_head_seconds(readers) for readers in timings}
        seconds["from memory"] = linear_head_seconds(None)
        print("a linear head, 20 epochs: " + ", ".join(f"{way}: {s:.2f} s" for way, s in seconds.items()))


def linear_head_seconds(readers: int | None) -> float:
    """Seconds of a linear head's 20 epochs, its batches read by `readers` threads, or from memory (None)."""
    rng = np.random.default_rng(0)
    features, labels = rng.random((510, 6 * 6 * 512), dtype=np.float32), (np.arange(510) % 2).astype("float32")
    head = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(1, activation="sigmoid")])
    compile_model(head, 1e-4)
    train, validation = np.arange(420), np.arange(420, 510)
    started = time.perf_counter()
    if readers is None:
        data, steps = training_batches([features], train, labels[train], 128, seed=812, epochs=20)
        checked = batches_in_order(features, validation, labels[validation], 128)
        head.fit(data, steps_per_epoch=steps, validation_data=checked, epochs=20, shuffle=False, verbose=0)
    else:
        head.fit(
            ImageBatches(features, train, labels[train], 128, seed=812, readers=readers),
            validation_data=ImageBatches(features, validation, labels[validation], 128, readers=readers),
            epochs=20,
            verbose=0,
        )
    return time.perf_counter() - started


if __name__ == "__main__":
    main()

"""Training: models learn; fast equals faithful; cold and warm caches agree bitwise; collapse is detected and
recovered; repeats (the seed ensemble: test_health.py)."""

import numpy as np
import pytest
from conftest import STAND_IN_WEIGHTS

from helmetlib import MODEL_NAMES, make_demo_dataset, performance, split, train_model, train_repeats
from helmetlib.core.backend import keras
from helmetlib.core.preprocess import normalize
from helmetlib.core.weights import resolve_weights
from helmetlib.data.dataset import RowFile
from helmetlib.models.builders import compile_model, vgg16_backbone
from helmetlib.models.features import (
    backbone_precision,
    cpu_supports_bfloat16,
    gpu_available,
    precision_override,
)
from helmetlib.training import batches as training_batches
from helmetlib.training.batches import ShuffledImageBatches, balanced_class_weights

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def discriminating_weights(tmp_path_factory):
    """The stand-in VGG16 weights beside the checkout, else a random VGG16 drawn to keep its signal: He-normal
    kernels (sd sqrt(2 / fan-in), the start that preserves the activations' variance through ReLU layers) and zero
    biases, so that its features vary between images as a trained backbone's do and heads trained on them spread
    their probabilities. Keras' Glorot start shrinks the activations through 13 ReLU convolutions instead (the heads'
    outputs then spread by under 0.01, and the checks below would compare near-constants)."""
    if STAND_IN_WEIGHTS.exists():
        return resolve_weights(STAND_IN_WEIGHTS)
    vgg16 = vgg16_backbone(resolve_weights(None), (64, 64, 3))
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(0, np.sqrt(2 / np.prod(kernel.shape[:-1])), kernel.shape).astype(np.float32)
        if kernel.ndim == 4
        else np.zeros_like(kernel)
        for kernel in vgg16.get_weights()
    ]
    path = tmp_path_factory.mktemp("weights") / "he-normal.weights.h5"
    vgg16.set_weights(weights)
    vgg16.save_weights(path)
    return resolve_weights(path)


def test_cnn_learns_the_demo_set(demo_64, learnt_cnn):
    parts, trained = split(demo_64.labels), learnt_cnn
    validation = performance(demo_64.labels[parts.validation], trained.probabilities["validation"])
    assert validation.accuracy > 0.8 and not trained.collapsed
    assert trained.history["loss"][-1] < trained.history["loss"][0]
    assert set(trained.probabilities) == {"train", "validation"}  # the test part is never predicted here
    assert trained.mode == "direct" and trained.epochs_run == 15 and trained.restarts == []


@pytest.mark.shared_fallback
@pytest.mark.parametrize("name", ["vgg16_linear", "vgg16_mlp", "vgg16_gap", "vgg16_multiscale"])
def test_fast_head_equals_faithful_training(demo_64, discriminating_weights, tmp_path, name):
    subset = make_demo_dataset(48, seed=5, image_size=64)
    parts = split(subset.labels)
    options = {"weights": discriminating_weights, "epochs": 3, "batch_size": 8, "precision": "float32", "seed": 3}
    fast = train_model(name, subset, parts, cache_dir=tmp_path, **options)
    faithful = train_model(name, subset, parts, faithful=True, **options)
    assert (fast.mode, faithful.mode) == ("fast", "faithful")
    for part in ("train", "validation"):
        spread = np.ptp(fast.probabilities[part])
        assert spread >= 100 * TOLERANCE, f"{part} predictions span only {spread:.2g}: the check would be vacuous"
        np.testing.assert_allclose(fast.probabilities[part], faithful.probabilities[part], atol=TOLERANCE)
    if fast.history:
        np.testing.assert_allclose(fast.history["loss"], faithful.history["loss"], rtol=1e-4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cold_and_warm_caches_give_bitwise_identical_results(demo_small, tmp_path, name):
    parts = split(demo_small.labels)
    options = {"weights": None, "epochs": 2, "batch_size": 8, "seed": 9, "augmented_views": 2, "cache_dir": tmp_path}
    cold = train_model(name, demo_small, parts, **options)
    warm = train_model(name, demo_small, parts, **options)
    for part in ("train", "validation"):
        assert np.array_equal(cold.probabilities[part], warm.probabilities[part]), part
    if name != "cnn":
        assert cold.details.cache_reused == 0 and warm.details.cache_computed == 0
        assert cold.details.cache_computed > 0 and warm.details.cache_reused == cold.details.cache_computed


def test_augmented_views_are_computed_once_and_shared_by_repeats(demo_small, tmp_path):
    parts = split(demo_small.labels)
    repeats = train_repeats(
        "vgg16_mlp_aug",
        demo_small,
        parts,
        repeats=2,
        weights=None,
        epochs=1,
        batch_size=8,
        augmented_views=2,
        cache_dir=tmp_path,
    )
    assert len(list((tmp_path / "features").glob("features-*.npy"))) == 3  # the block5 pass + 2 views of train
    assert [trained.seed for trained in repeats] == [812, 813]
    assert not np.array_equal(repeats[0].probabilities["validation"], repeats[1].probabilities["validation"])
    assert repeats[0].details.family == "augmented_views" and repeats[0].details.augmented_views == 2


@pytest.mark.parametrize("name", ["vgg16_mlp", "vgg16_mlp_aug"])
def test_heads_read_cached_features_a_batch_at_a_time(demo_small, tmp_path, monkeypatch, name):
    """Sets larger than memory (here: than a memory budget of 0 bytes): a head's training and predictions never hold
    a part's features (or views) whole. Every read of a stored file (`RowFile`: gathered rows or a slice) is
    counted."""
    reads = []
    gather, read_slice = RowFile._read, RowFile._read_file_rows
    monkeypatch.setattr(
        RowFile, "_read", lambda rows, file_rows: reads.append(len(file_rows)) or gather(rows, file_rows)
    )
    monkeypatch.setattr(
        RowFile,
        "_read_file_rows",
        lambda rows, start, stop: reads.append(stop - start) or read_slice(rows, start, stop),
    )
    monkeypatch.setattr("helmetlib.training.trainers.COLLAPSE_SAMPLE_SIZE", 8)
    monkeypatch.setattr("helmetlib.training.batches.FEATURES_IN_MEMORY_BYTES", 0)
    for module in ("trainers", "batches"):  # health and predictions read rows alike
        monkeypatch.setattr(f"helmetlib.training.{module}.FEATURE_ROWS_PER_READ", 8)
    parts = split(demo_small.labels)
    trained = train_model(name, demo_small, parts, weights=None, epochs=2, batch_size=8, cache_dir=tmp_path)
    assert len(parts.train) == 32 and trained.epochs_run == 2
    assert len(trained.probabilities["train"]) == 32 and len(trained.probabilities["validation"]) == 8
    assert len(reads) > 2 * 4 and max(reads) == 8  # 4 batches of 8 per epoch; never more rows at once


@pytest.mark.parametrize("name", ["vgg16_linear", "vgg16_mlp_aug"])
def test_heads_train_alike_from_memory_and_batch_by_batch(demo_small, tmp_path, monkeypatch, name):
    """A head's training features held in memory (gathered inside TensorFlow) and read batch by batch
    (`EpochBatches`) are the same batches in the same order, views included: bitwise identical trainings."""
    parts = split(demo_small.labels)
    options = {"weights": None, "epochs": 3, "batch_size": 8, "seed": 4, "augmented_views": 2, "cache_dir": tmp_path}
    held = []
    gather = training_batches.batches_in_memory

    def counted(sources, *args, **kwargs):
        held.append(len(sources))
        return gather(sources, *args, **kwargs)

    monkeypatch.setattr(training_batches, "batches_in_memory", counted)
    from_memory = train_model(name, demo_small, parts, **options)
    monkeypatch.setattr(training_batches, "FEATURES_IN_MEMORY_BYTES", 0)
    batch_by_batch = train_model(name, demo_small, parts, **options)
    assert held == [2 if name == "vgg16_mlp_aug" else 1]  # the first training only, from memory
    assert from_memory.epochs_run == batch_by_batch.epochs_run == 3
    assert from_memory.history == batch_by_batch.history
    for part in ("train", "validation"):
        assert np.ptp(from_memory.probabilities[part]) > 0
        np.testing.assert_array_equal(from_memory.probabilities[part], batch_by_batch.probabilities[part])


@pytest.mark.shared_fallback
def test_early_stopping_stops_before_the_last_epoch(demo_64, discriminating_weights, tmp_path):
    parts = split(demo_64.labels)
    trained = train_model(
        "vgg16_gap", demo_64, parts, weights=discriminating_weights, epochs=60, batch_size=16, cache_dir=tmp_path
    )
    assert trained.epochs_run < 60 and "learning_rate" in trained.history
    assert trained.details.early_stopping_patience == 5


def dead_cnn(calls):
    """A `simple_cnn` whose Dense(4, relu) bottleneck is dead for the first `calls[0]` builds: constant output."""
    from helmetlib.models import builders as models

    def build(input_shape, **options):
        model = models.simple_cnn(input_shape, **options)
        if calls[0] > 0:
            calls[0] -= 1
            bottleneck = model.get_layer("bottleneck")
            kernel, bias = bottleneck.get_weights()
            bottleneck.set_weights([np.zeros_like(kernel), np.full_like(bias, -10.0)])
        return model

    return build


def test_a_collapsed_training_is_detected_and_restarted(demo_64, monkeypatch):
    parts = split(demo_64.labels)
    monkeypatch.setattr("helmetlib.training.trainers.simple_cnn", dead_cnn([1]))
    trained = train_model("cnn", demo_64, parts, epochs=10, batch_size=8, max_restarts=3)
    first = trained.restarts[0]  # the planted collapse; another seed may die naturally too (as on helmet-dev)
    assert first.epoch == 1 and first.seed == 812 and "constant output" in first.reason
    assert trained.seed_used == 812 + len(trained.restarts) * 100_003 and not trained.collapsed
    assert performance(demo_64.labels[parts.validation], trained.probabilities["validation"]).accuracy > 0.8


def test_without_restarts_a_collapsed_model_is_flagged(demo_64, monkeypatch):
    parts = split(demo_64.labels)
    monkeypatch.setattr("helmetlib.training.trainers.simple_cnn", dead_cnn([1]))
    trained = train_model("cnn", demo_64, parts, epochs=5, batch_size=16, max_restarts=0)
    assert trained.collapsed and trained.restarts == [] and trained.epochs_run == 1  # stopped at the first epoch
    assert np.ptp(trained.probabilities["validation"]) == 0.0


def test_balanced_class_weights_only_when_imbalanced():
    assert balanced_class_weights(np.array([0, 1] * 10)) is None
    weights = balanced_class_weights(np.array([0] * 30 + [1] * 10))
    assert weights == pytest.approx({0: 40 / 60, 1: 40 / 20})  # n / (2 n_class), worked out by hand


def test_precision_environment_override(monkeypatch):
    monkeypatch.setenv("HELMETLIB_PRECISION", "float32")
    assert backbone_precision() == "float32" and precision_override() == "float32"
    monkeypatch.setenv("HELMETLIB_PRECISION", "int4")
    with pytest.raises(ValueError, match="HELMETLIB_PRECISION='int4'; choose one of"):
        backbone_precision()
    monkeypatch.delenv("HELMETLIB_PRECISION")
    assert precision_override() is None
    assert backbone_precision() == ("bfloat16" if cpu_supports_bfloat16() or gpu_available() else "float32")


def test_a_deterministic_model_is_fitted_once_per_split_with_one_blas_thread(demo_small, tmp_path, monkeypatch):
    """The logistic head is fitted once per split (no seeds to repeat), its L-BFGS with one BLAS thread (OpenBLAS's
    threads made its many small products 14 times slower)."""
    import sklearn.linear_model
    from threadpoolctl import threadpool_info

    blas_threads = []
    real_fit = sklearn.linear_model.LogisticRegressionCV.fit

    def fit(self, *args, **kwargs):
        blas_threads.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(sklearn.linear_model.LogisticRegressionCV, "fit", fit)
    parts = split(demo_small.labels)
    options = {"weights": None, "seed": 4, "cache_dir": tmp_path}
    once = train_repeats("vgg16_multiscale", demo_small, parts, repeats=3, **options)
    assert blas_threads and set(blas_threads) == {1}
    assert [trained.seed for trained in once] == [4]  # three identical fits would say nothing about seeds
    other = split(demo_small.labels, random_state=7)
    per_split = train_repeats("vgg16_multiscale", demo_small, [parts, other], repeats=2, **options)
    assert len(per_split) == 2
    np.testing.assert_array_equal(per_split[0].probabilities["validation"], once[0].probabilities["validation"])


def test_the_cnn_trains_in_bfloat16_where_the_hardware_has_it_and_float32_when_faithful(demo_64, monkeypatch):
    """Fast mode trains the CNN with Keras' mixed bfloat16 where backbone passes run in bfloat16 (the prediction
    layer and the loss in float32) and keeps a float32 model of the same weights; `faithful` is the study's
    float32. The record says which precision trained it."""
    from helmetlib.training import trainers

    monkeypatch.setattr(trainers, "backbone_precision", lambda: "bfloat16")
    parts = split(demo_64.labels)
    fast = train_model("cnn", demo_64, parts, epochs=2, batch_size=16, max_restarts=0)
    assert fast.precision == "bfloat16" and {w.dtype for w in fast.model.weights} == {"float32"}
    assert {layer.dtype_policy.name for layer in fast.model.layers} == {"float32"}  # the copy that is saved
    faithful = train_model("cnn", demo_64, parts, epochs=2, batch_size=16, max_restarts=0, faithful=True)
    assert faithful.precision == "float32"
    for trained in (fast, faithful):
        assert np.ptp(trained.probabilities["validation"]) > 0  # both learn something: the outputs spread
    monkeypatch.setattr(trainers, "backbone_precision", lambda: "float32")  # a CPU without bfloat16
    assert train_model("cnn", demo_64, parts, epochs=1, batch_size=16, max_restarts=0).precision == "float32"


def test_timings_label_backbone_passes_inference_and_training_with_the_stage(demo_small, tmp_path, monkeypatch):
    """What benchmarks/pipeline.py adds up: with HELMETLIB_TIMINGS set, each backbone pass, inference and training
    call appends its seconds under the stage the runner named; nested calls count once; unset, nothing is written."""
    import json

    from helmetlib.core.env import STAGE_ENV, TIMINGS_ENV

    parts = split(demo_small.labels)
    options = {"weights": None, "epochs": 1, "batch_size": 8}
    train_model("vgg16_linear", demo_small, parts, cache_dir=tmp_path / "a", **options)
    assert not list(tmp_path.rglob("*.jsonl"))
    timings = tmp_path / "timings.jsonl"
    monkeypatch.setenv(TIMINGS_ENV, str(timings))
    monkeypatch.setenv(STAGE_ENV, "10_model [vgg16_linear]")
    train_model("vgg16_linear", demo_small, parts, cache_dir=tmp_path / "b", **options)
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    assert {line["stage"] for line in lines} == {"10_model [vgg16_linear]"}
    assert [line["kind"] for line in lines].count("backbone") == 1  # one cold pass over the images
    assert {"training", "inference"} <= {line["kind"] for line in lines} and all(line["seconds"] > 0 for line in lines)


def test_profiled_cells_write_their_stage_statistics(tmp_path, monkeypatch):
    """`benchmarks/pipeline.py --profile`: with HELMETLIB_PROFILE naming a folder, a notebook's cells (IPython's
    shell, as in a kernel) are profiled from `start` on and each cell's end writes `<folder>/<stage>.prof`;
    without it nothing is profiled."""
    import pstats

    from IPython.core.interactiveshell import InteractiveShell

    from helmetlib.core.env import PROFILE_ENV, STAGE_ENV
    from helmetlib.core.timings import profile_cells

    shell = InteractiveShell.instance()
    try:
        monkeypatch.setenv(STAGE_ENV, "10_model [cnn]")
        assert shell.run_cell("from helmetlib.core.timings import profile_cells; profile_cells()").result is None
        monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "profiles"))
        shell.run_cell("profiler = profile_cells()")
        shell.run_cell("import numpy as np; np.linalg.svd(np.ones((60, 60)))")
        functions = {
            function for _, _, function in pstats.Stats(str(tmp_path / "profiles" / "10_model_cnn.prof")).stats
        }
        assert "svd" in functions
    finally:
        profiler = shell.user_ns.get("profiler")
        if profiler is not None:
            profiler.disable()
        InteractiveShell.clear_instance()
    assert profile_cells() is None  # outside a kernel


class KerasShuffledBatches(keras.utils.PyDataset):
    """The CNN's earlier training batches: a finite set whose row order is drawn from `default_rng(seed)` at its
    start and at every epoch end, its batches' order shuffled by Keras (fit's `shuffle=True`)."""

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size, self.rng = x, y, batch_size, np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


def test_shuffled_image_batches_train_the_weights_keras_own_shuffling_trained(demo_small):
    """The CNN's endless `ShuffledImageBatches` (one iterator over every epoch) read the batches Keras read when it
    shuffled the earlier finite set itself, in the same order, so Adam (sensitive to the order) ends on
    bit-identical weights; every epoch reads every training image once."""
    parts = split(demo_small.labels)
    images = normalize(np.asarray(demo_small.images[parts.train]), "unit")
    labels = demo_small.labels[parts.train].astype("float32")
    rows = np.arange(len(images))
    endless = ShuffledImageBatches(images, rows, labels, 4, seed=6)
    assert endless.steps == -(-len(images) // 4) and endless.num_batches is None
    weights = {}
    for way in ("keras shuffles", "endless"):
        keras.utils.set_random_seed(2)
        model = keras.Sequential(
            [keras.Input(images.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")]
        )
        compile_model(model, 1e-2)
        if way == "endless":
            model.fit(
                ShuffledImageBatches(images, rows, labels, 4, seed=6),
                steps_per_epoch=endless.steps,
                epochs=3,
                shuffle=False,
                verbose=0,
            )
        else:
            model.fit(KerasShuffledBatches(images, labels, 4, seed=6), epochs=3, verbose=0)
        weights[way] = model.get_weights()
    for endless_weights, earlier_weights in zip(weights["endless"], weights["keras shuffles"], strict=True):
        np.testing.assert_array_equal(endless_weights, earlier_weights)
    numbered = ShuffledImageBatches(images, rows, rows, 4, seed=6)  # labelled with their row numbers
    for epoch in range(3):
        read = [numbered[epoch * endless.steps + step] for step in range(endless.steps)]
        row_numbers = np.concatenate([numbers for _, numbers in read])
        np.testing.assert_array_equal(np.sort(row_numbers), rows)
        np.testing.assert_array_equal(np.concatenate([x for x, _ in read]), images[row_numbers])


def test_faithful_augmentation_is_reproducible_from_its_seed(demo_small):
    """The faithful model 4 augments every batch as it is read; its draws follow the reading order, so its batches
    are read in turn (one reader) and one seed gives one training."""
    parts = split(demo_small.labels)
    options = {"weights": None, "epochs": 2, "batch_size": 4, "seed": 5, "faithful": True, "precision": "float32"}
    first, second = (train_model("vgg16_mlp_aug", demo_small, parts, **options) for _ in range(2))
    assert np.ptp(first.probabilities["validation"]) > 0
    np.testing.assert_array_equal(first.probabilities["validation"], second.probabilities["validation"])

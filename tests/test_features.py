"""The feature cache: one pass per normalisation, integrity checks, incremental writes that survive interruption."""

import json

import numpy as np
import pytest

from helmetlib.core.weights import resolve_weights
from helmetlib.models.builders import vgg16_backbone
from helmetlib.models.features import CacheWarning, FeatureCache, cached_features, compute_features, pass_extractor


@pytest.fixture(scope="module")
def vgg16():
    return vgg16_backbone(resolve_weights(None), (48, 48, 3))


def entries(folder):
    """The finished cache entries (not the partial files of a pass in progress)."""
    return sorted(path for path in (folder / "features").glob("features-*.npy") if ".partial" not in path.name)


def test_one_vgg16_pass_feeds_models_5_and_6(demo_small, vgg16, tmp_path):
    cache = FeatureCache(tmp_path)
    gap = cached_features(demo_small.images, demo_small.content_hash, vgg16, cache, kind="gap5")
    multiscale = cached_features(demo_small.images, demo_small.content_hash, vgg16, cache, kind="multiscale")
    assert gap.shape == (48, 512) and multiscale.shape == (48, 2560)
    assert (cache.misses, cache.hits) == (1, 1) and len(entries(tmp_path)) == 2  # one pass, both kinds stored
    uncached = cached_features(demo_small.images, demo_small.content_hash, vgg16, FeatureCache(None), kind="gap5")
    np.testing.assert_array_equal(np.asarray(gap), uncached)


def test_damaged_entries_are_recomputed_with_a_warning_never_used(demo_small, vgg16, tmp_path):
    cache = FeatureCache(tmp_path)
    good = np.array(cached_features(demo_small.images, demo_small.content_hash, vgg16, cache, kind="block5"))
    [path] = entries(tmp_path)
    data = bytearray(path.read_bytes())
    data[-4000:] = bytes(4000)  # the probe: values overwritten, header intact
    path.write_bytes(bytes(data))
    again = FeatureCache(tmp_path)
    with pytest.warns(CacheWarning, match="checksum mismatch"):
        recomputed = cached_features(demo_small.images, demo_small.content_hash, vgg16, again, kind="block5")
    np.testing.assert_array_equal(np.asarray(recomputed), good)
    assert again.misses == 1 and "checksum mismatch" in again.warnings[0]

    np.save(path, np.zeros((3, 2), np.float32))  # wrong shape, in place
    third = FeatureCache(tmp_path)
    with pytest.warns(CacheWarning, match=r"shape \(3, 2\)"):
        cached_features(demo_small.images, demo_small.content_hash, vgg16, third, kind="block5")
    assert np.load(path).shape == good.shape  # replaced, not left in the cache


def test_key_file_records_shape_dtype_and_checksum(demo_small, vgg16, tmp_path):
    cached_features(demo_small.images, demo_small.content_hash, vgg16, FeatureCache(tmp_path), kind="block5")
    [path] = entries(tmp_path)
    key = json.loads(path.with_suffix(".json").read_text())
    assert key["data"] == demo_small.content_hash and key["precision"] == "float32" and key["output"] == "block5"
    assert key["shape"] == [48, 1, 1, 512] and key["dtype"] == "float32" and len(key["sha256"]) == 64


def test_an_interrupted_pass_resumes_where_it_stopped(demo_small, vgg16, tmp_path):
    cache = FeatureCache(tmp_path)
    key = {"data": demo_small.content_hash, "test": "resume"}
    extractor = pass_extractor(vgg16, "unit", "float32")
    calls = []

    def compute(outputs, start, on_batch, fail_after=None):
        calls.append(start)

        def report(rows):
            on_batch(rows)
            if fail_after is not None and rows >= fail_after:
                raise KeyboardInterrupt  # the pass is stopped half way

        return compute_features(
            extractor,
            demo_small.images,
            normalization="unit",
            batch_size=8,
            outputs=outputs,
            start=start,
            on_batch=report,
        )

    shapes = [(48, 1, 1, 512)]
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(key, ("block5",), lambda o, s, b: compute(o, s, b, fail_after=24), shapes=shapes)
    assert entries(tmp_path) == []  # nothing half-written is ever an entry
    [resumed] = cache.get_or_compute(key, ("block5",), compute, shapes=shapes)
    assert calls == [0, 24]  # the second pass started at row 24
    reference = compute_features(extractor, demo_small.images, normalization="unit")[0]
    np.testing.assert_array_equal(np.asarray(resumed), reference)


def test_stored_features_are_read_by_rows_under_a_small_address_space_limit(tmp_path):
    """A 170 MB entry is checked and read batch by batch in a process allowed 120 MB more address space."""
    import subprocess
    import sys

    key, shape = {"view": "address-space test"}, (2300, 6, 6, 512)  # block5 maps of 2,300 images: 170 MB

    def fill(outputs, start, on_batch):
        for row in range(start, shape[0], 100):
            outputs[0][row : row + 100] = np.arange(row, min(row + 100, shape[0]), dtype=np.float32)[
                :, None, None, None
            ]
            on_batch(min(row + 100, shape[0]))

    FeatureCache(tmp_path).get_or_compute(key, ("block5",), fill, shapes=[shape])
    script = f"""
import resource, numpy as np, psutil
from helmetlib.data.dataset import batches
from helmetlib.models.features import FeatureCache
used = psutil.Process().memory_info().vms
resource.setrlimit(resource.RLIMIT_AS, (used + 120 * 2**20, resource.RLIM_INFINITY))  # 120 MB of headroom
cache = FeatureCache({str(tmp_path)!r})
[features] = cache.get_or_compute({key!r}, ("block5",), None, shapes=[{shape!r}])  # checksum read in chunks
assert cache.hits == 1 and not cache.warnings
picked = features[np.array([2000, 5, 1234])][:, 0, 0, 0]
total = sum(float(batch[:, 0, 0, 0].sum()) for batch in batches(features, 128))
print(*picked, total)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [float(value) for value in result.stdout.split()] == [2000, 5, 1234, sum(range(shape[0]))]
    greedy = script.replace("picked =", "everything = np.asarray(features)\npicked =")
    refused = subprocess.run([sys.executable, "-c", greedy], capture_output=True, text=True)
    assert refused.returncode != 0  # the limit is real: reading the whole entry at once fails
    assert "MemoryError" in refused.stderr or "Cannot allocate memory" in refused.stderr

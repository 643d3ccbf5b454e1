"""Loading, validation errors and the demo set."""

import numpy as np
import pandas as pd
import pytest
from conftest import HELMET_DEV, require

from helmetlib import DatasetError, load_dataset, make_demo_dataset, write_dataset
from helmetlib.data import IMAGES_FILE, LABELS_FILE


def write(folder, images, labels):
    """Write raw arrays in the file format, without going through Dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / IMAGES_FILE, images, allow_pickle=True)
    pd.DataFrame({"Label": labels}).to_csv(folder / LABELS_FILE, index=False)
    return folder


def good_images(n=6, size=200):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def good_labels(n=6):
    return [0, 1] * (n // 2)


def test_round_trip_converts_bgr_files_to_rgb(tmp_path):
    bgr = good_images()
    bgr[0, 0, 0] = (255, 0, 0)  # pure blue in BGR
    folder = write(tmp_path / "d", bgr, good_labels())
    dataset = load_dataset(folder)
    assert dataset.images.shape == (6, 200, 200, 3) and dataset.images.dtype == np.uint8
    assert tuple(dataset.images[0, 0, 0]) == (0, 0, 255)  # blue in RGB
    np.testing.assert_array_equal(dataset.images, bgr[..., ::-1])
    np.testing.assert_array_equal(dataset.labels, good_labels())
    assert dataset.labels.dtype == np.int64
    assert dataset.images_path == (folder / IMAGES_FILE).resolve()
    assert len(dataset.content_hash) == 16


def test_two_file_paths_are_accepted(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    dataset = load_dataset(folder / IMAGES_FILE, folder / LABELS_FILE)
    assert len(dataset) == 6


def test_content_hash_changes_with_one_label(tmp_path):
    first = load_dataset(write(tmp_path / "a", good_images(), good_labels()))
    labels = good_labels()
    labels[0], labels[1] = 1, 0
    second = load_dataset(write(tmp_path / "b", good_images(), labels))
    assert first.content_hash != second.content_hash
    assert first.content_hash == load_dataset(tmp_path / "a").content_hash


def test_write_dataset_round_trip(tmp_path, demo_small):
    loaded = load_dataset(write_dataset(demo_small, tmp_path / "demo"), image_size=None)
    np.testing.assert_array_equal(loaded.images, demo_small.images)
    assert loaded.content_hash == demo_small.content_hash


BAD_IMAGES = {
    "wrong ndim": (np.zeros((6, 200, 200), np.uint8), "4 dimensions"),
    "wrong channels": (np.zeros((6, 200, 200, 4), np.uint8), "3 colour channels"),
    "wrong size": (np.zeros((6, 100, 100, 3), np.uint8), "200x200"),
    "wrong dtype": (np.zeros((6, 200, 200, 3), np.float32), "uint8"),
    "empty": (np.zeros((0, 200, 200, 3), np.uint8), "empty"),
    "pickled": (np.array([{"a": 1}] * 6, dtype=object), "pickled"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_arrays_are_refused_naming_the_file(tmp_path, case):
    images, expected = BAD_IMAGES[case]
    folder = write(tmp_path / "d", images, good_labels(max(len(images), 2)))
    with pytest.raises(DatasetError, match=expected) as error:
        load_dataset(folder)
    assert str(folder / IMAGES_FILE) in str(error.value)


def test_truncated_file(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    path = folder / IMAGES_FILE
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DatasetError, match=r"images_proj.npy: truncated file"):
        load_dataset(folder)


def test_not_a_numpy_file(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    (folder / IMAGES_FILE).write_bytes(b"this is a JPEG, honestly")
    with pytest.raises(DatasetError, match="images_proj.npy: not a valid .npy file"):
        load_dataset(folder)


def test_wrong_suffix(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    other = folder / "images.csv"
    (folder / IMAGES_FILE).rename(other)
    with pytest.raises(DatasetError, match=r"images.csv: not a .npy file"):
        load_dataset(other, folder / LABELS_FILE)


@pytest.mark.parametrize("missing", [IMAGES_FILE, LABELS_FILE])
def test_missing_file(tmp_path, missing):
    folder = write(tmp_path / "d", good_images(), good_labels())
    (folder / missing).unlink()
    with pytest.raises(DatasetError, match=f"{missing}: .* not found"):
        load_dataset(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: no such data folder"):
        load_dataset(tmp_path / "nowhere")


def test_missing_label_column(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    pd.DataFrame({"label": good_labels()}).to_csv(folder / LABELS_FILE, index=False)
    with pytest.raises(DatasetError, match=r"Labels_proj.csv: no 'Label' column \(columns: \['label'\]\)"):
        load_dataset(folder)


def test_label_count_mismatch(tmp_path):
    folder = write(tmp_path / "d", good_images(6), good_labels(4))
    with pytest.raises(DatasetError, match="Labels_proj.csv: 4 labels but .*images_proj.npy holds 6 images"):
        load_dataset(folder)


@pytest.mark.parametrize("bad", [2, -1, "yes", 0.5])
def test_labels_other_than_0_1(tmp_path, bad):
    labels = good_labels()
    labels[3] = bad
    folder = write(tmp_path / "d", good_images(), labels)
    with pytest.raises(DatasetError, match=f"Labels_proj.csv: labels must be 0 or 1; 1 rows are not .*{bad}"):
        load_dataset(folder)


def test_single_class(tmp_path):
    folder = write(tmp_path / "d", good_images(), [1] * 6)
    with pytest.raises(DatasetError, match="Labels_proj.csv: only one class present"):
        load_dataset(folder)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_demo_set_is_deterministic_balanced_and_varied():
    first, second = make_demo_dataset(40, seed=7), make_demo_dataset(40, seed=7)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.images.shape == (40, 200, 200, 3)
    assert first.class_counts == {0: 20, 1: 20}
    assert make_demo_dataset(40, seed=8).content_hash != first.content_hash
    assert first.images.std(axis=0).mean() > 20  # images differ from each other


def test_helmet_dev_loads_as_rgb():
    folder = require(HELMET_DEV, "helmet-dev photo set")
    dataset = load_dataset(folder)
    assert dataset.images.shape == (600, 200, 200, 3) and dataset.images.dtype == np.uint8
    assert dataset.class_counts == {0: 300, 1: 300}
    raw = np.load(folder / IMAGES_FILE, mmap_mode="r", allow_pickle=False)
    np.testing.assert_array_equal(dataset.images[:5], raw[:5, :, :, ::-1])

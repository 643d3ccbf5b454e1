"""Loading, validation errors and the demo set."""

import numpy as np
import pandas as pd
import pytest

from helmetlib import DatasetError, load_dataset, write_dataset
from helmetlib.data.dataset import IMAGES_FILE, LABELS_FILE


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
def test_labels_other_than_0_1_name_their_line(tmp_path, bad):
    labels = good_labels()
    labels[3] = bad
    folder = write(tmp_path / "d", good_images(), labels)
    with pytest.raises(DatasetError, match=f"Labels_proj.csv: labels must be 0 or 1; 1 rows are not .*line 5: '{bad}'"):
        load_dataset(folder)


def test_a_blank_line_in_the_middle_is_refused_with_its_number(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    # the probe: a blank line after row 4 and one extra row at the end would shift every later label by one
    (folder / LABELS_FILE).write_text("Label\n0\n1\n0\n1\n\n0\n1\n")
    with pytest.raises(DatasetError, match="Labels_proj.csv: blank label on line 6"):
        load_dataset(folder)


def test_trailing_newlines_are_fine(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    (folder / LABELS_FILE).write_text("Label\n0\n1\n0\n1\n0\n1\n\n\n")
    assert load_dataset(folder).labels.tolist() == good_labels()


def test_a_header_whose_size_overflows_int64_is_a_dataset_error(tmp_path):
    folder = write(tmp_path / "d", good_images(), good_labels())
    path = folder / IMAGES_FILE
    header = {"descr": "|u1", "fortran_order": False, "shape": (2**58, 200, 200, 3)}
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 1000)
    with pytest.raises(DatasetError, match="images_proj.npy: truncated file"):
        load_dataset(folder)


def test_zero_size_images_are_refused(tmp_path):
    folder = write(tmp_path / "d", np.zeros((2, 0, 0, 3), np.uint8), [0, 1])
    with pytest.raises(DatasetError, match="images of zero size"):
        load_dataset(folder, image_size=None)


def test_images_are_memory_mapped_and_load_under_a_small_address_space_limit(tmp_path):
    """A 168 MB image file loads, hashes and streams in a process allowed 120 MB more address space."""
    import subprocess
    import sys

    n = 1400  # 1400 x 200 x 200 x 3 = 168 MB
    images = np.lib.format.open_memmap(tmp_path / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(n, 200, 200, 3))
    images[::7] = 255
    images.flush()
    del images
    pd.DataFrame({"Label": [0, 1] * (n // 2)}).to_csv(tmp_path / LABELS_FILE, index=False)
    script = f"""
import resource, numpy as np
from helmetlib.data.dataset import ImageArray, load_dataset, batches
from helmetlib.reports.eda import image_statistics
import psutil
used = psutil.Process().memory_info().vms
resource.setrlimit(resource.RLIMIT_AS, (used + 120 * 2**20, resource.RLIM_INFINITY))  # 120 MB of headroom
dataset = load_dataset({str(tmp_path)!r})
assert isinstance(dataset.images, ImageArray), type(dataset.images)
total = sum(int(batch[..., 0].sum()) for batch in batches(dataset.images, 64))
statistics = image_statistics(dataset.images, dataset.labels)
print(len(dataset), dataset.content_hash, total, len(statistics))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    count, digest, total, rows = result.stdout.split()
    assert int(count) == n and int(rows) == n and int(total) == 200 * 200 * 255 * 200
    greedy = script.replace("total = sum", "everything = np.array(dataset.images)\ntotal = sum")
    refused = subprocess.run([sys.executable, "-c", greedy], capture_output=True, text=True)
    assert refused.returncode != 0  # the limit is real: reading the whole file at once fails
    assert "MemoryError" in refused.stderr or "Cannot allocate memory" in refused.stderr

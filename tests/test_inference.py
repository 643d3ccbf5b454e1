"""helmet-predict and the model card, on the selected model of the shared tiny run."""

import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from helmetlib import ModelError, load_model, make_demo_dataset, predict, write_dataset
from helmetlib.inference import card_path, main


@pytest.fixture(scope="module")
def run_dir(finished_run):
    status, out = finished_run
    assert status == 0
    return out / "tiny"


@pytest.fixture(scope="module")
def photos():
    return make_demo_dataset(12, seed=21)


def write_files(images, folder, suffixes):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (image, suffix) in enumerate(zip(images, suffixes, strict=True)):
        path = folder / f"photo{index:02d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_card_describes_the_selected_model(run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    model_file = run_dir / "models" / f"{record['selected_model']}.keras"
    card = json.loads(card_path(model_file).read_text())
    assert card["name"] == record["selected_model"] and card["selected"] is True
    assert card["input"] == {**card["input"], "height": 48, "width": 48, "channels": 3, "color_order": "RGB"}
    assert card["input"]["normalization"] == "unit" and card["threshold"] == 0.5
    assert card["class_names"] == {"0": "no helmet", "1": "helmet"}
    assert card["training_data"]["content_hash"] == record["data"]["content_hash"]
    assert card["split"] == {"train": 28, "validation": 6, "test": 6}
    assert card["metrics"]["test"]["accuracy"] == record["test"]["accuracy"]
    assert card["versions"]["keras"] == keras.__version__
    others = [name for name in record["models"] if name != record["selected_model"]]
    assert all(
        json.loads(card_path(run_dir / "models" / f"{name}.keras").read_text())["selected"] is False for name in others
    )


def test_files_predict_like_arrays_with_folder_recursion_and_mixed_formats(run_dir, photos, tmp_path):
    suffixes = [".png", ".bmp", ".png", ".webp"] * 3  # lossless formats: the same pixels as the arrays
    write_files(photos.images[:6], tmp_path / "in", suffixes[:6])
    write_files(photos.images[6:], tmp_path / "in" / "deeper" / "still", suffixes[6:])  # photo00..05 again
    from_files = predict(run_dir, [tmp_path / "in"])  # sorted paths: deeper/still/... first
    order = [6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]
    from_arrays = predict(run_dir, photos.images)
    assert len(from_files) == 12 and from_files["error"].isna().all()
    assert from_files["source"].str.contains("deeper/still").sum() == 6
    np.testing.assert_allclose(from_files["probability"], from_arrays["probability"][order], atol=1e-6)
    assert from_files["label"].tolist() == from_arrays["label"][order].tolist()
    assert set(from_arrays["class_name"]) <= {"helmet", "no helmet"}


def test_npy_input_uses_the_dataset_bgr_convention(run_dir, photos, tmp_path):
    folder = write_dataset(photos, tmp_path / "npy")
    from_npy = predict(run_dir, [folder / "images_proj.npy"])
    assert from_npy["index"].tolist() == list(range(12))
    np.testing.assert_allclose(from_npy["probability"], predict(run_dir, photos.images)["probability"], atol=1e-6)


def test_bad_files_get_error_rows_and_a_non_zero_exit(run_dir, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_files(photos.images[:3], folder, [".png", ".jpg", ".png"])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "readme.txt").write_text("not a photo")
    out = tmp_path / "table.csv"
    status = main(["--model", str(run_dir), str(folder), str(tmp_path / "missing.png"), "--out", str(out)])
    assert status == 1
    import pandas as pd

    table = pd.read_csv(out)
    errors = dict(zip(table["source"].map(lambda s: s.rsplit("/", 1)[-1]), table["error"], strict=True))
    assert errors["empty.jpg"] == "empty file"
    assert errors["broken.png"].startswith("corrupt image")
    assert errors["readme.txt"].startswith("not an image")
    assert errors["missing.png"] == "file not found"
    assert table["probability"].notna().sum() == 3
    assert "3 predicted, 4 failed" in capsys.readouterr().err


def test_card_threshold_applies_and_threshold_option_overrides(run_dir, photos, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(run_dir / "models", models)
    card_file = models / "cnn.card.json"
    card = json.loads(card_file.read_text())
    card["threshold"] = 1.01  # nothing reaches it
    card_file.write_text(json.dumps(card))
    strict = predict(models / "cnn.keras", photos.images)
    assert (strict["label"] == 0).all() and (strict["threshold"] == 1.01).all()
    lenient = predict(models / "cnn.keras", photos.images, threshold=0.0)
    assert (lenient["label"] == 1).all() and (lenient["threshold"] == 0.0).all()


def test_tflite_agrees_with_keras(run_dir, photos):
    record = json.loads((run_dir / "run.json").read_text())
    selected = record["selected_model"]
    reference = predict(run_dir / "models" / f"{selected}.keras", photos.images)
    for file, tolerance in ((f"{selected}.tflite", 1e-4), (f"{selected}.quant.tflite", 0.05)):
        exported = predict(run_dir / "models" / file, photos.images)
        np.testing.assert_allclose(exported["probability"], reference["probability"], atol=tolerance)
    assert record["export"]["float32"]["label_agreement"] == 1.0
    assert record["export"]["quantized"]["megabytes"] < record["export"]["float32"]["megabytes"]


def test_models_that_are_not_helmetlib_models_are_refused(run_dir, tmp_path, capsys):
    plain = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ModelError, match=r"plain.keras: not a helmetlib model \(no model card plain.card.json"):
        load_model(tmp_path / "plain.keras")
    shutil.copy(card_path(run_dir / "models" / "cnn.keras"), tmp_path / "plain.card.json")
    with pytest.raises(ModelError, match="model card does not match the model"):
        load_model(tmp_path / "plain.keras")
    (tmp_path / "junk.keras").write_bytes(b"zip? no")
    shutil.copy(card_path(run_dir / "models" / "cnn.keras"), tmp_path / "junk.card.json")
    with pytest.raises(ModelError, match="junk.keras: not a loadable Keras model"):
        load_model(tmp_path / "junk.keras")
    assert main(["--model", str(tmp_path / "nothing.keras"), str(tmp_path)]) == 2
    assert "nothing.keras: model file not found" in capsys.readouterr().err

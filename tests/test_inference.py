"""helmet-predict and the model card: cards bound to their files, every per-file problem an error row, the
deployed threshold applied, and saved / TFLite models that agree with training on a model that discriminates."""

import json
import shutil
import struct
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest

from helmetlib import ModelError, load_model, make_demo_dataset, predict, write_dataset
from helmetlib.commands.predict import main
from helmetlib.core.weights import WeightsChoice
from helmetlib.deploy.cards import read_card
from helmetlib.reports.notebook import NotebookRun
from helmetlib.reports.pipeline import compare_and_select, train_and_save
from helmetlib.run.config import RunConfig
from helmetlib.run.folder import RunFolder, RunRecord

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run_dir(finished_run):
    status, out, _ = finished_run
    assert status == 0
    return out / "tiny"


@pytest.fixture(scope="module")
def photos():
    return make_demo_dataset(12, seed=21)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A run folder, made in process, whose only model (the CNN, at 64 px, two repeats: a seed ensemble unless
    validation shows it clearly worse) has learnt the demo set: its probabilities spread from 0 to 1, so agreement
    checks can fail."""
    root = tmp_path_factory.mktemp("cnn-run")
    config = RunConfig(
        run_id="cnn",
        weights=WeightsChoice(requested="none", used="random"),
        cache_dir=str(root),
        models=("cnn",),
        epochs=12,
        batch_size=16,
        repeats=2,
        image_size=64,
        threshold_rule="max_f1",
        bootstrap_resamples=200,
    )
    run = NotebookRun(config=config, folder=RunFolder(root / "run"))
    dataset = run.dataset()
    outcome = train_and_save(run, "cnn", dataset)
    comparison = compare_and_select(run, dataset)
    return run, dataset, outcome, comparison


def write_files(images, folder, suffixes):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (image, suffix) in enumerate(zip(images, suffixes, strict=True)):
        path = folder / f"photo{index:02d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_card_describes_the_selected_model_and_binds_its_files(run_dir):
    record = RunRecord.read(run_dir / "run.json")
    selected = record.selection.selected_model
    card = read_card(run_dir / "models" / f"{selected}.keras")
    assert card.name == selected and card.selected
    assert (card.input.height, card.input.width, card.input.color_order) == (64, 64, "RGB")
    assert card.threshold == record.selection.threshold and card.class_names == {"0": "no helmet", "1": "helmet"}
    assert card.training_data.content_hash == record.data.content_hash
    assert (card.split.train, card.split.validation, card.split.test) == (112, 24, 24)
    assert card.metrics["test"] == record.selection.test
    assert {"keras", "tflite", "quant_tflite"} <= set(card.files) and len(card.files["keras"].sha256) == 64
    for name in record.models:
        if name != selected:
            assert not read_card(run_dir / "models" / f"{name}.keras").selected


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


def test_npy_input_uses_the_dataset_bgr_convention(run_dir, photos, tmp_path):
    folder = write_dataset(photos, tmp_path / "npy")
    from_npy = predict(run_dir, [folder / "images_proj.npy"])
    assert from_npy["index"].tolist() == list(range(12))
    np.testing.assert_allclose(from_npy["probability"], predict(run_dir, photos.images)["probability"], atol=1e-6)


def png_header_only(path, width, height):
    """A PNG whose header announces width x height pixels, with a tiny (broken) image body."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def test_every_per_file_problem_is_an_error_row_and_the_rest_is_written(run_dir, photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_files(photos.images[:3], folder, [".png", ".jpg", ".png"])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "readme.txt").write_text("not a photo")
    png_header_only(folder / "huge.png", 30000, 30000)
    np.save(folder / "zero.npy", np.zeros((2, 0, 0, 3), np.uint8))  # the probe that used to lose every row
    out = tmp_path / "table.csv"
    status = main(
        ["--model", str(run_dir), str(folder), str(tmp_path / "missing.png"), "--out", str(out), "--batch-size", "2"]
    )
    assert status == 1
    table = pd.read_csv(out)
    errors = dict(zip(table["source"].map(lambda s: s.rsplit("/", 1)[-1]), table["error"], strict=True))
    assert errors["empty.jpg"] == "empty file"
    assert errors["broken.png"].startswith("corrupt image")
    assert errors["readme.txt"].startswith("not an image")
    assert errors["missing.png"] == "file not found"
    assert errors["huge.png"].startswith("image too large: 30000x30000 pixels")
    assert "images of zero size" in errors["zero.npy"]
    assert table["probability"].notna().sum() == 3
    assert "3 predicted, 6 failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threshold", "nan"], "threshold must be a number strictly between 0 and 1"),
        (["--threshold", "-1"], "threshold must be a number strictly between 0 and 1"),
        (["--threshold", "2"], "threshold must be a number strictly between 0 and 1"),
        (["--threshold", "inf"], "threshold must be a number strictly between 0 and 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--max-pixels", "0"], "--max-pixels must be at least 1"),
        (["--out", "nodir/x.csv"], "--out nodir/x.csv: the folder nodir does not exist"),
    ],
)
def test_options_are_checked_before_loading_anything(run_dir, tmp_path, capsys, option, message):
    assert main(["--model", str(run_dir), str(tmp_path), *option]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_an_edited_card_is_refused_and_threshold_is_the_way_to_decide_elsewhere(run_dir, photos, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(run_dir / "models", models)
    card_file = models / "cnn.card.json"
    deployed = json.loads(card_file.read_text())["threshold"]["value"]
    table = predict(models / "cnn.keras", photos.images, check_crops=False)
    assert (table["threshold"] == deployed).all()
    assert (table["label"] == (table["probability"] >= deployed)).all()
    for key, value in (("threshold", 0.97), ("calibration", None), ("crop_rule", {"context": 3.0})):
        card = json.loads(card_file.read_text())
        edited = {**card, key: {**card[key], "value": value} if key == "threshold" else value}
        if key == "crop_rule":
            edited[key] = {**card[key], **value}
        card_file.with_name("edited.json").write_text(json.dumps(edited))
        card_file.rename(card_file.with_name("original.json"))
        card_file.with_name("edited.json").rename(card_file)
        assert main(["--model", str(models / "cnn.keras"), str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert "cnn.card.json: edited after helmetlib wrote it" in error and "give --threshold" in error, key
        card_file.with_name("original.json").replace(card_file)
    lenient = predict(models / "cnn.keras", photos.images, threshold=1e-6, check_crops=False)
    assert (lenient["label"] == 1).all() and (lenient["threshold"] == 1e-6).all()
    files = tmp_path / "crops"
    write_files(photos.images[:4], files, [".png"] * 4)
    out = tmp_path / "given.csv"
    main(["--model", str(models / "cnn.keras"), str(files), "--threshold", "0.25", "--out", str(out)])
    assert (pd.read_csv(out)["threshold"] == 0.25).all()
    assert f"threshold 0.25 (--threshold; the card's {deployed:.3f})" in capsys.readouterr().err


def test_a_card_is_bound_to_its_own_files(run_dir, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(run_dir / "models", models)
    selected = RunRecord.read(run_dir / "run.json").selection.selected_model
    other = next(name for name in ("vgg16_linear", "vgg16_mlp") if name != selected)
    # the probe: another model's TFLite file beside a card that describes no such file
    shutil.copy(models / f"{selected}.tflite", models / f"{other}.tflite")
    with pytest.raises(ModelError, match=f"{other}.tflite: its card {other}.card.json does not describe this file"):
        load_model(models / f"{other}.tflite")
    # the probe: a same-named model file that is not the one the card was written for
    shutil.copy(models / "cnn.keras", models / f"{other}.head.keras")
    assert main(["--model", str(models / f"{other}.head.keras"), str(tmp_path)]) == 2
    assert "does not match its card" in capsys.readouterr().err and "SHA-256 differs" in str(
        pytest.raises(ModelError, load_model, models / f"{other}.head.keras").value
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda card: card.pop("input"), "key 'input'"),
        (lambda card: card["threshold"].update(value="abc"), "key 'threshold.value'"),
        (lambda card: card["threshold"].update(value=float("nan")), "strictly between 0 and 1"),
        (lambda card: card.update(format="other/1"), "key 'format'"),
        (lambda card: card["input"].update(normalization="vgg16"), "is not how cnn was trained ('unit')"),
    ],
)
def test_malformed_cards_exit_2_naming_the_key(run_dir, tmp_path, capsys, edit, message):
    models = tmp_path / "models"
    shutil.copytree(run_dir / "models", models)
    card_file = models / "cnn.card.json"
    card = json.loads(card_file.read_text())
    edit(card)
    card_file.write_text(json.dumps(card))
    assert main(["--model", str(models / "cnn.keras"), str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_models_that_are_not_helmetlib_models_are_refused(run_dir, tmp_path, capsys):
    from helmetlib.core.backend import keras

    plain = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ModelError, match=r"plain.keras: not a helmetlib model \(no model card plain.card.json"):
        load_model(tmp_path / "plain.keras")
    assert main(["--model", str(tmp_path / "nothing.keras"), str(tmp_path)]) == 2
    assert "nothing.keras: model file not found" in capsys.readouterr().err


def test_saved_and_exported_models_agree_with_training_on_a_discriminating_model(cnn_run):
    run, dataset, outcome, comparison = cnn_run
    assert outcome.result.deployed == "seed ensemble of 2 repeats"  # the ensemble path, end to end
    average = np.mean([trained.probabilities["validation"] for trained in outcome.repeats], axis=0)
    np.testing.assert_allclose(outcome.deployed.probabilities["validation"], average)
    calibration = read_card(run.folder.model_file("cnn")).calibration
    assert calibration == comparison.selection.calibration and calibration.slope > 0
    validation = calibration.apply(average)  # what every reader of the card answers
    assert np.ptp(validation) >= 100 * TOLERANCE  # the model discriminates: agreement is not vacuous
    images = dataset.images[outcome.parts.validation]
    saved = predict(run.folder.model_file("cnn"), images, check_crops=False)["probability"].to_numpy()
    np.testing.assert_allclose(saved, validation, atol=TOLERANCE)
    exported = predict(run.folder.tflite_file("cnn"), images)["probability"].to_numpy()
    np.testing.assert_allclose(exported, validation, atol=TOLERANCE)
    quantized = predict(run.folder.tflite_file("cnn", quantized=True), images)["probability"].to_numpy()
    assert np.abs(quantized - validation).max() < 0.05 and np.ptp(quantized) > 0.5
    export = comparison.selection.export
    assert export["tflite"].label_agreement == 1.0 and export["quant_tflite"].megabytes < export["tflite"].megabytes


def test_truncated_blank_and_whole_photo_inputs_are_error_rows(run_dir, photos, tmp_path, capsys):
    folder = tmp_path / "odd"
    [good] = write_files(photos.images[:1], folder, [".jpg"])
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imwrite(str(folder / "blank.png"), np.full((64, 64, 3), 128, np.uint8))
    strip = np.concatenate(list(photos.images[:6]), axis=1)  # six crops side by side
    assert cv2.imwrite(str(folder / "strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    out = tmp_path / "odd.csv"
    assert main(["--model", str(run_dir), str(folder), "--out", str(out)]) == 1
    table = pd.read_csv(out)
    errors = dict(zip(table["source"].map(lambda s: s.rsplit("/", 1)[-1]), table["error"], strict=True))
    assert errors["truncated.jpg"].startswith("truncated or partly decoded image (image file is truncated")
    assert errors["blank.png"].startswith("blank or near-constant image (pixel standard deviation 0.0)")
    assert errors["strip.png"].startswith(f"looks like a whole photo ({6 * strip.shape[0]}x{strip.shape[0]} pixels")
    assert pd.isna(errors["photo00.jpg"]) and table["probability"].notna().sum() == 1
    assert "1 predicted, 3 failed" in capsys.readouterr().err


def test_helmet_predict_uses_the_deployed_threshold_chosen_on_validation(cnn_run):
    run, dataset, _, comparison = cnn_run
    selection = comparison.selection
    assert selection.threshold.rule == "max_f1" and "chosen on validation" in selection.threshold.description
    table = predict(run.folder.path, dataset.images[:8])  # the run folder: its selected model and card
    assert (table["threshold"] == selection.threshold.value).all()
    assert (table["label"] == (table["probability"] >= selection.threshold.value)).all()


def test_the_default_threshold_rule_is_recorded_in_the_card_and_used_by_helmet_predict(run_dir, photos):
    record = RunRecord.read(run_dir / "run.json")
    card = read_card(run_dir / "models" / f"{record.selection.deployed}.keras")
    assert card.threshold.rule == record.config.threshold_rule == "calibrated" and card.threshold.value == 0.5
    assert "0.5 on calibrated P(helmet)" in card.threshold.description
    table = predict(run_dir, photos.images, check_crops=False)
    assert (table["threshold"] == 0.5).all() and (table["label"] == (table["probability"] >= 0.5)).all()

"""helmet-evaluate on the shared tiny demo run and a second demo set."""

import json

import numpy as np
from conftest import LOG_NOISE

from helmetlib import make_demo_dataset, predict, predict_proba, write_dataset
from helmetlib.commands.evaluate import main
from helmetlib.deploy.artifacts import load_run_model
from helmetlib.deploy.evaluate import evaluate_run
from helmetlib.deploy.predict import fit_to_input
from helmetlib.run.folder import RunFolder


def test_evaluate_writes_report_and_json(finished_run, tmp_path, capfd):
    status, out, _ = finished_run
    run = out / "tiny"
    other = write_dataset(make_demo_dataset(24, seed=99), tmp_path / "elsewhere")
    json_file = tmp_path / "scores.json"
    assert main([str(run), "--data", str(other), "--out", str(tmp_path / "report"), "--json", str(json_file)]) == 0
    scores = json.loads(json_file.read_text())
    record = json.loads((run / "run.json").read_text())
    assert scores["selected_model"] == record["selected_model"]
    assert set(scores["models"]) == set(record["models"])
    for result in scores["models"].values():
        assert {"accuracy", "recall", "precision", "f1", "per_class", "roc_auc"} <= set(result)
        assert result["n"] == 24 and sum(map(sum, result["confusion"])) == 24
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Generalisation check" in page and page.count("<img") == 1 + len(record["models"])
    printed, errors = capfd.readouterr()  # file descriptors: TensorFlow's own log lines would show here
    assert all(name in printed for name in record["models"]) and "helmet-evaluate: report" in printed
    assert not LOG_NOISE.search(errors), errors[-2000:]


def test_evaluate_refuses_bad_data_and_non_runs(finished_run, tmp_path, capsys):
    run = finished_run[1] / "tiny"
    (tmp_path / "bad").mkdir()
    assert main([str(run), "--data", str(tmp_path / "bad")]) == 2
    assert "images_proj.npy: image file not found" in capsys.readouterr().err
    assert main([str(tmp_path), "--data", str(tmp_path / "bad")]) == 2
    assert "not a helmet-reports run folder" in capsys.readouterr().err
    unwritable = tmp_path / "nodir" / "e.json"
    assert main([str(run), "--data", str(tmp_path / "bad"), "--json", str(unwritable)]) == 2  # before any work
    assert f"--json {unwritable}: the folder {unwritable.parent} does not exist" in capsys.readouterr().err


def test_evaluate_and_predict_give_the_calibrated_probabilities_of_the_card(finished_run, tmp_path):
    run = finished_run[1] / "tiny"
    dataset = make_demo_dataset(24, seed=98)
    folder = write_dataset(dataset, tmp_path / "other")
    result = evaluate_run(run, folder)
    selected = result.evaluation.selected_model
    model, card = load_run_model(RunFolder(run), selected)
    assert card.calibration is not None and card.calibration.fitted_on == card.split.validation
    size = (card.input.height, card.input.width)
    resized = np.stack([fit_to_input(image, size) for image in dataset.images])  # as prediction prepares them
    raw = predict_proba(model, resized, normalization=card.input.normalization)
    calibrated = card.calibration.apply(raw)
    assert np.abs(calibrated - raw).max() > 1e-3  # the calibration changes something: the checks below can fail
    np.testing.assert_allclose(result.probabilities[selected], calibrated, atol=1e-6)
    for model in (run, run / "models" / f"{selected}.tflite"):
        np.testing.assert_allclose(predict(model, dataset.images)["probability"], calibrated, atol=1e-4)


def test_heads_on_one_normalisation_share_its_backbone_pass_and_score_the_same(finished_run):
    """vgg16_linear, vgg16_mlp and vgg16_mlp_aug read VGG16's block 5 of /255 images, vgg16_gap and vgg16_multiscale
    its pooled blocks of VGG16-normalised images: one backbone pass per batch and normalisation, with the
    probabilities of each model on its own."""
    from helmetlib.deploy.evaluate import SharedBackbone
    from helmetlib.deploy.predict import load_model

    folder = RunFolder(finished_run[1] / "tiny")
    images = make_demo_dataset(40, seed=97, image_size=64).images
    shared, expected = SharedBackbone("float32"), {}
    for name in ("vgg16_linear", "vgg16_mlp", "vgg16_mlp_aug", "vgg16_gap", "vgg16_multiscale"):
        alone = load_model(folder.loadable_file(name))
        together = shared.wrap(alone)
        assert together.predict_batch is not alone.predict_batch
        expected[name] = predict(alone, images, batch_size=16)["probability"].to_numpy(float)
        np.testing.assert_allclose(predict(together, images, batch_size=16)["probability"], expected[name], atol=1e-6)
    assert shared.passes == 2 * 3  # two normalisations, 3 batches each

    rounded = SharedBackbone("bfloat16")  # helmet-evaluate's pass where the hardware computes in bfloat16: 0.024
    # at most here (random weights, 64 px), where a wrong normalisation or the wrong features move it by tenths
    fast = predict(rounded.wrap(load_model(folder.loadable_file("vgg16_gap"))), images, batch_size=16)
    assert 0 < np.abs(fast["probability"].to_numpy(float) - expected["vgg16_gap"]).max() < 0.05

"""The helmet-reports pipeline end to end on a tiny demo set (1 epoch, no pretrained weights)."""

import json
import shutil
from pathlib import Path

from conftest import TINY

from helmetlib import MODEL_NAMES
from helmetlib.reports import main

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_run_succeeds_and_writes_every_file(finished_run):
    status, out = finished_run
    assert status == 0
    run = out / "tiny"
    stems = ["00_eda", *(f"10_model_{name}" for name in MODEL_NAMES), "20_comparison"]
    for stem in stems:
        for suffix in (".ipynb", ".html", ".code.html"):
            assert (run / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    for name in MODEL_NAMES:
        for suffix in (".keras", ".history.json", ".probabilities.npz", ".metrics.json"):
            assert (run / "models" / f"{name}{suffix}").is_file()
    assert not list(out.glob(".tmp-*"))
    assert json.loads((out / "latest.json").read_text())["run_id"] == "tiny"
    assert "tiny/index.html" in (out / "index.html").read_text()


def test_html_reports_have_sections_and_figures(finished_run):
    run = finished_run[1] / "tiny"
    eda = (run / "00_eda.html").read_text()
    for section in ("Class balance", "Examples per class", "Image statistics by class", "The split", "Leakage audit"):
        assert section in eda
    assert "20 groups" in eda and "Validation scores of vgg16_linear" in eda and "grouped split" in eda
    model = (run / "10_model_vgg16_mlp.html").read_text()
    for section in (
        "Training curves",
        "Performance on train and validation",
        "Predictions on validation",
        "Observation",
    ):
        assert section in model
    assert model.count("<img") >= 4  # curves, two confusion matrices, prediction grid
    assert 'class="highlight' not in model  # the reader version hides code cells
    assert 'class="highlight' in (run / "10_model_cnn.code.html").read_text()
    comparison = (run / "20_comparison.html").read_text()
    assert "Selected model" in comparison and comparison.count("<img") >= 7  # curves, 4 Grad-CAM grids, ...
    assert comparison.count("Grad-CAM") >= 1
    for section in ("ROC and precision-recall", "bootstrap 95 % intervals", "Calibration and threshold", "Grad-CAM"):
        assert section in comparison
    index = (run / "index.html").read_text()
    for stem in ("00_eda", "20_comparison", *(f"10_model_{name}" for name in MODEL_NAMES)):
        assert f"href='{stem}.html'" in index


def test_run_json_keys_and_values(finished_run):
    record = json.loads((finished_run[1] / "tiny" / "run.json").read_text())
    assert record["status"] == "ok" and record["failures"] == []
    assert record["started"] <= record["finished"]
    assert record["data"]["images"] == 40 and len(record["data"]["content_hash"]) == 16
    assert record["parameters"]["batch_size"] == 16  # the demo default
    assert record["split"] == {
        "train": 28,
        "validation": 6,
        "test": 6,
        "random_state": 42,
        "stratified": True,
        "kind": "random",
    }
    assert record["weights"]["requested"] == "none" and record["weights"]["used"] == "random"
    assert record["versions"]["tensorflow"] and record["versions"]["papermill"]
    assert set(record["stage_seconds"]) >= {"validate data", "notebook 00_eda", "notebook 20_comparison"}
    assert all(seconds >= 0 for seconds in record["stage_seconds"].values())
    assert set(record["models"]) == set(MODEL_NAMES)
    for result in record["models"].values():
        for part in ("train", "validation"):
            metrics = result[part]
            assert set(metrics) >= {"accuracy", "recall", "precision", "f1", "per_class"}
            assert all(0 <= metrics[key] <= 1 for key in ("accuracy", "recall", "precision", "f1"))
        assert "test" not in result
    assert record["selected_model"] in MODEL_NAMES
    assert record["backbone_precision"]["features"] == ["float32"]
    assert record["backbone_precision"]["augmented_views"][0] in ("float32", "bfloat16")
    assert record["test"]["n"] == 6 and 0 <= record["test"]["accuracy"] <= 1
    evaluation = record["evaluation"]
    intervals = evaluation["test_intervals"]["0.5000"]["accuracy"]
    assert intervals["low"] <= intervals["value"] == record["test"]["accuracy"] <= intervals["high"]
    assert evaluation["runner_up"] in MODEL_NAMES and evaluation["runner_up"] != record["selected_model"]
    assert 0 <= evaluation["validation_ece"] <= 1


def test_bad_data_fails_fast_and_leaves_no_run(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "images_proj.npy").write_bytes(b"not numpy")
    (bad / "Labels_proj.csv").write_text("Label\n0\n1\n")
    out = tmp_path / "reports"
    status = main(["--out", str(out), "--data", str(bad), "--run-id", "bad", *TINY])
    assert status == 2
    assert "images_proj.npy: not a valid .npy file" in capsys.readouterr().err
    assert not (out / "bad").exists() and not list(out.glob(".tmp-*")) and not (out / "latest.json").exists()


def test_failing_notebook_gives_a_failed_run_with_its_html(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    template = notebooks / "10_model.py"
    template.write_text(
        template.read_text().replace(
            "# ## Architecture",
            "# ## Architecture\n\n# %%\nraise RuntimeError('planted failure')\n\n# %% [markdown]\n#",
        )
    )
    out = tmp_path / "reports"
    status = main(["--out", str(out), "--run-id", "broken", "--models", "cnn", "--notebooks", str(notebooks), *TINY])
    assert status == 1
    assert "planted failure" in capsys.readouterr().err
    failed = out / "broken.failed"
    record = json.loads((failed / "run.json").read_text())
    assert record["status"] == "failed" and "planted failure" in record["failures"][0]
    assert "planted failure" in (failed / "10_model_cnn.html").read_text()
    assert not (failed / "20_comparison.ipynb").exists()
    assert not (out / "broken").exists() and not (out / "latest.json").exists()
    assert "broken.failed/index.html" in (out / "index.html").read_text()


def test_grouped_split_with_a_missing_groups_file_fails_before_any_notebook(tmp_path, capsys):
    out = tmp_path / "reports"
    missing = tmp_path / "nope.csv"
    assert main(["--out", str(out), "--run-id", "g", "--split", "grouped", "--groups", str(missing), *TINY]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert not list(out.glob("g*")) and not list(out.glob(".tmp-*"))

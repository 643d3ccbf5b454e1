"""helmet-evaluate on the shared tiny demo run and a second demo set."""

import json

from helmetlib import make_demo_dataset, write_dataset
from helmetlib.evaluate import main


def test_evaluate_writes_report_and_json(finished_run, tmp_path, capsys):
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
    printed = capsys.readouterr().out
    assert all(name in printed for name in record["models"]) and "helmet-evaluate: report" in printed


def test_evaluate_refuses_bad_data_and_non_runs(finished_run, tmp_path, capsys):
    run = finished_run[1] / "tiny"
    (tmp_path / "bad").mkdir()
    assert main([str(run), "--data", str(tmp_path / "bad")]) == 2
    assert "images_proj.npy: image file not found" in capsys.readouterr().err
    assert main([str(tmp_path), "--data", str(tmp_path / "bad")]) == 2
    assert "not a helmet-reports run folder" in capsys.readouterr().err

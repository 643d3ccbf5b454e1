"""One source for each number: a finished run's headline numbers (deployed model, threshold, test accuracy / F1 /
bare-head recall with their intervals, the test confusion counts) agree between the records that decide
(`selection.json`, `run.json`, the deployed card) and every page that shows them (the run page, the comparison
report, the runs index), and recompute from `selection.json` alone."""

import json
import re

import numpy as np
import pytest

from helmetlib.evaluation.metrics import confusion, performance

METRICS = ("accuracy", "f1", "bare_head_recall")


@pytest.fixture(scope="module")
def run(finished_run):
    status, out, _ = finished_run
    assert status == 0
    return out / "tiny"


def test_selection_json_recomputes_to_its_own_headline(run):
    selection = json.loads((run / "selection.json").read_text())
    labels, probabilities = np.array(selection["test_labels"]), np.array(selection["test_probabilities"])
    threshold = selection["threshold"]["value"]
    recomputed = performance(labels, probabilities, threshold=threshold)
    for metric in ("accuracy", "f1"):
        assert getattr(recomputed, metric) == pytest.approx(selection["test"][metric], abs=1e-12), metric
        assert selection["test_intervals"][metric]["value"] == pytest.approx(selection["test"][metric], abs=1e-12)
    assert recomputed.bare_head_recall == pytest.approx(selection["test_intervals"]["bare_head_recall"]["value"])
    matrix = confusion(labels, probabilities, threshold=threshold)
    assert matrix.sum() == selection["test"]["n"] and np.trace(matrix) / matrix.sum() == pytest.approx(
        recomputed.accuracy
    )


def test_every_record_and_page_shows_the_same_headline(run):
    selection = json.loads((run / "selection.json").read_text())
    record = json.loads((run / "run.json").read_text())
    deployed = selection.get("deployed_model") or selection["selected_model"]
    card = json.loads((run / "models" / f"{deployed}.card.json").read_text())
    threshold = selection["threshold"]["value"]
    assert record["selection"]["threshold"] == card["threshold"] == selection["threshold"]
    assert record["selection"]["test"] == card["metrics"]["test"] == selection["test"]

    intervals = selection["test_intervals"]
    cells = [
        f"{intervals[m]['value']:.3f} <small>({intervals[m]['low']:.2f} to {intervals[m]['high']:.2f})</small>"
        for m in METRICS
    ]
    run_page = (run / "index.html").read_text()
    comparison = (run / "20_comparison.html").read_text()
    for page in (run_page, comparison):
        assert f"Deploy <b>{deployed}</b>" in page and f"at threshold <b>{threshold:.3f}</b>" in page
        first_row = re.search(r"<tr><th>deployed: [^<]*</th>(.*?)</tr>", page).group(1)
        assert re.findall(r"<td>(.*?)</td>", first_row) == cells
    index = (run.parent / "index.html").read_text()
    row = re.search(rf"<tr><th><a href='{run.name}/index.html'>.*?</tr>", index).group(0)
    assert f"<td>{threshold:.3f}</td>" in row and cells[0] in row and cells[2] in row
    for metric in ("accuracy", "bare_head_recall"):
        value, low, high = (intervals[metric][key] for key in ("value", "low", "high"))
        shown = f"{value:.3f} (95 % CI {low:.3f} to {high:.3f})"
        assert shown in comparison, metric  # the comparison's test table


def test_the_test_confusion_matrix_drawn_counts_the_deployed_decision(run):
    selection = json.loads((run / "selection.json").read_text())
    labels, probabilities = np.array(selection["test_labels"]), np.array(selection["test_probabilities"])
    (bare_bare, bare_helmet), (helmet_bare, helmet_helmet) = confusion(
        labels, probabilities, threshold=selection["threshold"]["value"]
    ).tolist()
    drawn = (
        f"of {bare_bare + bare_helmet} bare heads {bare_bare} called bare and {bare_helmet} called helmet; of "
        f"{helmet_bare + helmet_helmet} helmets {helmet_helmet} called helmet and {helmet_bare} called bare"
    )
    comparison = (run / "20_comparison.html").read_text()
    assert f", test, threshold {selection['threshold']['value']:.3f}): {drawn}" in comparison
    recall = bare_bare / (bare_bare + bare_helmet)
    assert recall == pytest.approx(selection["test_intervals"]["bare_head_recall"]["value"])


def test_helmet_predict_answers_the_test_probabilities_the_records_hold(run, finished_run):
    from helmetlib.deploy.predict import predict
    from helmetlib.reports.notebook import NotebookRun
    from helmetlib.run.folder import RunFolder

    folder = RunFolder(run)
    notebook_run = NotebookRun(config=folder.read_config(), folder=folder)
    dataset = notebook_run.dataset()
    parts = notebook_run.split(dataset)
    selection = json.loads((run / "selection.json").read_text())
    answered = predict(run, dataset.images[parts.test], check_crops=False)["probability"].to_numpy(float)
    np.testing.assert_allclose(answered, selection["test_probabilities"], atol=1e-5)
    assert np.ptp(answered) > 0.1  # the probabilities spread: agreement is not vacuous

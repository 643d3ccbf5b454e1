"""The helmet-reports pipeline end to end on a tiny demo set, and every way a run can be refused before it starts."""

import json
import re
import shutil
import signal
import statistics
import zipfile

import h5py
import numpy as np
import pytest
from conftest import CNN_ONLY, LOG_NOISE, NOTEBOOKS, TINY, runner

from helmetlib import MODEL_NAMES
from helmetlib.commands.reports import main
from helmetlib.core.settings import NOTEBOOK_ONLY, PARAMETER_TYPES
from helmetlib.core.weights import WeightsChoice, resolve_weights
from helmetlib.data.splits import SplitRecord
from helmetlib.deploy.artifacts import load_run_model
from helmetlib.deploy.cards import read_card
from helmetlib.reports.notebook import NotebookRun
from helmetlib.run.config import ParameterError, RunConfig
from helmetlib.run.folder import ReportsFolder, RunFolder, RunRecord
from helmetlib.runner.engine import notebook_parameter_names, plan_stages
from helmetlib.training.repeats import predict_proba

LOG_LINES = ("UserWarning", "DeprecationWarning", "absl", "I0000", "E0000", "W0000", "cuInit", "XNNPACK", "Traceback")


@pytest.fixture(scope="module")
def run(finished_run):
    status, out, _ = finished_run
    assert status == 0, finished_run[2][-3000:]
    return RunFolder(out / "tiny")


def test_run_writes_every_file_and_moves_into_place(finished_run, run):
    out = finished_run[1]
    stems = ["00_eda", *(RunFolder.model_stem(name) for name in MODEL_NAMES), "20_comparison"]
    for stem in stems:
        for path in (run.notebook(stem), run.html(stem), run.code_html(stem)):
            assert path.is_file(), f"{path.name} missing"
    for name in MODEL_NAMES:
        for path in (run.card_file(name), run.result_file(name), run.history_file(name), run.probabilities_file(name)):
            assert path.is_file(), f"{path.name} missing"
        assert run.model_file(name).is_file() or run.head_file(name).is_file()
    assert run.config_file.is_file() and run.audit_file.is_file() and run.selection_file.is_file()
    assert not list(out.glob(".tmp-*"))
    assert ReportsFolder(out).latest_run_id() == "tiny" and (out / "latest").resolve() == run.path


def test_run_json_is_a_typed_record_with_repeats_and_summary(run):
    record = RunRecord.read(run.record_file)
    raw = json.loads(run.record_file.read_text())
    assert record.status == "ok" and record.failures == () and record.started <= record.finished
    assert record.data.images == 160 and len(record.data.content_hash) == 16 and record.data.demo
    assert record.config.batch_size == 16 and record.config.repeats == 1  # the demo defaults
    assert record.split == SplitRecord(train=112, validation=24, test=24, kind="random", random_state=42)
    assert raw["split"]["stratified"] is True
    assert raw["weights"]["requested"] == "none" and raw["weights"]["used"] == "random"
    assert set(record.models) == set(MODEL_NAMES)
    for name, result in raw["models"].items():
        assert {"repeats", "summary", "collapsed", "train", "validation"} <= set(result)
        [repeat] = result["repeats"]
        assert {"seed", "train", "validation", "epochs_run", "collapsed", "restarts"} <= set(repeat)
        assert repeat["seed"] == 812 and result["collapsed"] == repeat["collapsed"]
        assert set(result["summary"]["f1"]) == {"mean", "std", "min", "max"}
        assert result["summary"]["f1"]["mean"] == repeat["validation"]["f1"], name
    assert set(record.stage_seconds) >= {"notebook 00_eda", "notebook 20_comparison"}
    selection = record.selection
    if selection.selected_model is not None:
        assert not record.models[selection.selected_model].collapsed
        assert raw["selected_model"] == selection.selected_model and raw["test"]["n"] == 24
        interval = selection.test_intervals["accuracy"]
        assert interval.low <= interval.value == selection.test.accuracy <= interval.high
    assert RunRecord.from_json(raw) == record  # the file round-trips


def test_reports_hold_no_log_lines_or_warnings(finished_run, run):
    for page in run.path.glob("*.html"):
        text = page.read_text()
        found = [line for line in LOG_LINES if line in text]
        assert not found, f"{page.name} contains {found}"
    stderr = finished_run[2]
    assert not LOG_NOISE.search(stderr), stderr[-2000:]


def test_reports_open_with_their_conclusion(run):
    eda = run.html("00_eda").read_text()
    headings = ["Conclusion", "Class balance", "The split", "Duplicate images across the split", "Related images"]
    where = [eda.index(f'<h2 id="{heading.replace(" ", "-")}') for heading in headings]  # each heading exists
    assert where == sorted(where)  # the conclusion first, the audit after the data
    for text in ("Valid:", "160 images of 64×64", "Leakage:", "80 groups", "Grouped split", "vgg16_linear"):
        assert text in eda, text
    assert "No near-duplicate pairs" in eda or "LEAKAGE" in eda  # an empty table is a sentence
    model = run.html("10_model_cnn").read_text()
    assert model.index("Conclusion") < model.index("Spread over seeds") < model.index("Architecture")
    assert "one repeat (seed 812)" in model and "Model: Sequential" not in model  # no Keras printout
    assert "seed 812</strong> (only one repeat):" in model
    deterministic = run.html("10_model_vgg16_multiscale").read_text()
    assert "one fit, the seed changes nothing</strong>: train accuracy" in deterministic  # no reason beside it
    comparison = run.html("20_comparison").read_text()
    assert comparison.index("Decision") < comparison.index("Spread over seeds") < comparison.index("Grad-CAM")
    assert "```json" not in comparison  # the card is a table, not a JSON dump


def test_html_titles_and_report_order(run):
    title = re.search(r"<title>(.*?)</title>", run.html("10_model_cnn").read_text()).group(1)
    assert title == "cnn — helmet study model report · run tiny"
    h1 = re.search(r"<h1[^>]*>(.*?)<", run.html("10_model_cnn").read_text()).group(1)
    assert h1 == "cnn — helmet study model report"  # the page's heading too, not the template's
    for report in run.path.glob("*.html"):
        if report.name != "index.html":
            assert "<a href='index.html'>&larr; run page</a>" in report.read_text(), report.name
    heading = re.search(r"<title>(.*?)</title>", run.html("00_eda").read_text()).group(1)
    assert heading == "Helmet study: the data and its leakage audit · run tiny"
    page = run.page.read_text()
    order = [
        page.index(f"href='{stem}.html'")
        for stem in ["00_eda", *(RunFolder.model_stem(name) for name in MODEL_NAMES), "20_comparison"]
    ]
    assert order == sorted(order)  # EDA, models in the order run, comparison


def test_run_page_opens_with_the_decision(run):
    page = run.page.read_text()
    record = RunRecord.read(run.record_file)
    decision = page.index("<h2>Decision</h2>")
    assert decision < page.index("<h2>Reports</h2>")
    assert "RANDOMLY INITIALISED" in page and "Synthetic demo data" in page  # random backbone, demo data
    assert record.models["vgg16_multiscale"].deployed == "deterministic: one fit, the seed changes nothing"
    row = re.search(r"<tr><th>vgg16_multiscale.*?</tr>", page).group(0)  # a single fit: no spread, no range
    f1 = statistics.mean(repeat.validation.f1 for repeat in record.models["vgg16_multiscale"].repeats)
    assert f"<td>1 (deterministic: one fit)</td><td>{f1:.3f}</td><td>—</td>" in row
    assert "<td>cached backbone features</td>" in row and "<td>images, end to end</td>" in page  # not fast/direct
    assert "repeat(s)" not in page and "± 0.000" not in page
    selected = record.selection.selected_model
    if selected:
        assert f"Deploy <b>{selected}</b>" in page and "bare-head recall" in page
        assert f"threshold <b>{record.selection.threshold.value:.3f}</b>" in page
        assert "Runner-up:" in page and "95 % bootstrap CI" in page
    for name, result in record.models.items():
        if result.collapsed:
            assert f"{name} collapsed in every repeat" in page


def test_runs_index_lists_each_run_once(finished_run):
    out = finished_run[1]
    index = (out / "index.html").read_text()
    assert index.count("href='tiny/index.html'") == 1  # the `latest` link is not a second run
    row = re.search(r"<tr><th><a href='tiny/index.html'>.*?</tr>", index).group(0)
    record = RunFolder(out / "tiny").read_record()
    assert f"<td>{record.selection.threshold.value:.3f}</td>" in row and "<td></td>" not in row
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d UTC</td>", row) and re.search(r"<td>(\d+ min )?\d+ s</td>", row)
    uses_backbone = record.models[record.selected_model].weights is not None
    assert ("RANDOMLY INITIALISED" in row) == uses_backbone  # the weights note only beside a VGG16 model


def test_runner_and_notebook_parameters_agree():
    config = RunConfig(run_id="x", weights=WeightsChoice(requested="none", used="random"), cache_dir="/c")
    values = config.parameters()
    for source in sorted(NOTEBOOKS.glob("*.py")):
        names = notebook_parameter_names(source)
        unknown = set(names) - set(PARAMETER_TYPES)
        assert not unknown, f"{source.name} declares {unknown}, which the runner cannot pass"
        assert set(names) - set(NOTEBOOK_ONLY) <= set(values)
    stages = plan_stages(config, RunFolder("/tmp/run"), NOTEBOOKS)
    for stage in stages:
        assert list(stage.parameters) == notebook_parameter_names(stage.source)  # exactly its cell, in order
    assert [stage.parameters.get("MODEL_NAME") for stage in stages[1:-1]] == list(config.models)


def test_bad_data_fails_fast_and_leaves_no_run(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "images_proj.npy").write_bytes(b"not numpy")
    (bad / "Labels_proj.csv").write_text("Label\n0\n1\n")
    out = tmp_path / "reports"
    assert main(["--out", str(out), "--data", str(bad), "--run-id", "bad", *TINY]) == 2
    assert "images_proj.npy: not a valid .npy file" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--run-id", "../escape"], "run id '../escape' is not allowed"),
        (["--run-id", "/abs/path"], "is not allowed"),
        (["--run-id", "a/b"], "is not allowed"),
        (["--run-id", ".hidden"], "is not allowed"),
        (["--run-id", "x" * 101], "is not allowed"),
        (["--models", ","], "MODELS is empty"),
        (["--models", "cnn,resnet"], "unknown model 'resnet'"),
        (["--threshold", "nan"], "THRESHOLD must be a number strictly between 0 and 1"),
        (["--threshold", "1.5"], "THRESHOLD must be a number strictly between 0 and 1"),
        (["--demo-size", "3"], "DEMO_SIZE must be at least 20"),
        (["--epochs", "0"], "EPOCHS must be at least 1"),
        (["--split", "grouped", "--groups", "/nope/groups.csv"], "groups.csv"),
        (["--weights", "/nope/w.h5"], "w.h5: weights file not found"),
    ],
)
def test_argument_problems_exit_2_before_any_kernel(tmp_path, capsys, arguments, message):
    out = tmp_path / "reports"
    assert main(["--out", str(out), *CNN_ONLY, *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "escape").exists()


def test_wrong_files_and_addresses_exit_2_before_any_kernel(tmp_path, capsys):
    dense, random_bytes, groups = tmp_path / "dense.h5", tmp_path / "random.h5", tmp_path / "groups.csv"
    with h5py.File(dense, "w") as weights:
        weights["layers/dense/vars/0"] = np.zeros((10, 1), np.float32)
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    groups.write_text("path\n" + "photo.png\n" * 7)
    cases = {
        ("--weights", str(dense)): "not VGG16 no-top weights: layers/dense/vars/0 has shape (10, 1)",
        ("--weights", str(random_bytes)): "not a readable HDF5 weights file",
        ("--scheduler", "notanaddress"): "not an address of the form tcp://HOST:PORT",
        ("--scheduler", "tcp://127.0.0.1:1"): "no scheduler answers there",
        ("--groups", str(groups)): "groups.csv: 7 rows but the dataset has",
        ("--cache-dir", str(dense / "cache")): "dense.h5 is a file, not a folder",
    }
    for arguments, message in cases.items():
        out = tmp_path / "reports"
        assert main(["--out", str(out), *CNN_ONLY, *arguments]) == 2, arguments
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error, arguments
        assert not out.exists() or not any(out.iterdir())


def test_a_disk_too_full_for_a_run_exits_2_before_any_kernel(tmp_path, monkeypatch, capsys):
    from collections import namedtuple

    from helmetlib.runner import study

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(study.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 5 * 2**20, 5 * 2**20))
    out = tmp_path / "reports"
    assert main(["--out", str(out), *CNN_ONLY]) == 2
    assert "5 MB free on its disk; a run of 1 models needs about 30 MB" in capsys.readouterr().err
    assert not out.exists()


def test_a_finish_that_cannot_write_is_a_failed_record_naming_the_file(tmp_path, monkeypatch, capsys):
    """A real file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk, without a file
    name) set once the run's first files are written, and lifted before pytest writes its own output again."""
    import resource

    from helmetlib.runner import study

    before, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit_then_nothing_to_run(*args):  # no kernels: finishing is what is tested
        resource.setrlimit(resource.RLIMIT_FSIZE, (8_000, before[1]))  # run.json (~2 kB) fits, a 20 kB page not
        return []

    page = study.run_page
    monkeypatch.setattr(study, "_execute", limit_then_nothing_to_run)
    monkeypatch.setattr(study, "run_page", lambda *args: page(*args) + "<!-- sections -->" * 1200)
    out = tmp_path / "reports"
    try:
        code = main(["--out", str(out), "--run-id", "full", *CNN_ONLY])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, handler)
    assert code == 1
    error = capsys.readouterr().err
    assert f"finishing the run failed: {out / '.tmp-full' / 'index.html'}: File too large" in error
    assert "Traceback" not in error and not list(out.glob(".tmp-*")) and not list(out.rglob("*.partial"))
    record = RunRecord.read(out / "full.failed" / "run.json")
    assert record.status == "failed" and "File too large" in record.reason and not record.in_progress


def test_a_damaged_old_run_is_skipped_with_one_warning_and_named_in_the_index(tmp_path, monkeypatch, capsys):
    from helmetlib.runner import study

    out = tmp_path / "reports"
    (out / "old").mkdir(parents=True)
    (out / "old" / "run.json").write_text('{"run_id": "old", "stat')  # cut short
    monkeypatch.setattr(study, "_execute", lambda *args: [])  # no kernels: finishing is what is tested
    assert main(["--out", str(out), "--run-id", "new", *CNN_ONLY]) == 4  # no notebook ran: nothing to deploy
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        f"helmet-reports: warning: run old skipped: {out / 'old' / 'run.json'}: not readable JSON "
        "(Unterminated string starting at: line 1 column 19 (char 18))"
    ]
    index = (out / "index.html").read_text()
    assert "<th>old</th><td colspan=9 class=failed>unreadable, skipped:" in index and "new/index.html" in index
    assert (out / "old" / "run.json").is_file()  # reported, never deleted


def test_a_weights_fallback_is_one_warning_line_and_a_cnn_only_run_fetches_nothing(tmp_path, monkeypatch, capsys):
    import warnings

    from helmetlib.core.weights import WeightsFallbackWarning
    from helmetlib.run import config as run_config
    from helmetlib.runner import study

    fetched = []

    def unavailable(requested):
        fetched.append(requested)
        if requested != "imagenet":
            return resolve_weights(requested)
        message = "ImageNet weights for VGG16 unavailable (offline); using RANDOM initialisation"
        warnings.warn(message, WeightsFallbackWarning, stacklevel=2)
        return WeightsChoice(requested="imagenet", used="random", fallback_reason="offline")

    monkeypatch.setattr(run_config, "resolve_weights", unavailable)
    monkeypatch.setattr(study, "_execute", lambda *args: [])  # no kernels: the settings are what is tested
    small = ["--weights", "imagenet", "--demo-size", "40", "--image-size", "32", "--no-export"]
    assert main(["--out", str(tmp_path / "a"), "--run-id", "cnn", "--models", "cnn", *small]) == 4  # no notebooks
    assert "imagenet" not in fetched and "warning" not in capsys.readouterr().err  # only the placeholder was resolved
    assert RunRecord.read(tmp_path / "a" / "cnn" / "run.json").config.weights.used == "unused"
    assert main(["--out", str(tmp_path / "b"), "--run-id", "gap", "--models", "vgg16_gap", *small]) == 4
    error = capsys.readouterr().err
    assert fetched[-1] == "imagenet" and [line for line in error.splitlines() if "warning" in line] == [
        "helmet-reports: warning: ImageNet weights for VGG16 unavailable (offline); using RANDOM initialisation"
    ]


def test_every_option_of_the_settings_table_reaches_the_run_config(tmp_path):
    from helmetlib.commands.reports import parse_args
    from helmetlib.core.settings import SETTINGS
    from helmetlib.run.folder import ReportsFolder
    from helmetlib.runner.study import make_config

    given = {
        "--data": tmp_path / "data",
        "--demo-size": 30,
        "--image-size": 48,
        "--split": "grouped",
        "--split-seed": 7,
        "--groups": tmp_path / "groups.csv",
        "--group-column": "photo",
        "--models": "cnn,vgg16_gap",
        "--weights": "none",
        "--epochs": 3,
        "--batch-size": 8,
        "--seed": 5,
        "--repeats": 2,
        "--max-restarts": 1,
        "--augmented-views": 3,
        "--threshold": 0.4,
        "--threshold-rule": "max-f1",
        "--target-bare-head-recall": 0.8,
        "--cross-ensemble": "off",
        "--bootstrap-resamples": 300,
        "--cache-dir": tmp_path / "cache",
    }
    flags = ["--resplit", "--faithful", "--no-export"]
    assert set(given) | set(flags) == {setting.option for setting in SETTINGS}  # every option of the table
    argv = [str(item) for option, value in given.items() for item in (option, value)] + flags
    config = make_config(parse_args(argv), ReportsFolder(tmp_path / "out"), "x")
    expected = {
        "data_dir": str(tmp_path / "data"),
        "groups_csv": str(tmp_path / "groups.csv"),
        "cache_dir": str(tmp_path / "cache"),
        "models": ("cnn", "vgg16_gap"),
        "threshold_rule": "max_f1",
        "resplit": True,
        "faithful": True,
        "export_tflite": False,
    }
    for setting in SETTINGS:
        value = getattr(config, setting.field)
        if setting.name == "WEIGHTS":
            assert (value.requested, value.used) == ("none", "random")
        elif setting.kind is bool or setting.field in expected:
            assert value == expected[setting.field], setting.name
        else:
            assert value == setting.kind(given[setting.option]) and value != setting.default, setting.name


def test_settings_are_checked_before_the_weights_are_fetched(monkeypatch):
    from helmetlib.run import config as run_config

    fetched = []
    monkeypatch.setattr(
        run_config, "resolve_weights", lambda requested: fetched.append(requested) or resolve_weights("none")
    )
    with pytest.raises(ParameterError, match="DEMO_SIZE must be at least 20"):
        RunConfig.from_parameters(run_id="x", origin="notebook", DEMO_SIZE=3, WEIGHTS="imagenet")
    assert fetched == ["none"]  # only the placeholder: no download was attempted
    assert RunConfig.from_parameters(run_id="x", origin="notebook", WEIGHTS="imagenet").weights.used == "random"
    assert fetched[-1] == "imagenet"


def test_out_under_a_file_and_unknown_options_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--out", str(blocker / "reports"), *CNN_ONLY]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    result = runner(["--out", str(tmp_path / "r"), "--no-such-option"])
    assert result.returncode == 2 and "unrecognized arguments: --no-such-option" in result.stderr


def test_a_stale_notebook_pair_is_refused(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    source = notebooks / "10_model.py"
    source.write_text(source.read_text().replace("## How it was trained", "## How it was trained, edited"))
    assert main(["--out", str(tmp_path / "r"), "--notebooks", str(notebooks), *CNN_ONLY]) == 2
    error = capsys.readouterr().err
    assert "10_model.ipynb and 10_model.py are out of sync" in error and "jupytext --sync" in error


def test_existing_run_folder_is_not_overwritten(finished_run, capsys):
    out = finished_run[1]
    assert main(["--out", str(out), "--run-id", "tiny", *CNN_ONLY]) == 2
    assert "already exists" in capsys.readouterr().err


def test_tables_carry_three_decimals_and_the_card_whole(run):
    from helmetlib.reports.narrative import card_table, spread_table

    record = run.read_record()
    spread = spread_table(record.models)
    assert all(re.fullmatch(r"[01]\.\d{3}", value) for value in spread["F1 mean"].tolist())
    single = [len(record.models[name].repeats) == 1 for name in spread.index]  # no spread to quote: a dash
    assert [value == "—" for value in spread["F1 sd"]] == single and any(single)
    card = card_table(run, record.selected_model)
    assert "test scores (the deployed decision)" in card.index and "test_at_study_threshold scores" not in card.index
    page = run.html("20_comparison").read_text()
    assert card.loc["training data", ""] in page  # shown whole: pandas would cut it at 50 characters
    assert len(card.loc["training data", ""]) > 50


def test_the_split_is_decided_once_and_recorded(run, tmp_path):
    from helmetlib.data.splits import Split
    from helmetlib.run.split import split_key

    record = run.read_record()
    recorded_key = split_key(record.config, record.data.content_hash)
    recorded = Split.load(run.split_file, key=recorded_key)
    assert recorded is not None and recorded.sizes() == {part: getattr(record.split, part) for part in recorded.sizes()}
    assert Split.load(run.split_file, key="other data") is None
    # a notebook reads the recorded split instead of drawing it again: a changed record is what it gets
    folder = RunFolder(tmp_path / "copy")
    folder.path.mkdir()
    swapped = Split(recorded.validation, recorded.train, recorded.test, recorded.kind, recorded.random_state)
    swapped.save(folder.split_file, key=recorded_key)
    notebook_run = NotebookRun(config=record.config, folder=folder)
    dataset = notebook_run.dataset()
    assert np.array_equal(notebook_run.split(dataset).train, recorded.validation)
    # a damaged record is said (into the run's log) and decided again, the same way
    folder.split_file.write_bytes(run.split_file.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{folder.split_file}: recorded split unreadable"):
        redecided = notebook_run.split(dataset)
    assert np.array_equal(redecided.train, recorded.train) and Split.load(folder.split_file, key=recorded_key)


def test_executed_notebooks_name_their_final_run_folder(run):
    for notebook in run.path.glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        injected = next(cell for cell in cells if "injected-parameters" in cell["metadata"].get("tags", []))
        assert f'RUN_DIR = "{run.path}"' in "".join(injected["source"]), notebook.name
        assert ".tmp-" not in notebook.read_text(), notebook.name


@pytest.mark.parametrize("command", ["helmet-reports", "helmet-predict", "helmet-evaluate", "helmet-import"])
def test_every_command_has_a_version_and_help_with_examples(command, capsys):
    from importlib.metadata import version

    from helmetlib.commands import evaluate, import_photos, predict, reports

    entry = {"helmet-reports": reports, "helmet-predict": predict, "helmet-evaluate": evaluate}
    main_of = entry.get(command, import_photos).main
    for option in ("--version", "--help"):
        with pytest.raises(SystemExit) as exited:
            main_of([option])
        assert exited.value.code == 0, option
    shown = capsys.readouterr().out
    assert (
        shown.startswith(f"{command} (helmetlib {version('helmetlib')})")
        and "examples:" in shown
        and "exit codes: 0 " in shown
    )


def test_helmet_reports_help_is_grouped_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    sections = re.findall(r"(?m)^([a-zA-Z][a-zA-Z ,()]+):$", text)
    assert sections[:2] == ["options", "data"] and "distribution (model notebooks on Dask)" in sections
    flat = re.sub(r"\s+", " ", text)
    assert "VGG16 weights: imagenet (a download), none (random) or a weights file (default: imagenet)" in flat
    assert "--epochs EPOCHS training epochs (the study's) (default: 20)" in flat


def test_photo_grids_are_jpeg_and_plots_png_each_with_its_description(run):
    for stem in ("00_eda", RunFolder.model_stem("cnn"), "20_comparison"):
        cells = json.loads(run.notebook(stem).read_text())["cells"]
        outputs = [("".join(cell["source"]), output) for cell in cells for output in cell.get("outputs", [])]
        figures = [
            (source, "".join(output["data"]["text/html"]))
            for source, output in outputs
            if "<img alt=" in "".join(output.get("data", {}).get("text/html", ""))
        ]
        assert not any("image/png" in output.get("data", {}) for _, output in outputs), stem  # one described image
        kinds = {
            kind: [source for source, tag in figures if f"data:image/{kind};base64" in tag] for kind in ("png", "jpeg")
        }
        assert kinds["png"] and kinds["jpeg"], stem
        assert all(grid not in source for source in kinds["png"] for grid in ("_grid(", "image_pairs("))
    for page in run.path.glob("*.html"):
        text = page.read_text()
        alts = re.findall(r"<img[^>]*?alt=\"([^\"]*)\"", text)
        assert "No description has been provided" not in text, page.name
        assert text.count("<img") == len(alts) and all(len(alt) > 20 for alt in alts), page.name
    eda = run.html("00_eda").read_text()
    assert 'alt="Class balance: ' in eda and 'alt="Examples per class in grayscale' in eda


def test_unselected_heads_are_archived_in_float16_and_still_score(run):
    record = RunRecord.read(run.record_file)
    notebook_run = NotebookRun(config=run.read_config(), folder=run)
    dataset = notebook_run.dataset()
    validation = notebook_run.split(dataset).validation
    archived = [name for name in record.models if name != record.selected_model and run.head_file(name).is_file()]
    assert len(archived) >= 4
    for name in archived:
        card = read_card(run.head_file(name))
        assert card.files["head"].weights_dtype == "float16"
        with zipfile.ZipFile(run.head_file(name)) as archive, archive.open("model.weights.h5") as weights:
            stored = _stored_dtypes(h5py.File(weights))
        assert stored == {"float16"}
        model, _ = load_run_model(run, name)
        assert {weights.dtype for weights in model.weights} == {"float32"}
        probabilities = predict_proba(model, dataset.images[validation], normalization=card.input.normalization)
        trained = run.probabilities(name)["validation"]
        # float16 storage moves probabilities by < 0.03 % of their range here; damaged weights would move them by ~all
        assert np.ptp(trained) > 0 and abs(probabilities - trained).max() < 0.01 * np.ptp(trained), name


def _stored_dtypes(weights: h5py.File) -> set[str]:
    dtypes = set()
    weights.visititems(lambda _, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    return dtypes


def test_a_large_unselected_head_is_archived_in_int8_and_answers_within_a_hundredth(tmp_path):
    """The archive rule on a seed ensemble of two MLP heads (members nested in one model): over the parameter
    limit, its Dense kernels are stored int8 (a quarter of float32) and it loads and answers as before, within
    0.01 in P(helmet); under it, float16."""
    from helmetlib.core.backend import keras
    from helmetlib.core.specs import get_spec
    from helmetlib.deploy import artifacts
    from helmetlib.models.builders import HEAD_LAYER, average_of, build_head

    keras.utils.set_random_seed(3)
    members = [build_head(get_spec("vgg16_mlp"), (2, 2, 512)) for _ in range(2)]
    ensemble = average_of(members, name=HEAD_LAYER)
    features = np.random.default_rng(0).normal(0.5, 1.0, (64, 2, 2, 512)).clip(0).astype("float32")
    expected = ensemble.predict(features, verbose=0).ravel()
    assert members[0].count_params() < 1_000_000 < ensemble.count_params()
    assert artifacts.archived_copy(members[0])[1] == "float16" and artifacts.archived_copy(ensemble)[1] == "int8"
    archived, dtype = artifacts.archived_copy(ensemble)
    path = tmp_path / "head.keras"
    archived.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        assert "int8" in _stored_dtypes(h5py.File(weights))
    found = loaded.predict(features, verbose=0).ravel()
    assert dtype == "int8" and np.ptp(expected) > 0.1 and np.abs(found - expected).max() < 0.01
    assert np.abs(found - expected).max() > 0  # it really is another model: the kernels were rounded

"""A year of nightly runs, as an operator and an attacker see them: regressions between runs, clean-up, signals,
time-outs, dead kernels, concurrent runs, hostile run ids and Dask workers, each with real runner processes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import NOTEBOOKS, TINY, free_port, runner

from helmetlib.core.env import THREADS_ENV
from helmetlib.deploy.cards import ModelCard
from helmetlib.run.folder import ReportsFolder, RunFolder, RunRecord

QUICK = [
    "--models",
    "cnn",
    "--weights",
    "none",
    "--demo-size",
    "20",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--no-export",
    "--bootstrap-resamples",
    "100",
]


@pytest.fixture(scope="module")
def nightly(finished_run, tmp_path_factory):
    """Two nights on the same data: the shared tiny run (the CNN trained 15 epochs), then, in a copy of its output
    folder, a worse run (the CNN trained 2 epochs: deployed, validation accuracy about 0.3 lower, on 1 or 2 threads)
    with --fail-on-regression."""
    status, shared, _ = finished_run
    assert status == 0
    out = tmp_path_factory.mktemp("nightly") / "out"
    shutil.copytree(shared, out, symlinks=True)
    bad = runner(
        ["--out", str(out), "--run-id", "night2", *TINY, "--epochs", "2", "--models", "cnn", "--no-export"]
        + ["--fail-on-regression"]
    )
    return out, bad


def test_a_worse_run_is_a_regression_and_exits_3_after_it_is_complete(nightly):
    out, bad = nightly
    assert bad.returncode == 3, bad.stderr[-3000:]
    assert "REGRESSION: " in bad.stderr
    record = RunRecord.read(out / "night2" / "run.json")
    assert record.status == "ok" and ReportsFolder(out).latest_run_id() == "night2"  # complete and indexed
    comparison = record.comparison_with_previous
    assert comparison.previous_run == "tiny" and comparison.same_data
    assert "Training settings differ (epochs 15 -> 2): changes may come from them." in comparison.note
    accuracy = comparison.validation["cnn"][0]
    assert accuracy.metric == "accuracy" and accuracy.regression and accuracy.change.high < 0
    assert accuracy.previous > 0.8 and accuracy.current < accuracy.previous
    assert record.selection.deployed == "cnn"  # worse, yet deployed: a regression, not "nothing deployed"
    raw = json.loads((out / "night2" / "run.json").read_text())
    assert raw["comparison_with_previous"]["validation"]["cnn"][0]["regression"] is True
    page = (out / "night2" / "index.html").read_text()
    assert page.index("REGRESSION since run tiny") < page.index("<h2>Reports</h2>")
    assert "<th>cnn, validation bare-head recall</th>" in page and "bare_head_recall" not in page  # readers' words
    first = RunRecord.read(out / "tiny" / "run.json").comparison_with_previous
    assert first.previous_run is None and "nothing to compare" in first.note


def test_the_index_lists_each_run_once_newest_first_with_a_trend(nightly):
    out = nightly[0]
    index = (out / "index.html").read_text()
    assert index.count("href='tiny/index.html'") == 1 and index.count("href='night2/index.html'") == 1
    assert index.index("night2/index.html") < index.index("tiny/index.html")
    assert "data:image/svg+xml" in index and "regression" in index


def test_changed_data_or_split_is_said_not_compared(nightly, tmp_path):
    from dataclasses import replace

    from helmetlib.run.config import now
    from helmetlib.run.folder import RunFolder
    from helmetlib.runner.regressions import compare_with_previous

    out = nightly[0]
    current = RunRecord.read(out / "night2" / "run.json")
    other_data = replace(current, run_id="later", started=now(), data=replace(current.data, content_hash="0" * 16))
    comparison = compare_with_previous(ReportsFolder(out), RunFolder(out / "night2"), other_data)
    assert comparison.previous_run is None and not comparison.regressions
    assert comparison.note == "First ok run on this data (hash 0000000000000000) in this folder: nothing to compare."
    other_split = replace(current, run_id="later", started=now(), config=replace(current.config, split_seed=7))
    comparison = compare_with_previous(ReportsFolder(out), RunFolder(out / "night2"), other_split)
    assert not comparison.same_data and "the split or image size changed" in comparison.note


def test_regressions_skip_runs_on_other_data_and_damaged_runs(nightly, tmp_path):
    from dataclasses import replace

    from helmetlib.run.config import now
    from helmetlib.run.folder import RunFolder
    from helmetlib.runner.regressions import compare_with_previous

    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    later = replace(RunRecord.read(out / "tiny" / "run.json"), run_id="later", started=now())
    # night2, the newest run, moved to other data: the comparison goes back to tiny, the newest on the same data
    night2 = json.loads((out / "night2" / "run.json").read_text())
    night2["data"]["content_hash"] = "0" * 16
    (out / "night2" / "run.json").write_text(json.dumps(night2))
    comparison = compare_with_previous(ReportsFolder(out), RunFolder(out / "tiny"), later)
    assert comparison.previous_run == "tiny" and comparison.same_data
    assert comparison.note.startswith("Compared with run tiny, the newest earlier ok run on the same data and split")
    # night2 back on the same data but damaged (a deleted probabilities file): skipped and named, never a failure
    night2["data"]["content_hash"] = later.data.content_hash
    (out / "night2" / "run.json").write_text(json.dumps(night2))
    (out / "night2" / "models" / "cnn.probabilities.npz").unlink()
    comparison = compare_with_previous(ReportsFolder(out), RunFolder(out / "tiny"), later)
    assert comparison.previous_run == "tiny" and "(run night2 skipped, its files are unreadable (FileNotFoundError" in (
        comparison.note
    )


def test_clean_is_a_dry_run_unless_applied_and_never_deletes_the_latest_run(nightly, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    features = sorted((out / ".cache" / "features").glob("features-*.npy"))
    assert features
    dry = runner(["clean", "--out", str(out), "--keep", "0"])
    assert dry.returncode == 0 and "dry run, nothing deleted" in dry.stdout
    assert "would delete run tiny" in dry.stdout and "night2" not in dry.stdout.split("keeping")[0]
    assert (out / "tiny").is_dir() and all(path.exists() for path in features)
    store = sorted((out / ".cache" / "backbones").glob("*.weights.h5"))
    assert store  # the tiny run's backbone models keep their VGG16 here
    applied = runner(["clean", "--out", str(out), "--keep", "0", "--apply"])
    assert applied.returncode == 0 and "deleting run tiny" in applied.stdout
    assert not (out / "tiny").exists() and (out / "night2").is_dir()  # latest kept even with --keep 0
    assert not any(path.exists() for path in features + store)  # no kept run needs them any more
    assert "tiny/index.html" not in (out / "index.html").read_text()


def test_clean_older_than_deletes_only_runs_older_than_that(nightly, tmp_path):
    """Two runs, both finished today: --older-than 30 deletes nothing; the first run dated 40 days back is then
    the only one it deletes (the latest run, night2, is never deleted)."""
    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    young = runner(["clean", "--out", str(out), "--older-than", "30", "--apply"])
    assert young.returncode == 0 and "deleting run" not in young.stdout, young.stderr
    assert (out / "tiny").is_dir() and (out / "night2").is_dir()
    record = RunRecord.read(out / "tiny" / "run.json")
    started = (datetime.now(UTC) - timedelta(days=40)).isoformat(timespec="seconds")
    replace(record, started=started).write(out / "tiny" / "run.json")
    dry = runner(["clean", "--out", str(out), "--older-than", "30"])
    assert (
        dry.returncode == 0 and "would delete run tiny" in dry.stdout and "night2" not in dry.stdout.split("keeping")[0]
    )
    old = runner(["clean", "--out", str(out), "--older-than", "30", "--apply"])
    assert old.returncode == 0 and "deleting run tiny" in old.stdout, old.stderr
    assert not (out / "tiny").exists() and (out / "night2").is_dir()


def test_workers_are_capped_at_the_model_notebooks_and_at_least_one(tmp_path, capsys, monkeypatch):
    from collections import namedtuple

    from helmetlib.runner.study import _capped_workers

    memory = namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(64 * 2**30))
    assert _capped_workers(4, 2) == 2 and "--workers 4 capped at 2 (2 model notebooks)" in capsys.readouterr().err
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(7 * 2**30))
    assert _capped_workers(4, 6) == 2 and "capped at 2 (memory for 2 (about 3 GiB each))" in capsys.readouterr().err
    assert _capped_workers(2, 6) == 2 and capsys.readouterr().err == ""
    zero = runner(["--out", str(tmp_path / "out"), "--workers", "0", *QUICK])
    assert zero.returncode == 2 and "--workers must be at least 1, got 0" in zero.stderr
    assert not (tmp_path / "out").exists()


def test_clean_keeps_the_cache_of_a_moved_reports_folder_and_says_so(nightly, tmp_path):
    """A reports folder sharing a cache is moved: its registration in the cache no longer resolves. Clean in
    another folder sharing the cache keeps every cache file and names the lost registration, so the moved
    folder's runs still evaluate (before: the registration was skipped in silence and the store deleted)."""
    from helmetlib.data.dataset import make_demo_dataset, write_dataset
    from helmetlib.deploy.evaluate import evaluate_run
    from helmetlib.models.features import register_cache_user

    cache, first, second, moved = (tmp_path / name for name in ("cache", "first", "second", "moved"))
    shutil.copytree(nightly[0], second, symlinks=True)
    shutil.copytree(second / ".cache", cache)
    shutil.rmtree(second / ".cache")
    for card_file in (second / "tiny" / "models").glob("*.card.json"):  # the shared store, as a run would write
        card = json.loads(card_file.read_text())
        if card["backbone"]:
            card["backbone"]["weights_file"] = str(cache / "backbones" / Path(card["backbone"]["weights_file"]).name)
            ModelCard.from_json(card).write(card_file)
    register_cache_user(cache, second)
    second.rename(moved)
    first.mkdir()
    (first / "latest.json").write_text((moved / "latest.json").read_text())
    store = sorted((cache / "backbones").glob("*.weights.h5")) + sorted((cache / "features").glob("*.npy"))
    cleaned = runner(["clean", "--out", str(first), "--cache-dir", str(cache), "--apply"])
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"cannot be found (moved or deleted?): {second}" in cleaned.stdout
    assert store and all(path.exists() for path in store)
    data = write_dataset(make_demo_dataset(24, seed=5), tmp_path / "data")
    assert len(evaluate_run(moved / "tiny", data).evaluation.models) >= 5


def runner_process(arguments, **options):
    return subprocess.Popen(
        [sys.executable, "-m", "helmetlib.commands.reports", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def wait_for_line(process, text, timeout=120):
    """Read the runner's output until a line holds `text`; every kernel it started by then."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
    raise AssertionError(f"no line with {text!r} within {timeout}s")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_an_interrupted_record_and_no_process(tmp_path, signum, code):
    out = tmp_path / "out"
    process = runner_process(["--out", str(out), "--run-id", "sig", *QUICK])
    wait_for_line(process, "[stage 1/3]")  # the EDA notebook's kernel is starting
    time.sleep(4)
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "no kernel was running"
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert "Traceback" not in stderr and f"run interrupted: interrupted by {signal.Signals(signum).name}" in stderr
    record = RunRecord.read(out / "sig.failed" / "run.json")
    assert record.status == "interrupted" and record.stage == "notebook 00_eda"
    assert not list(out.glob(".tmp-*")) and not (out / "latest.json").exists()
    assert "sig.failed/index.html" in (out / "index.html").read_text()
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def test_a_cell_past_the_timeout_is_a_failed_record(tmp_path):
    out = tmp_path / "out"
    result = runner(["--out", str(out), "--run-id", "slow", "--timeout", "2", *QUICK])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a cell ran longer than --timeout 2s" in result.stderr
    record = RunRecord.read(out / "slow.failed" / "run.json")
    assert record.status == "failed"
    assert record.reason.startswith(f"{record.stage}: a cell ran longer than --timeout 2s")  # the stage that ran over


def test_a_dead_kernel_is_a_failed_record(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    for suffix in (".py", ".ipynb"):
        (notebooks / f"00_eda{suffix}").unlink()
    source = (NOTEBOOKS / "00_eda.py").read_text()
    (notebooks / "00_eda.py").write_text(
        source.replace("# ## Conclusion", "# ## Conclusion\n\n# %%\nimport os\nos._exit(1)\n\n# %% [markdown]\n#")
    )
    out = tmp_path / "out"
    result = runner(["--out", str(out), "--run-id", "dead", "--notebooks", str(notebooks), *QUICK])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    record = RunRecord.read(out / "dead.failed" / "run.json")
    assert record.status == "failed" and "00_eda" in record.reason and "kernel died" in record.reason
    assert (out / "dead.failed" / "00_eda.html").is_file()  # the partial notebook, rendered
    assert "skipping 10_model_cnn, 20_comparison: earlier notebooks failed" in result.stdout  # the run stops there
    assert not (out / "dead.failed" / "10_model_cnn.ipynb").exists()
    page = (out / "dead.failed" / "index.html").read_text()
    assert "Not run (the run ended at 00_eda): Model cnn, Comparison and selection." in page  # said there too


def test_a_failing_model_notebook_under_two_workers_after_ok_runs(nightly, tmp_path):
    """A raising cell in one model notebook on the embedded Dask cluster: exit 1 with one line on stderr, the
    record in <id>.failed naming the notebook and the error, the other notebook cancelled or finished, and the
    earlier ok runs untouched (latest still points at the newest of them)."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks)
    for suffix in (".py", ".ipynb"):
        (notebooks / f"10_model{suffix}").unlink()
    source = (NOTEBOOKS / "10_model.py").read_text()
    planted = (
        '# %%\nif MODEL_NAME == "cnn":\n    raise ValueError("planted failure")\n\n# %% [markdown]\n# ## Conclusion'
    )
    (notebooks / "10_model.py").write_text(source.replace("# %% [markdown]\n# ## Conclusion", planted, 1))
    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    latest = ReportsFolder(out).latest_run_id()
    options = [*QUICK[:1], "cnn,vgg16_gap", *QUICK[2:], "--workers", "2", "--notebooks", str(notebooks)]
    result = runner(["--out", str(out), "--run-id", "broken", *options])
    assert result.returncode == 1, result.stderr[-3000:]
    page = out / "broken.failed" / "index.html"
    assert result.stderr.strip().splitlines() == [
        f"helmet-reports: run failed: 10_model_cnn: ValueError: planted failure (see {page})"
    ]
    record = RunRecord.read(out / "broken.failed" / "run.json")
    assert record.status == "failed" and record.reason == "10_model_cnn: ValueError: planted failure"
    assert ReportsFolder(out).latest_run_id() == latest and not list(out.glob(".tmp-*"))
    assert re.search(r"^skipping (10_model_vgg16_gap, )?20_comparison: earlier notebooks failed$", result.stdout, re.M)
    assert "[dask] 2 model notebooks on 2 worker(s)" in result.stdout  # the run went through Dask


@pytest.fixture(scope="module")
def concurrent(nightly, tmp_path_factory):
    """Two identical runs started at once (default, generated run ids) in a copy of the nightly folder, whose latest
    run deployed a model: (folder, latest before, [(exit status, stderr)], the two new runs' folders)."""
    out = tmp_path_factory.mktemp("concurrent") / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    before = ReportsFolder(out).latest_run_id()
    processes = [runner_process(["--out", str(out), *QUICK]) for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    results = [(process.returncode, stderr) for process, (_, stderr) in zip(processes, outputs, strict=True)]
    new = [folder for folder, record in ReportsFolder(out).runs() if record.status == "nothing_deployed"]
    return out, before, results, new


def test_two_runs_at_once_finish_in_their_own_folders(concurrent):
    """One epoch on 20 images: every model collapses, so both runs complete with nothing to deploy (exit 4)."""
    out, before, results, new = concurrent
    assert all(code == 4 for code, _ in results), [stderr[-2000:] for _, stderr in results]
    assert len(new) == 2 and len({folder.path for folder in new}) == 2
    index = (out / "index.html").read_text()
    assert all(f"href='{folder.path.name}/index.html'" in index for folder in new)
    assert index.count("<td class='nothing_deployed'>nothing deployed</td>") == 2


def test_a_run_that_deploys_nothing_exits_4_and_latest_stays_on_the_last_run_that_did(concurrent):
    out, before, results, new = concurrent
    reports = ReportsFolder(out)
    assert RunRecord.read(reports.run(before).record_file).selection.deployed
    for folder in new:
        record = folder.read_record()
        assert record.status == "nothing_deployed" and record.selection.deployed is None
        page = folder.page.read_text()
        assert "NOTHING DEPLOYED" in page and "Nothing to deploy: every model collapsed" in page
    assert reports.latest_run_id() == before and (out / "latest").resolve().name == before
    for _, stderr in results:
        assert "helmet-reports: nothing deployed: every model collapsed" in stderr and "latest unchanged" in stderr


def test_two_identical_runs_notebooks_differ_only_in_timings(concurrent):
    """The executed notebooks of two runs with the same settings, cell by cell, outputs included (figures by their
    bytes): equal once the run ids and the timings (seconds, clock times, a table's `seconds` column) are masked."""
    *_, new = concurrent
    timing = re.compile(r"\d+(\.\d+)?\s*(s|seconds|min)\b|\d{4}-\d\d-\d\dT[\d:.]+(\+00:00|Z)?|\d+:\d\d:\d\d")

    def without_seconds_column(html: str) -> str:
        rows = re.findall(r"<tr[^>]*>.*?</tr>", html, flags=re.S)
        if not rows:
            return html
        header = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>.*?</th>", rows[0], re.S)]
        if "seconds" not in header:
            return html
        column = header.index("seconds")
        cells = [re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row, flags=re.S) for row in rows]
        return json.dumps([row[:column] + row[column + 1 :] for row in cells])

    def outputs(cell: dict) -> list:
        shown = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:  # its text/plain twin holds the same numbers
                data = {"text/html": without_seconds_column("".join(data["text/html"]))}
            shown.append({**output, "data": data} if data else output)
        return shown

    def cells(folder: RunFolder, stem: str) -> list[str]:
        notebook = json.loads(folder.notebook(stem).read_text())
        texts = [json.dumps([cell["source"], outputs(cell)], sort_keys=True) for cell in notebook["cells"]]
        return [timing.sub("T", text.replace(folder.path.name, "RUN")) for text in texts]

    first, second = new
    stems = sorted(path.stem for path in first.path.glob("*.ipynb"))
    assert stems == ["00_eda", "10_model_cnn", "20_comparison"]
    for stem in stems:
        assert cells(first, stem) == cells(second, stem), stem


def test_a_run_id_never_reaches_outside_out(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    out = tmp_path / "a" / "out"
    for _ in range(2):
        result = runner(["--out", str(out), "--run-id", "../../victim", *QUICK])
        assert result.returncode == 2 and "is not allowed" in result.stderr
    assert (victim / "precious.txt").read_text() == "keep me" and not (tmp_path / "a").exists()


@pytest.mark.parametrize("run_id", ["index.html", "latest", "latest.json", "night.failed"])
def test_the_runners_own_names_are_refused_as_run_ids(tmp_path, run_id):
    out = tmp_path / "out"
    result = runner(["--out", str(out), "--run-id", run_id, *QUICK])
    assert result.returncode == 2 and f"run id {run_id!r} is not allowed" in result.stderr
    assert "the runner's own files in --out" in result.stderr and not out.exists()


def test_two_embedded_workers_give_the_sequential_results(tmp_path):
    """--workers 2 on the embedded LocalCluster (it failed 4 times in 4 on two models: kernels of two workers took
    the same IPC socket files; test_kernel checks that every kernel gets its own), against the sequential run, on
    models whose validation probabilities spread, so that equality can fail."""
    models = ("cnn", "vgg16_gap")
    options = ["--models", ",".join(models), "--weights", "none", "--demo-size", "80", "--image-size", "48"]
    options += ["--epochs", "6", "--no-export", "--bootstrap-resamples", "100", "--cache-dir", str(tmp_path / "c")]
    options += ["--cross-ensemble", "unless-worse"]  # the runner's option reaches the comparison
    out = tmp_path / "out"
    one_thread = {**os.environ, THREADS_ENV: "1"}  # as each of 2 workers on 2 cores: the same float arithmetic
    sequential = runner(["--out", str(out), "--run-id", "sequential", *options], env=one_thread)
    assert sequential.returncode == 0, sequential.stderr[-3000:]
    expected = {name: RunFolder(out / "sequential").probabilities(name)["validation"] for name in models}
    assert all(len(p) == 12 and np.ptp(p) > 0.05 for p in expected.values()), expected
    cross = RunFolder(out / "sequential").read_record().selection.cross_ensemble
    assert cross.rule == "unless-worse" and cross.deployed == (cross.brier_gain.high >= 0)
    assert (out / "sequential" / "models" / "ensemble.card.json").is_file() == cross.deployed
    result = runner(["--out", str(out), "--run-id", "workers", "--workers", "2", *options])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[dask] 2 model notebooks on 2 worker(s)" in result.stdout
    for name, probabilities in expected.items():
        found = RunFolder(out / "workers").probabilities(name)["validation"]
        np.testing.assert_allclose(found, probabilities, atol=1e-6)


def test_model_notebooks_on_a_real_dask_scheduler_give_the_sequential_results(concurrent, tmp_path):
    port = free_port()
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [bin_dir / "dask", "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = tmp_path / "out"
        result = runner(["--out", str(out), "--run-id", "dask", "--scheduler", f"tcp://127.0.0.1:{port}", *QUICK])
        assert result.returncode == 4, result.stderr[-3000:]  # completed; the CNN collapses in one epoch
        assert "[dask] 1 model notebooks on 1 worker(s)" in result.stdout
        assert "notebook 10_model [cnn] done in" in result.stdout and "(Dask task)" in result.stdout
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=30)
    distributed = RunRecord.read(out / "dask" / "run.json")
    sequential = concurrent[3][0].read_record()

    def scores(record):
        return [(r.seed_used, r.train, r.validation, r.epochs_run, r.collapsed) for r in record.models["cnn"].repeats]

    assert scores(distributed) == scores(sequential)  # same seeds, same numbers
    assert distributed.selection.test == sequential.selection.test


def test_clean_keeps_what_another_folder_sharing_the_cache_needs(nightly, finished_run, tmp_path):
    """Two report folders share one cache: cleaning the first keeps the backbones and features the second's runs
    use, so the second's heads still load (before the cache-users registry, clean read only its own folder's cards
    and deleted them)."""
    from helmetlib.deploy.predict import load_model
    from helmetlib.models.features import cache_users, register_cache_user

    second, first = tmp_path / "second", tmp_path / "first"
    shutil.copytree(nightly[0], second, symlinks=True)  # the tiny run: five heads over VGG16
    cache = second / ".cache"
    assert finished_run[1].resolve() in cache_users(cache)  # the runner registered the folder it wrote
    for card_file in (second / "tiny" / "models").glob("*.card.json"):  # the copy's cards name the copied store
        card = json.loads(card_file.read_text())
        if card["backbone"]:
            card["backbone"]["weights_file"] = str(cache / "backbones" / Path(card["backbone"]["weights_file"]).name)
            ModelCard.from_json(card).write(card_file)  # as a run writing into this folder would: sealed
    register_cache_user(cache, second)  # as its runner would have
    first.mkdir()
    (first / "latest.json").write_text((second / "latest.json").read_text())  # a reports folder, its runs gone
    store = sorted((cache / "backbones").glob("*.weights.h5")) + sorted((cache / "features").glob("*.npy"))
    assert store
    cleaned = runner(["clean", "--out", str(first), "--cache-dir", str(cache), "--apply"])
    assert cleaned.returncode == 0, cleaned.stderr
    assert "cache shared with" in cleaned.stdout and "deleting cache file" not in cleaned.stdout
    assert all(path.exists() for path in store)
    head = sorted((second / "tiny" / "models").glob("*.head.keras"))[0]
    assert load_model(head).card.backbone is not None
    shutil.rmtree(second / "tiny")  # once the other folder's runs are gone, their entries are free to go
    cleaned = runner(["clean", "--out", str(first), "--cache-dir", str(cache), "--apply"])
    assert cleaned.returncode == 0 and "deleting cache file" in cleaned.stdout
    assert not any(path.exists() for path in store if "backbones" in path.parts)


def test_clean_refuses_a_folder_helmet_reports_did_not_write(tmp_path):
    site = tmp_path / "site"
    (site / ".tmp-build").mkdir(parents=True)
    (site / "index.html").write_text("<h1>my web site</h1>")
    result = runner(["clean", "--out", str(site), "--apply"])
    assert result.returncode == 2 and "not a helmet-reports output folder" in result.stderr
    assert (site / ".tmp-build").is_dir() and (site / "index.html").read_text() == "<h1>my web site</h1>"


def test_keep_counts_finished_runs_and_keeps_newer_failures(nightly, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)
    failed = out / "broken.failed"  # a failed run, newer than both finished ones
    shutil.copytree(out / "night2", failed, symlinks=True)
    record = json.loads((failed / "run.json").read_text())
    record.update(run_id="broken", status="failed", started="2099-01-01T00:00:00+00:00")
    (failed / "run.json").write_text(json.dumps(record))
    two = runner(["clean", "--out", str(out), "--keep", "2"])
    assert two.returncode == 0 and "would delete run" not in two.stdout  # two ok runs kept, the newer failure too
    one = runner(["clean", "--out", str(out), "--keep", "1"])
    assert "would delete run tiny" in one.stdout and "broken" not in one.stdout.split("keeping")[0]


def test_a_deletion_that_fails_is_reported_not_counted(nightly, tmp_path, monkeypatch, capsys):
    from helmetlib.runner import retention

    out = tmp_path / "out"
    shutil.copytree(nightly[0], out, symlinks=True)

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    cache_files = {path: path.stat().st_size for path in (out / ".cache").rglob("*") if path.is_file()}
    monkeypatch.setattr(retention.shutil, "rmtree", refuse)
    assert retention.main(["--out", str(out), "--keep", "0", "--apply"]) == 1
    captured = capsys.readouterr()
    assert f"could not delete {out / 'tiny'}: Permission denied" in captured.err and (out / "tiny").is_dir()
    gone = sum(size for path, size in cache_files.items() if not path.exists()) / 2**20
    assert gone > 0 and f"freed {gone:.1f} MB" in captured.out  # the cache files went; the run did not count


def test_a_reused_process_id_is_not_a_run_in_progress(nightly):
    me = psutil.Process()
    finished = RunRecord.read(nightly[0] / "night2" / "run.json")
    assert finished.pid is None and finished.pid_started is None and not finished.in_progress
    running = replace(finished, status="running", pid=me.pid)
    assert running.in_progress  # no start time recorded (older runs): the id alone
    assert replace(running, pid_started=me.create_time()).in_progress
    assert not replace(running, pid_started=me.create_time() - 3600).in_progress  # the id, reused since


def test_a_moved_reports_folder_finds_its_backbones_in_its_own_cache(nightly, tmp_path):
    """Cards record the store path of the run's cache; a reports folder moved (or copied) with its `.cache` loads
    its heads from there once the original store is gone."""
    from helmetlib.deploy.cards import ModelError
    from helmetlib.deploy.predict import load_model

    moved = tmp_path / "moved"
    shutil.copytree(nightly[0], moved, symlinks=True)
    head = sorted((moved / "tiny" / "models").glob("*.head.keras"))[0]
    card_file = head.with_name(head.name.replace(".head.keras", ".card.json"))
    card = json.loads(card_file.read_text())
    name = Path(card["backbone"]["weights_file"]).name
    card["backbone"]["weights_file"] = f"/gone/cache/backbones/{name}"  # the original store, deleted
    ModelCard.from_json(card).write(card_file)
    assert load_model(head).card.name == card["name"]
    (moved / ".cache" / "backbones" / name).unlink()
    with pytest.raises(ModelError, match="the backbone store has no VGG16 weights"):
        load_model(head)

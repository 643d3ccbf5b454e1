"""The notebook engine's kernels: started one stage ahead with the library imported (TensorFlow only where the stage
uses it), in a namespace as fresh as a plain kernel's, labelled with their stage, and never left running; a
notebook's pages written while the next one runs; the runner's own imports skip jsonschema's grammar compilation."""

import argparse
import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import time
from datetime import datetime

import nbformat
import psutil
import pytest
from conftest import NOTEBOOKS

from helmetlib.core.progress import Progress
from helmetlib.run.config import RunConfig
from helmetlib.run.folder import RunFolder
from helmetlib.runner import engine, study
from helmetlib.runner.engine import (
    BACKEND_MODULE,
    PRELOADED_MODULES,
    Stage,
    execute_notebook,
    kernels_started_ahead,
    plan_stages,
    start_kernel,
    stop_kernel,
)

PROBE = """# %%
import json
import os
import sys

print(json.dumps({
    "preloaded": [name for name in PRELOADED_MODULES if name in sys.modules],
    "names": sorted(name for name in globals() if not name.startswith("_")),
    "stage": os.environ.get("HELMETLIB_STAGE"),
    "cwd": os.getcwd(),
}))
"""


def probe_stage(tmp_path, label: str) -> Stage:
    source = tmp_path / "probe.py"
    source.write_text(PROBE.replace("PRELOADED_MODULES", repr(PRELOADED_MODULES)))
    return Stage(label, source, "probe", {})


def kernels() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(child.cmdline())]


def test_a_kernel_started_ahead_has_the_library_imported_and_a_fresh_namespace(tmp_path, helmetlib_kernel):
    work = RunFolder(tmp_path / "run")
    work.path.mkdir()
    stage = probe_stage(tmp_path, "notebook probe")
    manager = start_kernel(stage, work, kernel=helmetlib_kernel)
    execute_notebook(stage, work, kernel=helmetlib_kernel, timeout=120, manager=manager)

    [cell] = nbformat.read(work.notebook("probe"), as_version=4).cells
    seen = json.loads(cell.outputs[0]["text"])
    assert seen["preloaded"] == list(PRELOADED_MODULES)
    assert "helmetlib" not in seen["names"] and "tensorflow" not in seen["names"]  # imported, bound to no name
    assert cell.execution_count == 1  # the preload counts no execution: notebooks diff as from a plain kernel
    assert seen["stage"] == "notebook probe" and seen["cwd"] == str(work.path)
    assert not manager.has_kernel and kernels() == []


def test_the_next_kernel_starts_before_this_stage_runs_and_an_unreached_one_is_stopped(tmp_path, helmetlib_kernel):
    work = RunFolder(tmp_path / "run")
    work.path.mkdir()
    stages = [probe_stage(tmp_path, f"notebook {name}") for name in ("a", "b", "c")]
    started = kernels_started_ahead(stages, work, kernel=helmetlib_kernel)

    stage, manager = next(started)
    assert stage is stages[0] and len(kernels()) == 2  # a's kernel and b's, launched before a runs
    stop_kernel(manager)
    stage, manager = next(started)
    assert stage is stages[1] and len(kernels()) == 2  # b's (started ahead) and c's
    stop_kernel(manager)
    started.close()  # the loop leaves before c: its kernel must not outlive the run
    assert kernels() == []


def test_only_an_eda_that_uses_the_backbone_or_trains_a_reference_model_preloads_tensorflow(tmp_path):
    work = RunFolder(tmp_path / "run")
    groups = tmp_path / "groups.csv"

    def preloads(**parameters) -> list[tuple[str, ...]]:
        config = RunConfig.from_parameters(run_id="x", origin="notebook", **parameters)
        return [stage.preload for stage in plan_stages(config, work, NOTEBOOKS)]

    eda, model, comparison = preloads(MODELS="cnn", WEIGHTS="none")  # no backbone, no groups: no TensorFlow
    assert BACKEND_MODULE not in eda and set(eda) == set(PRELOADED_MODULES) - {BACKEND_MODULE}
    assert model == comparison == PRELOADED_MODULES
    groups.write_text("path\n" + "a.png\n" * 160)
    assert preloads(MODELS="cnn", WEIGHTS="none", GROUPS_CSV=str(groups))[0] == PRELOADED_MODULES  # reference model
    assert preloads(MODELS="cnn,vgg16_linear", WEIGHTS="none")[0] == PRELOADED_MODULES  # look-alike features


def test_the_runner_imports_papermill_without_compiling_rfc3987_grammars():
    """jsonschema imports `rfc3987_syntax` when installed, which compiles 39 grammars with lark (about 3 s of every
    runner process and Dask task): the engine marks it absent before papermill, jupytext and nbconvert load."""
    code = "import helmetlib.runner.engine, jupytext, nbconvert, papermill, sys; print('lark' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
    assert importlib.util.find_spec("rfc3987_syntax") is not None  # installed here: jsonschema would import it


def test_a_notebooks_pages_are_written_while_the_next_one_runs_and_one_not_written_fails_the_run(
    tmp_path, helmetlib_kernel, monkeypatch
):
    """The runner hands a finished notebook's HTML pages to a thread and runs the next notebook meanwhile; every
    page is written when `_execute` returns, and a page that cannot be written raises there (the run fails)."""
    work = RunFolder(tmp_path / "run")
    work.path.mkdir()
    source = probe_stage(tmp_path, "probe").source
    stages = [Stage(f"notebook {stem}", source, stem, {}) for stem in ("a", "b")]
    args = argparse.Namespace(timeout=120, workers=1, scheduler=None)
    written_at, real_to_html = {}, engine.to_html

    def slow_to_html(work, stem, **options):
        time.sleep(2)
        real_to_html(work, stem, **options)
        written_at[stem] = time.time()

    monkeypatch.setattr(engine, "to_html", slow_to_html)
    with contextlib.redirect_stdout(io.StringIO()):
        assert study._execute(args, stages, work, Progress(2, {}), helmetlib_kernel) == []
    b_started = nbformat.read(work.notebook("b"), as_version=4).metadata.papermill.start_time
    assert datetime.fromisoformat(b_started).timestamp() < written_at["a"]  # b ran while a's pages were written
    assert all(page.is_file() for stem in ("a", "b") for page in (work.html(stem), work.code_html(stem)))

    def full_disk(work, stem, **options):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine, "to_html", full_disk)
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(OSError, match="No space left"):
        study._execute(args, stages, work, Progress(2, {}), helmetlib_kernel)
    assert kernels() == []

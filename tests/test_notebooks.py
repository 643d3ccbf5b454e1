"""The notebooks: paired and output-free, typed parameters that papermill can describe and the first cell checks,
and runs on their own under plain papermill (the `helmetlib` kernel they name) from the notebooks folder."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import NOTEBOOKS, REPO

from helmetlib.core.settings import PARAMETER_TYPES
from helmetlib.evaluation.selection import SELECTION_RULE
from helmetlib.reports.notebook import start
from helmetlib.run.config import ParameterError
from helmetlib.run.folder import RunFolder
from helmetlib.runner.kernel import KERNEL_NAME

SOURCES = sorted(NOTEBOOKS.glob("*.py"))
NOISE = ("Warning", "warn(", "absl", "I0000", "E0000", "W0000", "cuInit", "XNNPACK", "IPKernelApp")


def test_notebooks_are_found():
    assert [path.stem for path in SOURCES] == ["00_eda", "10_model", "20_comparison"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_pair_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired} missing: run `jupytext --sync {source}`"
    text, ipynb = jupytext.read(source), nbformat.read(paired, as_version=4)
    cells = [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in text.cells]
    assert cells == [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in ipynb.cells], (
        f"{paired} is out of sync with {source}: run `jupytext --sync {source}`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_committed_ipynb_is_output_free(source):
    notebook = json.loads(source.with_suffix(".ipynb").read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert notebook["metadata"]["kernelspec"]["name"] == KERNEL_NAME


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_parameters_cell_first_typed_and_documented(source):
    from papermill.translators import PythonTranslator

    cells = [cell for cell in jupytext.read(source).cells if cell.cell_type == "code"]
    assert "parameters" in cells[0].metadata.get("tags", [])
    assert all("parameters" not in cell.metadata.get("tags", []) for cell in cells[1:])
    parameters = PythonTranslator.inspect(cells[0])
    assert parameters, "papermill finds no parameter"
    for parameter in parameters:
        assert parameter.inferred_type_name == PARAMETER_TYPES[parameter.name].__name__, parameter.name
        assert len(parameter.help.split()) >= 3, f"{parameter.name} has no help text"
    assert "start(globals())" in cells[1].source  # the first code cell checks the parameters
    assert "def " not in "".join(cell.source for cell in cells), "helpers belong in helmetlib, not in notebooks"


def parameters_cell(source: Path) -> dict[str, tuple[str, object]]:
    """A notebook's parameters cell as {name: (annotated type, literal value)}."""
    import ast

    cell = next(cell for cell in jupytext.read(source).cells if cell.cell_type == "code")
    return {node.target.id: (node.annotation.id, ast.literal_eval(node.value)) for node in ast.parse(cell.source).body}


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_parameters_cells_write_the_settings_tables_types_and_defaults(source):
    from helmetlib.core.settings import BY_NAME, NOTEBOOK_ONLY

    cell = parameters_cell(source)
    assert set(cell) - set(NOTEBOOK_ONLY) and set(cell) <= set(BY_NAME) | set(NOTEBOOK_ONLY)
    for name, (kind, value) in cell.items():
        if name not in NOTEBOOK_ONLY:
            setting = BY_NAME[name]
            assert (kind, value) == (setting.kind.__name__, setting.default), f"{source.name}: {name} differs"


def test_a_parameters_literal_that_differs_from_the_table_is_caught(tmp_path):
    changed = tmp_path / "changed.py"
    changed.write_text(SOURCES[1].read_text().replace("EPOCHS: int = 20", "EPOCHS: int = 12"))
    with pytest.raises(AssertionError, match="EPOCHS differs"):
        test_parameters_cells_write_the_settings_tables_types_and_defaults(changed)


def test_the_runners_options_and_the_options_page_come_from_the_settings_table():
    from helmetlib.commands.reports import parse_args
    from helmetlib.core.settings import SETTINGS, markdown_table, parameters_from

    given = parameters_from(parse_args([]))
    assert given == {s.name: s.default if s.option_default is None else s.option_default for s in SETTINGS}
    assert parameters_from(parse_args(["--no-export", "--epochs", "3"])) == {
        **given,
        "EXPORT_TFLITE": False,
        "EPOCHS": 3,
    }
    assert (REPO / "docs" / "options.md").read_text() == markdown_table(), "run: python -m helmetlib.core.settings"


def test_papermill_help_lists_a_type_and_help_for_every_parameter():
    result = subprocess.run(
        [Path(sys.executable).parent / "papermill", "--help-notebook", str(NOTEBOOKS / "10_model.ipynb")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    listed = [
        line.split(":")[0].strip()
        for line in result.stdout.splitlines()
        if line.startswith("  ") and ": " in line and "(default" in line
    ]
    assert listed and "Unknown type" not in result.stdout
    for name in listed:
        assert f"  {name}: {PARAMETER_TYPES[name].__name__} (default" in result.stdout, name


def test_jupytext_finds_its_configuration_beside_the_notebooks():
    from jupytext.config import find_jupytext_configuration_file

    assert Path(find_jupytext_configuration_file(str(NOTEBOOKS))) == NOTEBOOKS / "jupytext.toml"


def test_parameters_are_checked_and_coerced(tmp_path):
    base = {"RUN_DIR": str(tmp_path / "run"), "WEIGHTS": "none", "DEMO_SIZE": 40, "CACHE_DIR": str(tmp_path)}
    run = start({**base, "FAITHFUL": "false", "EPOCHS": "3", "MODEL_NAME": "cnn", "unrelated": 1})
    assert run.config.faithful is False and run.config.epochs == 3 and run.model_name == "cnn"
    assert run.config.batch_size == 16 and run.config.repeats == 1  # the demo's defaults, as helmet-reports picks
    assert RunFolder(tmp_path / "run").read_config() == run.config  # written for the notebooks that follow
    for bad, message in [
        ({"FAITHFUL": "maybe"}, "FAITHFUL must be true or false, got 'maybe'"),
        ({"THRESHOLD": 1.5}, "THRESHOLD must be a number strictly between 0 and 1"),
        ({"EPOCHS": -1}, "EPOCHS must be at least 1"),
        ({"MODEL_NAME": "resnet"}, "MODEL_NAME 'resnet' is not a model"),
        ({"MODELS": "cnn,resnet"}, "unknown model 'resnet' in MODELS"),
    ]:
        with pytest.raises(ParameterError, match=message):
            start({**base, **bad})


def test_relative_paths_resolve_against_the_repository(tmp_path, monkeypatch):
    """A kernel's working directory is the notebook's folder: relative paths resolve against the repository above
    it (here a stand-in clone, so that the checkout's own reports/ stays untouched)."""
    clone = tmp_path / "clone"
    (clone / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "00_eda.py", clone / "notebooks")
    monkeypatch.chdir(clone / "notebooks")
    run = start({"RUN_DIR": "reports/relative", "WEIGHTS": "none", "CACHE_DIR": str(tmp_path)})
    assert run.folder.path == clone / "reports" / "relative" and (run.folder.path / "config.json").is_file()
    assert not (REPO / "reports" / "relative").exists()


def test_a_helmet_reports_config_wins_and_disagreeing_parameters_are_refused(finished_run):
    run_dir = finished_run[1] / "tiny"
    config = RunFolder(run_dir).read_config()
    assert start({"RUN_DIR": str(run_dir), **config.parameters()}).config == config
    with pytest.raises(ParameterError, match=r"EPOCHS=7 \(config.json: 15\)"):
        start({"RUN_DIR": str(run_dir), "EPOCHS": 7})


def papermill(notebook: str, output: Path, parameters: dict, cwd: Path) -> subprocess.CompletedProcess:
    arguments = [str(Path(sys.executable).parent / "papermill"), notebook, str(output), "--no-progress-bar"]
    for name, value in parameters.items():
        arguments += ["-p", name, str(value)]
    return subprocess.run(arguments, cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, helmetlib_kernel):
    """Plain papermill from the notebooks folder with the kernel the notebooks name (installed by `helmetlib_kernel`): a
    model notebook with FAITHFUL given as the string "false", then the comparison of two models of which only one
    has run."""
    root = tmp_path_factory.mktemp("standalone")
    common = {
        "RUN_DIR": str(root / "run"),
        "CACHE_DIR": str(root / "cache"),
        "WEIGHTS": "none",
        "DEMO_SIZE": 40,
        "IMAGE_SIZE": 48,
    }
    model = papermill(
        "10_model.ipynb",
        root / "model.ipynb",
        {**common, "MODEL_NAME": "vgg16_linear", "FAITHFUL": "false", "EPOCHS": 1},
        NOTEBOOKS,
    )
    comparison = papermill(
        "20_comparison.ipynb",
        root / "comparison.ipynb",
        {**common, "MODELS": "cnn,vgg16_linear", "BOOTSTRAP_RESAMPLES": 200, "EXPORT_TFLITE": "False"},
        NOTEBOOKS,
    )
    return root, model, comparison


def outputs_text(notebook: Path) -> str:
    node = nbformat.read(notebook, as_version=4)
    return json.dumps([cell.get("outputs", []) for cell in node.cells])


def test_papermill_runs_the_model_notebook_in_fast_mode_with_a_string_bool(standalone):
    root, model, _ = standalone
    assert model.returncode == 0, model.stderr[-3000:]
    result = RunFolder(root / "run").results(["vgg16_linear"])["vgg16_linear"]
    assert result.mode == "fast" and result.epochs_run == 1
    text = outputs_text(root / "model.ipynb")
    assert not [noise for noise in NOISE if noise in text], [noise for noise in NOISE if noise in text]


def test_plain_papermill_prints_no_kernel_or_library_chatter(standalone):
    """The kernel runs over local sockets (no "Kernel is running over TCP without encryption" from ipykernel),
    and nothing of TensorFlow's or Python's warnings reaches the terminal: only papermill's own lines."""
    _, model, comparison = standalone
    for result in (model, comparison):
        assert not [noise for noise in NOISE if noise in result.stderr], result.stderr[-2000:]
        assert "without encryption" not in result.stderr
        assert "Executing notebook with kernel: helmetlib" in result.stderr


def test_the_comparison_compares_what_exists_and_says_what_is_missing(standalone):
    root, _, comparison = standalone
    assert comparison.returncode == 0, comparison.stderr[-3000:]
    selection = RunFolder(root / "run").read_selection()
    assert selection.missing == ("cnn",) and selection.candidates == ("vgg16_linear",)
    assert selection.rule == SELECTION_RULE
    text = outputs_text(root / "comparison.ipynb")
    assert "Not compared (no results in this run folder): cnn." in text
    assert "<h2>Decision</h2>" in text
    assert not [noise for noise in NOISE if noise in text], [noise for noise in NOISE if noise in text]


def test_pre_commit_syncs_a_notebook_edit_into_its_pair_and_strips_outputs(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(NOTEBOOKS, repo / "notebooks")
    for name in (".pre-commit-config.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, repo / name)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PRE_COMMIT_HOME": str(tmp_path / "cache")}

    def git(*arguments):
        return subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, env=env, check=True)

    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "start")
    paired = nbformat.read(repo / "notebooks" / "10_model.ipynb", as_version=4)
    paired.cells[2].outputs = [nbformat.v4.new_output("stream", text="leftover output")]  # an executed copy saved
    nbformat.write(paired, repo / "notebooks" / "10_model.ipynb")
    time.sleep(0.05)
    source = repo / "notebooks" / "10_model.py"  # then the reviewed source edited: jupytext syncs from the newer
    source.write_text(source.read_text().replace("## How it was trained", "## How this model was trained"))
    hook = [str(Path(bin_dir) / "pre-commit"), "run", "--files", "notebooks/10_model.py", "notebooks/10_model.ipynb"]
    first = subprocess.run(hook, cwd=repo, capture_output=True, text=True, env=env)
    assert first.returncode == 1, first.stdout  # files were fixed
    second = subprocess.run(hook, cwd=repo, capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stdout
    synced = nbformat.read(repo / "notebooks" / "10_model.ipynb", as_version=4)
    assert any("How this model was trained" in cell.source for cell in synced.cells)
    assert all(not cell.get("outputs") for cell in synced.cells)
    diff = git("diff", "--", "notebooks/10_model.py").stdout
    assert diff.count("@@ -") == 1  # the one-line change is one hunk in the reviewed source


def test_a_bad_parameter_under_plain_papermill_is_one_line_in_the_notebook(tmp_path, helmetlib_kernel):
    parameters = {"RUN_DIR": str(tmp_path / "run"), "DEMO_SIZE": 3}
    result = papermill("00_eda.ipynb", tmp_path / "eda.ipynb", parameters, NOTEBOOKS)
    assert result.returncode == 1
    errors = [
        output
        for cell in nbformat.read(tmp_path / "eda.ipynb", as_version=4).cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert [error.traceback for error in errors] == [["ParameterError: DEMO_SIZE must be at least 20, got 3"]]
    assert result.stderr.rstrip().endswith("ParameterError: DEMO_SIZE must be at least 20, got 3")
    assert "helmetlib/reports/notebook.py" not in result.stderr  # no traceback through the library


def test_relative_paths_resolve_in_the_clone_the_notebook_runs_in(tmp_path):
    from helmetlib.run.config import project_root

    clone = tmp_path / "second-clone"
    (clone / "notebooks").mkdir(parents=True)
    (clone / "notebooks" / "00_eda.py").write_text("# a notebook\n")
    assert project_root(clone / "notebooks") == clone.resolve()  # papermill or JupyterLab in the notebooks folder
    assert project_root(clone) == clone.resolve()
    assert project_root(tmp_path) == REPO  # elsewhere: the checkout helmetlib was installed from

"""The notebook engine under `helmet-reports`: which notebooks a run executes (`plan_stages`), the kernel they run
in (the `helmetlib` kernel, its output to the run's log, started ahead of its turn: `start_kernel`,
`kernels_started_ahead`), executing one with papermill into the run folder (`execute_notebook`, every failure a
`NotebookFailed` with a one-line reason) and its two HTML pages (`to_html`).

The runner (`reports`) and the Dask fan-out (`fanout`) both stand on it; it imports neither.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from helmetlib.core.env import STAGE_ENV
from helmetlib.run.config import COMPARISON, EDA, MODEL, ParameterError, RunConfig
from helmetlib.run.folder import RunFolder

# jsonschema, under nbformat (papermill, jupytext, nbconvert), imports the optional `rfc3987_syntax` when it is
# installed (JupyterLab's jupyter-events brings it), and that compiles 39 grammars at import: about 3 s of every
# runner process and Dask task, before the first kernel starts, for the `iri` format checks that no notebook schema
# uses (python-jsonschema/jsonschema#1392). Marked absent, it is not imported and jsonschema skips those checks.
sys.modules.setdefault("rfc3987_syntax", None)

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL_START_TIMEOUT = 300  # seconds; a loaded machine (Dask workers, other jobs) can take minutes to start one
BACKEND_MODULE = "helmetlib.core.backend"  # TensorFlow and Keras: ~3 s of a kernel's start on 2 cores
PRELOADED_MODULES = (  # what the notebooks' first cells import: ~6 s
    "IPython.display",
    BACKEND_MODULE,
    "helmetlib.reports.narrative",
    "helmetlib.reports.notebook",
    "helmetlib.reports.pages",
    "helmetlib.reports.pipeline",
    "helmetlib.reports.plots",
)


class NotebookFailed(RuntimeError):
    """A notebook failed; the message is a one-line reason."""


def notebook_parameter_names(source: Path) -> list[str]:
    """The names in a notebook's parameters cell, as papermill reads them."""
    import jupytext
    from papermill.translators import PythonTranslator

    for cell in jupytext.read(source).cells:
        if "parameters" in cell.metadata.get("tags", []):
            return [parameter.name for parameter in PythonTranslator.inspect(cell)]
    raise ParameterError(f"{source}: no cell tagged 'parameters'")


def stale_pairing(source: Path) -> str | None:
    """A one-line problem when `source`'s paired `.ipynb` no longer holds the same cells, else None."""
    import jupytext
    import nbformat

    paired = source.with_suffix(".ipynb")
    if not paired.is_file():
        return None
    text, ipynb = jupytext.read(source), nbformat.read(paired, as_version=4)
    if [(c.cell_type, c.source) for c in text.cells] != [(c.cell_type, c.source) for c in ipynb.cells]:
        newer = paired if paired.stat().st_mtime > source.stat().st_mtime else source
        return (
            f"{paired} and {source.name} are out of sync ({newer.name} is newer): run "
            f"`jupytext --sync {source}` before running the reports"
        )
    return None


@dataclass(frozen=True)
class Stage:
    """One notebook run: its label for the log, its source, its output stem and its parameters."""

    label: str
    source: Path
    stem: str
    parameters: dict
    model: str | None = None
    preload: tuple[str, ...] = PRELOADED_MODULES  # what its kernel imports as it starts


def plan_stages(config: RunConfig, work: RunFolder, notebooks: Path) -> list[Stage]:
    """The notebooks of a run in order, each with the parameters its parameters cell declares."""
    values = config.parameters() | {"RUN_DIR": str(work.path)}

    def parameters(stem: str, **extra) -> dict:
        names = notebook_parameter_names(notebooks / f"{stem}.py")
        return {name: ({**values, **extra})[name] for name in names}

    # an EDA that computes no backbone features and trains no reference model (no groups) never uses TensorFlow
    eda_uses_backend = config.weights.used != "unused" or bool(config.groups_csv)
    eda_preload = tuple(name for name in PRELOADED_MODULES if eda_uses_backend or name != BACKEND_MODULE)
    stages = [Stage(f"notebook {EDA}", notebooks / f"{EDA}.py", EDA, parameters(EDA), preload=eda_preload)]
    for name in config.models:
        stages.append(
            Stage(
                f"notebook {MODEL} [{name}]",
                notebooks / f"{MODEL}.py",
                RunFolder.model_stem(name),
                parameters(MODEL, MODEL_NAME=name),
                model=name,
            )
        )
    stages.append(Stage(f"notebook {COMPARISON}", notebooks / f"{COMPARISON}.py", COMPARISON, parameters(COMPARISON)))
    return stages


def _logging_kernel_manager(log_file: Path):
    """nbclient's kernel manager with the kernel process's own output (its start-up and shut-down messages)
    written to `log_file` instead of the terminal, and the clients made for it remembered, to be closed with it."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggingKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.clients = []

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log = log_file.open("ab")
            try:
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})
            finally:
                log.close()  # the kernel keeps its own descriptor

        def client(self, **kwargs):
            made = super().client(**kwargs)
            self.clients.append(made)
            return made

    return LoggingKernelManager


def start_kernel(stage: Stage, work: RunFolder, *, kernel: str):
    """Launch the kernel that will run `stage` and return its manager without waiting for it to be ready.

    The kernel runs in the run folder, labels its timings with the stage (`HELMETLIB_STAGE`) and imports the
    stage's `preload` while it starts (bound to no name: the notebook's namespace and execution counts are as
    in a fresh kernel), so a kernel launched while the previous stage runs is ready, imports done, at its turn."""
    from jupyter_core.utils import run_sync

    manager = _logging_kernel_manager(work.log_file)(kernel_name=kernel)
    preload = [f"--IPKernelApp.exec_lines=__import__({name!r});" for name in stage.preload]
    run_sync(manager.start_kernel)(
        cwd=str(work.path), env={**os.environ, STAGE_ENV: stage.label}, extra_arguments=preload
    )
    return manager


def stop_kernel(manager) -> None:
    """Close the clients of `manager` and end its kernel at once (nbclient's "immediate" shutdown): the notebook
    has finished and every output is saved, and a graceful shutdown waits about 1.5 s per notebook."""
    from jupyter_core.utils import run_sync

    for client in manager.clients:
        client.stop_channels()
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)


def kernels_started_ahead(stages: list[Stage], work: RunFolder, *, kernel: str) -> Iterator[tuple[Stage, object]]:
    """Each stage with its kernel's manager, the next stage's kernel launched before this one is handed out: it
    starts and imports the library while this stage runs (about 8 s a notebook on 2 cores, off the critical path).
    A kernel started for a stage never reached (the loop left early) is shut down when the iterator is closed."""
    upcoming = None
    try:
        for index, stage in enumerate(stages):
            current = upcoming or start_kernel(stage, work, kernel=kernel)
            upcoming = None
            if index + 1 < len(stages):
                upcoming = start_kernel(stages[index + 1], work, kernel=kernel)
            yield stage, current
    finally:
        if upcoming is not None:
            stop_kernel(upcoming)


def execute_notebook(
    stage: Stage, work: RunFolder, *, kernel: str, timeout: int, manager=None, write_pages: Callable | None = None
) -> None:
    """Execute a jupytext `.py` notebook with papermill into the run folder, in the kernel of `manager` (one
    `start_kernel` launched; by default one launched now), then shut the kernel down and write the two HTML pages
    (`notebook_pages`), here or through `write_pages(notebook_pages, work, stage)` (e.g. a thread's `submit`: the
    runner writes a notebook's pages while the next one runs, 0.3-1 s each on 2 cores).

    Raises `NotebookFailed` with a one-line reason for a raising cell, a cell past `timeout`, a dead kernel or
    any other failure of the execution.
    """
    output = work.notebook(stage.stem)
    try:
        manager = manager or start_kernel(stage, work, kernel=kernel)  # it boots while papermill is imported
    except Exception as error:
        raise NotebookFailed(f"{stage.stem}: the kernel did not start ({type(error).__name__}: {error})") from None
    import jupytext
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        source = jupytext.read(stage.source)
        source.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        papermill.execute_notebook(
            source,
            str(output),
            parameters=stage.parameters,
            kernel_name=kernel,
            cwd=str(work.path),
            progress_bar=False,
            execution_timeout=timeout,
            start_timeout=KERNEL_START_TIMEOUT,
            km=manager,
        )
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"{stage.stem}: {error.ename}: {error.evalue}".splitlines()[0]) from None
    except CellTimeoutError:
        raise NotebookFailed(f"{stage.stem}: a cell ran longer than --timeout {timeout}s and was stopped") from None
    except DeadKernelError as error:
        raise NotebookFailed(f"{stage.stem}: the kernel died ({str(error).splitlines()[0]})") from None
    except Exception as error:  # anything else the execution raises ends this notebook, never the run
        raise NotebookFailed(
            f"{stage.stem}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    finally:
        stop_kernel(manager)
        if output.exists() and write_pages:
            write_pages(notebook_pages, work, stage)
        elif output.exists():
            notebook_pages(work, stage)


def notebook_pages(work: RunFolder, stage: Stage) -> None:
    """The two HTML pages of `stage`'s executed notebook (`to_html`), headed by its model for a model notebook."""
    shows = f"{stage.model} — helmet study model report" if stage.model else _heading(work.notebook(stage.stem))
    to_html(work, stage.stem, title=f"{shows} · run {work.path.name.removeprefix('.tmp-')}", heading=shows)


def _heading(notebook: Path) -> str:
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return notebook.stem


REPORT_LINKS = (  # at the top of every report page: back to the run page, on to the run's model files
    "<nav style='font:13px sans-serif;padding:6px 12px'><a href='index.html'>&larr; run page</a> &middot; "
    "<a href='models/'>model files and cards</a></nav>"
)


def to_html(work: RunFolder, stem: str, *, title: str, heading: str | None = None) -> None:
    """The executed notebook `stem` of `work` as two pages, `html` without code cells for readers and `code_html`
    with them, titled `title`, the first heading replaced by `heading` (the one model notebook names its model)."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(work.notebook(stem), as_version=4)
    first = next((cell for cell in node.cells if cell.cell_type == "markdown" and cell.source.startswith("# ")), None)
    if heading and first is not None:
        first.source = "\n".join([f"# {heading}", *first.source.splitlines()[1:]])
    for page, exclude in ((work.html(stem), True), (work.code_html(stem), False)):
        exporter = HTMLExporter(exclude_input=exclude, exclude_input_prompt=exclude, exclude_output_prompt=exclude)
        body, _ = exporter.from_notebook_node(node, resources={"metadata": {"name": title}})
        body = re.sub(r"(<body[^>]*>)", lambda match: match.group(1) + REPORT_LINKS, body, count=1)
        page.write_text(body, encoding="utf-8")

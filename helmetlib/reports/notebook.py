"""What a notebook does before its story starts: check its parameters, keep log lines and warnings out of the
report, show figures with their descriptions (photo grids as JPEG), and find (or, run on its own, write) the
run's settings in `RUN_DIR/config.json`.

The same notebooks run under `helmet-reports` (which writes `config.json` first and passes the parameters it
holds), under plain papermill and in JupyterLab (no `config.json` yet: the parameters cell is the config).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helmetlib.core.settings import PARAMETER_TYPES
from helmetlib.core.specs import MODEL_NAMES
from helmetlib.core.timings import profile_cells
from helmetlib.data.dataset import Dataset, load_run_data
from helmetlib.data.splits import Split
from helmetlib.reports.plots import show_figures_described
from helmetlib.run.config import RUN_ID_PATTERN, ParameterError, RunConfig, coerce_parameter, project_root, resolve_path
from helmetlib.run.folder import RunFolder
from helmetlib.run.split import run_split

INTERACTIVE_RUN_ID = "interactive"


@dataclass(frozen=True)
class NotebookRun:
    """A notebook's run: its settings, its folder and (model notebook) the model it trains."""

    config: RunConfig
    folder: RunFolder
    model_name: str | None = None

    def dataset(self) -> Dataset:
        """The run's validated data (the synthetic demo set when `DATA_DIR` is empty), resized as configured."""
        config = self.config
        return load_run_data(config.data_dir, demo_size=config.demo_size, image_size=config.image_size)

    def split(self, dataset: Dataset, repeat: int = 0) -> Split:
        """The run's split (`run_split`): decided once, by `helmet-reports` before any kernel starts or by the first
        notebook run on its own, and recorded in `RUN_DIR/split.npz`, which every later notebook reads."""
        return run_split(self.config, dataset, folder=self.folder, repeat=repeat)


def start(namespace: dict[str, Any]) -> NotebookRun:
    """Check the parameters cell's values in `namespace` (the notebook's `globals()`), silence the noise, and
    return the run: settings from `RUN_DIR/config.json` when `helmet-reports` wrote it (the parameters must then
    agree with it), else from the parameters, written to `RUN_DIR/config.json` for the notebooks that follow.

    Relative paths resolve against the repository, not the working directory. Raises `ParameterError` with one
    line naming the parameter for a value that cannot be used.
    """
    profile_cells()
    parameter_errors_in_one_line()
    given = {name: namespace[name] for name in PARAMETER_TYPES if name in namespace}
    folder = RunFolder(
        resolve_path(coerce_parameter("RUN_DIR", given.pop("RUN_DIR", "reports/interactive")), project_root())
    )
    model_name = given.pop("MODEL_NAME", None)
    if model_name is not None and model_name not in MODEL_NAMES:
        raise ParameterError(f"MODEL_NAME {model_name!r} is not a model; choose one of {', '.join(MODEL_NAMES)}")
    folder.path.mkdir(parents=True, exist_ok=True)
    keep_noise_out_of_reports(folder.log_file)
    show_figures_described()
    pd.set_option("display.max_colwidth", None)  # tables of hashes and descriptions are shown whole, never cut
    config = _runner_config(folder, given)
    if config is None:
        run_id = folder.path.name if RUN_ID_PATTERN.fullmatch(folder.path.name) else INTERACTIVE_RUN_ID
        config = RunConfig.from_parameters(run_id=run_id, origin="notebook", **given)
        config.write(folder.config_file)
    config.weights.check_file()
    return NotebookRun(config=config, folder=folder, model_name=model_name)


def parameter_errors_in_one_line() -> None:
    """In a kernel, show a `ParameterError` as its one line ("ParameterError: DEMO_SIZE must be at least 20, got
    3"), not as a traceback through helmetlib: it is the notebook's parameters that are wrong, not its code. Under
    papermill the failed cell's error is that line."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return

    def one_line(shell, kind, value, traceback, tb_offset=None) -> list[str]:
        line = [f"{kind.__name__}: {value}"]
        shell._showtraceback(kind, value, line)  # what ipykernel sends as the error's traceback
        return line

    shell.set_custom_exc((ParameterError,), one_line)


def _runner_config(folder: RunFolder, given: dict[str, Any]) -> RunConfig | None:
    """The config `helmet-reports` wrote into `folder`, checked against the notebook's parameters, or None."""
    if not folder.config_file.is_file():
        return None
    config = folder.read_config()
    if config.origin != "helmet-reports":
        return None  # an earlier notebook run on its own: this notebook's parameters are the settings now
    expected = config.parameters()
    differing = [
        f"{name}={coerce_parameter(name, value)!r} (config.json: {expected[name]!r})"
        for name, value in given.items()
        if coerce_parameter(name, value) != expected[name]
    ]
    if differing:
        raise ParameterError(
            f"{folder.config_file} was written by helmet-reports and these parameters differ from it: "
            f"{'; '.join(differing)}. Use another RUN_DIR to change settings."
        )
    return config


def keep_noise_out_of_reports(log_file: Path) -> None:
    """Send Python warnings and library log records to `log_file` instead of the notebook's output.

    Warnings that matter to a reader (fallback weights, collapsed models, damaged caches) are shown by the
    notebooks as banners from the run's records; everything else is kept in the run's log, not lost.
    """
    logging.captureWarnings(True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("py.warnings", "tensorflow", "absl", "keras", "papermill", "matplotlib"):
        logger = logging.getLogger(name)
        for previous in logger.handlers:
            previous.close()
        logger.handlers = [handler]
        logger.propagate = False
    warnings.simplefilter("default")  # each distinct warning once, into the log

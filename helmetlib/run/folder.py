"""Where a run's files live (`RunFolder`, the only owner of their names; `ReportsFolder`, the runs side by side)
and its record (`RunRecord`: the config, the status and what it found, as `results` records).

Free of TensorFlow: the report runner, the pages and the clean-up read runs without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import computed_field

from helmetlib.core.records import Record, RecordError, record
from helmetlib.core.weights import WeightsChoice
from helmetlib.data.splits import SplitRecord
from helmetlib.evaluation.metrics import Scores
from helmetlib.evaluation.results import Audit, DataInfo, ModelResult, PreviousRunComparison, Selection
from helmetlib.run.config import CODE_PAGE_SUFFIX, FAILED_SUFFIX, MODEL, ParameterError, RunConfig, check_run_id


@record
class RunRecord(Record):
    """`run.json`: status, times, settings, data, results, selection and the comparison with the previous run."""

    run_id: str
    status: Literal["running", "ok", "nothing_deployed", "failed", "interrupted"]
    started: str
    config: RunConfig
    finished: str | None = None
    stage: str | None = None
    reason: str | None = None
    failures: tuple[str, ...] = ()
    pid: int | None = None
    pid_started: float | None = None
    data: DataInfo | None = None
    split: SplitRecord | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    host: dict[str, str | int | None] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float | None = None
    models: dict[str, ModelResult] = field(default_factory=dict)
    selection: Selection | None = None
    audit: Audit | None = None
    comparison_with_previous: PreviousRunComparison | None = None

    @property
    def in_progress(self) -> bool:
        """True while the process that writes this run (its id and start time as recorded) is alive."""
        return self.status == "running" and bool(self.pid) and process_alive(self.pid, self.pid_started)

    @computed_field
    @property
    def weights(self) -> WeightsChoice:
        """The backbone weights used (also under `config`), kept at the top level for readers of `run.json`."""
        return self.config.weights

    @computed_field
    @property
    def selected_model(self) -> str | None:
        return self.selection.selected_model if self.selection else None

    @computed_field
    @property
    def test(self) -> Scores | None:
        return self.selection.test if self.selection else None


# ------------------------------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run; no other module spells a run's file names."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config_file = property(lambda self: self.path / "config.json")
    split_file = property(lambda self: self.path / "split.npz")  # the split, decided once per run
    record_file = property(lambda self: self.path / "run.json")
    selection_file = property(lambda self: self.path / "selection.json")
    audit_file = property(lambda self: self.path / "audit.json")
    page = property(lambda self: self.path / "index.html")
    models_dir = property(lambda self: self.path / "models")
    log_file = property(lambda self: self.path / "run.log")
    progress_file = property(lambda self: self.path / "progress.log")

    def notebook(self, stem: str) -> Path:
        return self.path / f"{stem}.ipynb"

    def started(self, stem: str) -> bool:
        """Whether the notebook `stem` began to run here (papermill writes its output before the first cell)."""
        return self.notebook(stem).exists()

    def html(self, stem: str) -> Path:
        return self.path / f"{stem}.html"

    def code_html(self, stem: str) -> Path:
        """The page with the code cells, beside `html(stem)` without them."""
        return self.path / f"{stem}{CODE_PAGE_SUFFIX}"

    @staticmethod
    def model_stem(name: str) -> str:
        """The executed model notebook's file stem for model `name`."""
        return f"{MODEL}_{name}"

    def model_file(self, name: str) -> Path:
        """The self-contained image -> P(helmet) model (CNNs, and the selected model)."""
        return self.models_dir / f"{name}.keras"

    def head_file(self, name: str) -> Path:
        """The trainable head of a backbone model; its frozen backbone lives once in the backbone store."""
        return self.models_dir / f"{name}.head.keras"

    def loadable_file(self, name: str) -> Path:
        """The file a model is loaded from: its self-contained `.keras` when there is one, else its head."""
        return self.model_file(name) if self.model_file(name).is_file() else self.head_file(name)

    def card_file(self, name: str) -> Path:
        return self.models_dir / f"{name}.card.json"

    @staticmethod
    def card_files_under(folder: Path) -> list[Path]:
        """Every model card of the run folders under `folder` (a reports folder, or one run)."""
        return sorted(folder.rglob("models/*.card.json"))

    def result_file(self, name: str) -> Path:
        return self.models_dir / f"{name}.metrics.json"

    def history_file(self, name: str) -> Path:
        return self.models_dir / f"{name}.history.json"

    def probabilities_file(self, name: str) -> Path:
        return self.models_dir / f"{name}.probabilities.npz"

    def crop_check_file(self, name: str) -> Path:
        """The arrays of a deployed model's crop check (`crop_check.CropCheck.file`)."""
        return self.models_dir / f"{name}.crop_check.npz"

    def tflite_file(self, name: str, *, quantized: bool = False) -> Path:
        return self.models_dir / f"{name}{'.quant' if quantized else ''}.tflite"

    def evaluation_dir(self, data_hash: str) -> Path:
        return self.path / "evaluations" / data_hash

    def read_config(self) -> RunConfig:
        return RunConfig.read(self.config_file)

    def read_record(self) -> RunRecord:
        return RunRecord.read(self.record_file)

    def read_selection(self) -> Selection | None:
        return Selection.read(self.selection_file) if self.selection_file.is_file() else None

    def read_audit(self) -> Audit | None:
        return Audit.read(self.audit_file) if self.audit_file.is_file() else None

    def results(self, names: tuple[str, ...] | list[str]) -> dict[str, ModelResult]:
        """The saved results of those of `names` that have run, in the order given."""
        return {name: ModelResult.read(self.result_file(name)) for name in names if self.result_file(name).is_file()}

    def probabilities(self, name: str) -> dict[str, np.ndarray]:
        """The deployed model's saved P(helmet) by part (`train`, `validation`; and per-repeat `validation_<i>`)."""
        with np.load(self.probabilities_file(name)) as saved:
            return {part: saved[part] for part in saved.files}


@dataclass(frozen=True)
class ReportsFolder:
    """The `--out` folder: one folder per run, the latest pointer, the runs index, the lock and the caches."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).resolve())

    index_page = property(lambda self: self.path / "index.html")
    latest_link = property(lambda self: self.path / "latest")
    latest_file = property(lambda self: self.path / "latest.json")
    lock_file = property(lambda self: self.path / ".lock")
    default_cache = property(lambda self: self.path / ".cache")

    def run(self, run_id: str) -> RunFolder:
        return RunFolder(self.inside(self.path / check_run_id(run_id)))

    def work(self, run_id: str) -> RunFolder:
        return RunFolder(self.inside(self.path / f".tmp-{check_run_id(run_id)}"))

    def failed(self, run_id: str) -> RunFolder:
        return RunFolder(self.inside(self.path / f"{check_run_id(run_id)}{FAILED_SUFFIX}"))

    def inside(self, candidate: Path) -> Path:
        """`candidate` resolved, when it lies strictly inside this folder; `ParameterError` otherwise."""
        resolved = Path(os.path.realpath(candidate))
        if resolved == self.path or self.path not in resolved.parents:
            raise ParameterError(f"{candidate} would lie outside the output folder {self.path}")
        return resolved

    def lock(self, timeout: float = 60):
        """An exclusive lock on this folder's index and latest pointer (a `filelock.FileLock`)."""
        from filelock import FileLock

        return FileLock(str(self.lock_file), timeout=timeout)

    def latest_run_id(self) -> str | None:
        try:
            return read_latest(self.latest_file)
        except RecordError:
            return None

    def runs(self) -> list[tuple[RunFolder, RunRecord]]:
        """Every run with a readable `run.json`, each once (links such as `latest` are skipped), newest first.

        Runs still in progress (`.tmp-<id>`) are listed while their process is alive.
        """
        return self.scan()[0]

    def scan(self) -> tuple[list[tuple[RunFolder, RunRecord]], list[tuple[Path, str]]]:
        """One read of the folder: the runs (as `runs`) and the run folders whose `run.json` cannot be read
        (damaged, or written by something else) with the reason, skipped by everything that reads history and
        named in the runs index."""
        found, unreadable = [], []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if entry.is_symlink() or not entry.is_dir() or not (entry / "run.json").is_file():
                continue
            try:
                run = RunRecord.read(entry / "run.json")
            except RecordError as error:
                if not entry.name.startswith(".tmp-"):
                    unreadable.append((entry, str(error)))
                continue
            if entry.name.startswith(".tmp-") and not run.in_progress:
                continue
            found.append((RunFolder(entry), run))
        found.sort(key=lambda item: item[1].started, reverse=True)
        return found, unreadable


@record
class LatestPointer(Record):
    run_id: str
    path: str
    updated: str


def read_latest(path: Path) -> str:
    return LatestPointer.read(path).run_id


def process_alive(pid: int, started: float | None = None) -> bool:
    """True when a process with this id exists and, given its start time (`psutil`'s `create_time`), is that very
    process: a dead run's id reused by another process later is not the run."""
    import psutil

    try:
        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def process_start_time() -> float:
    """This process's start time, recorded with its id so that a reused id is not taken for it."""
    import psutil

    return psutil.Process().create_time()

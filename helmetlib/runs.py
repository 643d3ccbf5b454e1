"""A run: what it was asked to do (`RunConfig`, written once), where its files live (`RunFolder`,
`ReportsFolder`) and its record (`RunRecord`: the config, the status and what it found, as `results` records).

Everything here is free of TensorFlow: the report runner, the pages and the clean-up read runs without it.
Notebook parameters are the upper-case names of `PARAMETER_TYPES`; `RunConfig.from_parameters` turns them (from
the command line or a notebook's parameters cell) into one validated config, resolving every default that
depends on the data (batch size and repeats on the demo set) and the weights, once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import computed_field

from helmetlib import specs
from helmetlib.metrics import Scores
from helmetlib.records import Record, RecordError, record
from helmetlib.results import Audit, Comparison, DataInfo, ModelResult, Selection
from helmetlib.settings import NOTEBOOK_ONLY, PARAMETER_TYPES, default
from helmetlib.weights import WeightsChoice, resolve_weights

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
NOTEBOOKS = ("00_eda", "10_model", "20_comparison")
EDA, MODEL, COMPARISON = NOTEBOOKS
CODE_PAGE_SUFFIX = ".code.html"  # a notebook's page with its code cells (`RunFolder.code_html`)
THRESHOLD_RULES = ("fixed", "calibrated", "max_f1", "bare_head_recall")


class ParameterError(ValueError):
    """A run setting that cannot be used; the message is one line naming the parameter and the allowed values."""


RESERVED_RUN_IDS = ("index.html", "latest", "latest.json")  # what the runner writes beside the runs
COMPLETED = ("ok", "nothing_deployed")  # runs whose notebooks all ran: in their own folder, not `.failed`
NOTHING_DEPLOYED = (
    "every model collapsed to (nearly) one class, so there is no model to deploy; try more --epochs or --repeats, "
    "another --seed, or check the labels (Labels_proj.csv) and the class balance in the data report"
)
FAILED_SUFFIX = ".failed"


def check_run_id(run_id: str) -> str:
    """`run_id` when it is a safe folder name, else `ParameterError` (it must never reach outside `--out`, nor
    take the name of what the runner writes at the top of `--out`)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ParameterError(
            f"run id {run_id!r} is not allowed: use 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'"
        )
    if run_id in RESERVED_RUN_IDS or run_id.endswith(FAILED_SUFFIX):
        raise ParameterError(
            f"run id {run_id!r} is not allowed: {', '.join(RESERVED_RUN_IDS)} and names ending in {FAILED_SUFFIX!r} "
            "are the runner's own files in --out"
        )
    return run_id


def default_run_id() -> str:
    """UTC date-time plus a random suffix, so that two runs started in the same second never collide."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def project_root(start: Path | None = None) -> Path:
    """The repository the notebooks run in, where relative notebook paths resolve: the nearest folder at or above
    the working directory (a kernel's: the notebook's folder in JupyterLab, papermill's) that holds
    `notebooks/00_eda.py`; else the checkout helmetlib was installed from; else the working directory. A second
    clone with an editable install from the first writes into the second clone."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks" / "00_eda.py").is_file():
            return folder
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir() else here


def resolve_path(value: str | Path, base: Path) -> str:
    """An absolute path string: `value` as it is when absolute, else against `base`; "" stays "" (not given)."""
    if not str(value):
        return ""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "1", "on"), ("false", "no", "0", "off", "")


def coerce_parameter(name: str, value: Any) -> Any:
    """`value` as the parameter's type; strings from papermill's `-p` are parsed ("false" is False).

    `ParameterError` with one line naming the parameter when the value is not of that type.
    """
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ParameterError(f"unknown parameter {name}; known: {', '.join(PARAMETER_TYPES)}")
    text = str(value).strip().lower() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if text in TRUE_WORDS or text in FALSE_WORDS:
            return text in TRUE_WORDS
        raise ParameterError(f"{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if text is not None and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise ParameterError(f"{name} must be a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if text is not None and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(nan|inf)", text):
            return float(text)  # nan and inf parse here and are refused by the range checks, by name
        raise ParameterError(f"{name} must be a number, got {value!r}")
    return "" if value is None else str(value)


@record
class RunConfig(Record):
    """Everything a run was asked to do, resolved once (data path, defaults, weights with their fingerprint).

    The runner writes it to `config.json` in the run folder; notebooks read it from there.
    """

    run_id: str
    weights: WeightsChoice
    cache_dir: str
    data_dir: str = default("DATA_DIR")
    demo_size: int = default("DEMO_SIZE")
    image_size: int = default("IMAGE_SIZE")
    split: Literal["random", "grouped"] = default("SPLIT")
    split_seed: int = default("SPLIT_SEED")
    groups_csv: str = default("GROUPS_CSV")
    group_column: str = default("GROUP_COLUMN")
    models: tuple[str, ...] = specs.MODEL_NAMES
    epochs: int = default("EPOCHS")
    batch_size: int = specs.BATCH_SIZE
    seed: int = default("SEED")
    repeats: int = 1
    resplit: bool = default("RESPLIT")
    max_restarts: int = default("MAX_RESTARTS")
    threshold: float = default("THRESHOLD")
    threshold_rule: Literal["fixed", "calibrated", "max_f1", "bare_head_recall"] = specs.FAST_THRESHOLD_RULE
    target_bare_head_recall: float = default("TARGET_BARE_HEAD_RECALL")
    faithful: bool = default("FAITHFUL")
    augmented_views: int = default("AUGMENTED_VIEWS")
    export_tflite: bool = default("EXPORT_TFLITE")
    cross_ensemble: Literal["preferred", "unless-worse", "off"] = default("CROSS_ENSEMBLE")
    bootstrap_resamples: int = default("BOOTSTRAP_RESAMPLES")
    origin: Literal["helmet-reports", "notebook"] = "notebook"

    def __post_init__(self):
        check_run_id(self.run_id)
        if not self.models:
            raise ParameterError("MODELS is empty: name at least one model")
        for name in self.models:
            if name not in specs.MODEL_SPECS:
                raise ParameterError(f"unknown model {name!r} in MODELS; choose from {', '.join(specs.MODEL_NAMES)}")
        if len(set(self.models)) != len(self.models):
            raise ParameterError(f"MODELS names a model twice: {','.join(self.models)}")
        for name in ("threshold", "target_bare_head_recall"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 < value < 1):
                raise ParameterError(f"{name.upper()} must be a number strictly between 0 and 1, got {value!r}")
        minimum = {
            "epochs": 1,
            "batch_size": 1,
            "repeats": 1,
            "augmented_views": 1,
            "max_restarts": 0,
            "bootstrap_resamples": 100,
            "demo_size": 20,
        }
        for name, least in minimum.items():
            if getattr(self, name) < least:
                raise ParameterError(f"{name.upper()} must be at least {least}, got {getattr(self, name)}")
        if self.image_size and not 32 <= self.image_size <= 1024:
            raise ParameterError(f"IMAGE_SIZE must be 0 (keep) or between 32 and 1024, got {self.image_size}")
        if self.resplit and self.repeats < 2:
            raise ParameterError("RESPLIT needs REPEATS of at least 2 (one split per repeat)")

    @property
    def demo(self) -> bool:
        """True when the run uses the synthetic demo set."""
        return not self.data_dir

    @property
    def demo_note(self) -> str:
        """What every page says about a run on the synthetic demo set."""
        return f"Synthetic demo data (batch size {self.batch_size}): these numbers say nothing about real photos."

    def parameters(self) -> dict[str, Any]:
        """The notebook parameters of this config, by name (scalars: models comma-joined, weights as requested)."""
        values = {name: getattr(self, name.lower()) for name in PARAMETER_TYPES if name not in NOTEBOOK_ONLY}
        values["MODELS"] = ",".join(self.models)
        values["WEIGHTS"] = self.weights.path if self.weights.used == "file" else self.weights.requested
        return values

    @classmethod
    def from_parameters(
        cls,
        *,
        run_id: str,
        origin: Literal["helmet-reports", "notebook"],
        base: Path | None = None,
        weights: WeightsChoice | None = None,
        **parameters: Any,
    ) -> RunConfig:
        """A config from parameters named as in `PARAMETER_TYPES` (missing ones take the defaults).

        Relative paths resolve against `base` (default: the repository), `BATCH_SIZE` 0 and `REPEATS` 0 mean "the
        default for this data" (16 and 1 on the demo set, 128 and `specs.REPEATS` on real data), and `WEIGHTS` is
        resolved (ImageNet downloaded or its fallback recorded) unless an already resolved `weights` is given.
        Raises `ParameterError` with one line for a value that cannot be used.
        """
        base = base or project_root()
        values = {name: coerce_parameter(name, value) for name, value in parameters.items()}
        unknown = set(values) & set(NOTEBOOK_ONLY)
        if unknown:
            raise ParameterError(f"{', '.join(sorted(unknown))} are notebook parameters, not run settings")
        data_dir = resolve_path(values.pop("DATA_DIR", ""), base)
        demo = not data_dir
        batch_size = values.pop("BATCH_SIZE", 0) or (specs.DEMO_BATCH_SIZE if demo else specs.BATCH_SIZE)
        repeats = values.pop("REPEATS", 0) or (specs.DEMO_REPEATS if demo else specs.REPEATS)
        listed = str(values.pop("MODELS", ",".join(specs.MODEL_NAMES))).split(",")
        models = tuple(name.strip() for name in listed if name.strip())
        requested = values.pop("WEIGHTS", "imagenet")
        given = weights or resolve_weights("none")  # the requested weights (maybe a download) once the rest is valid
        split, rule = _split_and_threshold_rule(values)
        cache_dir = resolve_path(values.pop("CACHE_DIR", "") or "reports/.cache", base)
        groups_csv = resolve_path(values.pop("GROUPS_CSV", ""), base) or _provenance_groups(data_dir)
        settings = {name.lower(): value for name, value in values.items()}
        try:
            config = cls(
                run_id=run_id,
                origin=origin,
                data_dir=data_dir,
                batch_size=batch_size,
                repeats=repeats,
                models=models,
                weights=given,
                split=split,
                threshold_rule=rule,
                cache_dir=cache_dir,
                groups_csv=groups_csv,
                **settings,
            )
        except ParameterError:
            raise
        except ValueError as error:  # pydantic wraps the checks of __post_init__
            raise ParameterError(_first_message(error)) from None
        if weights is not None:
            return config
        return dataclasses.replace(config, weights=_weights_for(models, requested, base))


def _split_and_threshold_rule(values: dict[str, Any]) -> tuple[str, str]:
    """SPLIT and THRESHOLD_RULE taken from `values` and checked; an empty rule is the mode's (`fixed` with FAITHFUL,
    `specs.FAST_THRESHOLD_RULE` otherwise)."""
    split = values.pop("SPLIT", "random")
    if split not in ("random", "grouped"):
        raise ParameterError(f"SPLIT must be random or grouped, got {split!r}")
    by_mode = "fixed" if values.get("FAITHFUL", default("FAITHFUL")) else specs.FAST_THRESHOLD_RULE
    rule = values.pop("THRESHOLD_RULE", "").replace("-", "_") or by_mode
    if rule not in THRESHOLD_RULES:
        raise ParameterError(f"THRESHOLD_RULE must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")
    return split, rule


def _first_message(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if errors is None:
        return str(error)
    first = errors()[0]
    message = str(first.get("ctx", {}).get("error", first["msg"]))
    where = ".".join(str(part) for part in first.get("loc", ()))
    return message if "ctx" in first or not where else f"{where.upper()}: {message}"


# ---------------------------------------------------------------------------------------------------------- results


def _weights_for(models: tuple[str, ...], requested: str, base: Path) -> WeightsChoice:
    """The run's backbone weights: none fetched or loaded when no model of the run uses the backbone (a local file
    is still checked: a wrong path or file is a mistake in the command, used or not)."""
    if any(specs.get_spec(name).uses_backbone for name in models):
        return _resolved_weights(requested, base)
    if requested.lower() not in ("imagenet", "none", "random"):
        _resolved_weights(requested, base)
    return WeightsChoice(requested=requested, used="unused")


def _resolved_weights(requested: str, base: Path) -> WeightsChoice:
    """The weights a run asked for, resolved (a local file against `base`, checked to be VGG16's); one-line
    `ParameterError` for a file that is missing or not VGG16 no-top weights."""
    local = requested.lower() not in ("imagenet", "none", "random")
    try:
        return resolve_weights(resolve_path(requested, base) if local else requested)
    except (FileNotFoundError, ValueError) as error:
        raise ParameterError(str(error)) from None


def _provenance_groups(data_dir: str) -> str:
    """The data folder's `provenance.csv` (written by `helmet-import`: one row per crop, its photo in `path`), used
    as the groups when no groups file is given; "" when there is none."""
    from helmetlib.data import PROVENANCE_FILE

    path = Path(data_dir) / PROVENANCE_FILE if data_dir else None
    return str(path) if path and path.is_file() else ""


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on, and Python's."""
    import platform
    from importlib import metadata

    versions = {}
    for package in (
        "helmetlib",
        "tensorflow",
        "keras",
        "numpy",
        "pandas",
        "scikit-learn",
        "papermill",
        "nbconvert",
        "jupytext",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return versions


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
    split: dict[str, int | str | bool] | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    host: dict[str, str | int | None] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float | None = None
    models: dict[str, ModelResult] = field(default_factory=dict)
    selection: Selection | None = None
    audit: Audit | None = None
    comparison_with_previous: Comparison | None = None

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

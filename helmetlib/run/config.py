"""What a run was asked to do: `RunConfig`, written once to `config.json` and read by every notebook, from
parameters named as in the settings table (`helmetlib.core.settings`), with run ids and the parameters' parsing.

Free of TensorFlow. `RunConfig.from_parameters` turns the parameters (from the command line or a notebook's
parameters cell) into one validated config, resolving every default that depends on the data (batch size and
repeats on the demo set) and the weights, once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from helmetlib.core import specs
from helmetlib.core.records import Record, record
from helmetlib.core.settings import NOTEBOOK_ONLY, PARAMETER_TYPES, choices, default
from helmetlib.core.weights import WeightsChoice, resolve_weights

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
NOTEBOOKS = ("00_eda", "10_model", "20_comparison")
EDA, MODEL, COMPARISON = NOTEBOOKS
CODE_PAGE_SUFFIX = ".code.html"  # a notebook's page with its code cells (`RunFolder.code_html`)
THRESHOLD_RULES = tuple(rule.replace("-", "_") for rule in choices("THRESHOLD_RULE") if rule)  # "": the mode's


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
    checkout = Path(__file__).resolve().parents[2]
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
    split: str = default("SPLIT")
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
    threshold_rule: str = specs.FAST_THRESHOLD_RULE
    target_bare_head_recall: float = default("TARGET_BARE_HEAD_RECALL")
    faithful: bool = default("FAITHFUL")
    augmented_views: int = default("AUGMENTED_VIEWS")
    export_tflite: bool = default("EXPORT_TFLITE")
    cross_ensemble: str = default("CROSS_ENSEMBLE")
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
        for name, allowed in (
            ("split", choices("SPLIT")),
            ("threshold_rule", THRESHOLD_RULES),
            ("cross_ensemble", choices("CROSS_ENSEMBLE")),
        ):
            if getattr(self, name) not in allowed:
                raise ParameterError(f"{name.upper()} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
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

    def threshold_for(self, validation_labels: np.ndarray, probabilities: np.ndarray, calibration=None):
        """The `DeployThreshold` of this run's threshold rule on validation `probabilities` (n,) calibrated by
        `calibration` (`evaluation.selection.threshold_by_rule` with the run's settings)."""
        from helmetlib.evaluation.selection import threshold_by_rule

        return threshold_by_rule(
            validation_labels,
            probabilities,
            calibration,
            rule=self.threshold_rule,
            threshold=self.threshold,
            target_bare_head_recall=self.target_bare_head_recall,
        )

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
        rule = _threshold_rule(values)
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


def _threshold_rule(values: dict[str, Any]) -> str:
    """THRESHOLD_RULE taken from `values` (checked by `RunConfig`); an empty rule is the mode's (`fixed` with
    FAITHFUL, `specs.FAST_THRESHOLD_RULE` otherwise)."""
    by_mode = "fixed" if values.get("FAITHFUL", default("FAITHFUL")) else specs.FAST_THRESHOLD_RULE
    return values.pop("THRESHOLD_RULE", "").replace("-", "_") or by_mode


def _first_message(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if errors is None:
        return str(error)
    first = errors()[0]
    message = str(first.get("ctx", {}).get("error", first["msg"]))
    where = ".".join(str(part) for part in first.get("loc", ()))
    return message if "ctx" in first or not where else f"{where.upper()}: {message}"


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
    from helmetlib.data.dataset import PROVENANCE_FILE

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

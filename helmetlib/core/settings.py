"""A run's settings in one table: each one's notebook parameter, type, default, help, `helmet-reports` option
and `--help` section.

From the table come the runner's options (`add_options`), the notebook parameters' types (`PARAMETER_TYPES`),
`RunConfig`'s defaults, the command line's values as parameters (`parameters_from`) and the option list in
docs/options.md (`markdown_table`, checked by a test). The notebooks' parameters cells keep their typed literals
(papermill reads them), and a test fails when one differs from the table. A new setting is one row here, a field
of `RunConfig` and the parameters cells of the notebooks that use it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from helmetlib.core import specs

DATA, TRAINING, SELECTION, OUTPUT = "data", "models and training", "selection and thresholds", "output and nightly runs"


@dataclass(frozen=True)
class Setting:
    """One setting: `name` is the notebook parameter (upper case; `RunConfig` has it in lower case), `default` the
    notebook's literal, `option` the runner's flag. `inverted`: a store-true flag that sets it False (`--no-export`);
    `option_default`: the runner's default when it differs from the notebook's (said in `help`)."""

    name: str
    kind: type
    default: Any
    help: str
    section: str
    option: str
    choices: tuple[str, ...] = ()
    inverted: bool = False
    option_default: Any = None
    option_help: str = ""  # the option's help when it differs from the parameter's (an inverted flag)

    @property
    def flag_help(self) -> str:
        """What the runner's option does, in its `--help` and docs/options.md."""
        return self.option_help or self.help

    @property
    def field(self) -> str:
        """The attribute of `RunConfig` holding it."""
        return self.name.lower()

    @property
    def dest(self) -> str:
        """The attribute of the parsed command line holding it (`--no-export` -> `no_export`)."""
        return self.option.lstrip("-").replace("-", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATA_DIR", str, "", "folder with images_proj.npy + Labels_proj.csv (default: the demo set)", DATA, "--data"
    ),
    Setting("DEMO_SIZE", int, specs.DEMO_SIZE, "images in the synthetic demo set", DATA, "--demo-size"),
    Setting("IMAGE_SIZE", int, 0, "resize to N x N pixels for the models (0: keep 200 x 200)", DATA, "--image-size"),
    Setting(
        "SPLIT",
        str,
        "random",
        "random (the study's stratified split) or grouped (no group on two sides)",
        DATA,
        "--split",
        choices=("random", "grouped"),
    ),
    Setting("SPLIT_SEED", int, specs.SPLIT_SEED, "random state of the split (the study's)", DATA, "--split-seed"),
    Setting(
        "GROUPS_CSV",
        str,
        "",
        "CSV of each image's group (default: the data's provenance.csv, if any)",
        DATA,
        "--groups",
    ),
    Setting("GROUP_COLUMN", str, "path", "the group column of the groups CSV", DATA, "--group-column"),
    Setting(
        "MODELS",
        str,
        ",".join(specs.MODEL_NAMES),
        "comma-separated model names (default: all six)",
        TRAINING,
        "--models",
    ),
    Setting(
        "WEIGHTS",
        str,
        "imagenet",
        "VGG16 weights: imagenet (a download), none (random) or a weights file",
        TRAINING,
        "--weights",
    ),
    Setting("EPOCHS", int, specs.EPOCHS, "training epochs (the study's)", TRAINING, "--epochs"),
    Setting(
        "BATCH_SIZE",
        int,
        0,
        f"0: the study's {specs.BATCH_SIZE}, or {specs.DEMO_BATCH_SIZE} on the demo set",
        TRAINING,
        "--batch-size",
    ),
    Setting("SEED", int, specs.SEED, "seed of the first repeat; repeat i uses SEED + i", TRAINING, "--seed"),
    Setting(
        "REPEATS",
        int,
        0,
        f"trainings per model; 0: {specs.REPEATS} on real data, {specs.DEMO_REPEATS} on the demo set",
        TRAINING,
        "--repeats",
    ),
    Setting(
        "RESPLIT", bool, False, "each repeat on another split (random state SPLIT_SEED + i)", TRAINING, "--resplit"
    ),
    Setting(
        "MAX_RESTARTS",
        int,
        specs.MAX_RESTARTS,
        "restarts with another seed after a collapse",
        TRAINING,
        "--max-restarts",
    ),
    Setting(
        "FAITHFUL",
        bool,
        False,
        "the study's computation: backbone every epoch, augmentation on the fly, the CNN's default start",
        TRAINING,
        "--faithful",
    ),
    Setting(
        "AUGMENTED_VIEWS",
        int,
        specs.AUGMENTED_VIEWS,
        "augmented copies per image for the fast augmented model",
        TRAINING,
        "--augmented-views",
    ),
    Setting(
        "THRESHOLD", float, specs.THRESHOLD, "decision threshold of the reported metrics", SELECTION, "--threshold"
    ),
    Setting(
        "THRESHOLD_RULE",
        str,
        "",
        "threshold to deploy: fixed (THRESHOLD on the model's own output, the study's), calibrated (THRESHOLD on "
        f"calibrated P(helmet)), max-f1 or bare-head-recall (chosen on validation); empty: {specs.FAST_THRESHOLD_RULE} "
        "in fast mode, fixed with --faithful (docs/seeds.md)",
        SELECTION,
        "--threshold-rule",
        choices=("", "fixed", "calibrated", "max-f1", "bare-head-recall"),
    ),
    Setting(
        "TARGET_BARE_HEAD_RECALL",
        float,
        0.9,
        "share of bare heads the bare-head-recall rule must catch",
        SELECTION,
        "--target-bare-head-recall",
    ),
    Setting(
        "CROSS_ENSEMBLE",
        str,
        "preferred",
        "deploy the selected model and the runner-up averaged when validation shows it clearly better (preferred), "
        "unless it shows it clearly worse (unless-worse), or never (off)",
        SELECTION,
        "--cross-ensemble",
        choices=("preferred", "unless-worse", "off"),
    ),
    Setting(
        "BOOTSTRAP_RESAMPLES", int, 2000, "resamples for the bootstrap intervals", SELECTION, "--bootstrap-resamples"
    ),
    Setting(
        "CACHE_DIR",
        str,
        "reports/.cache",
        "backbone features and the backbone store (runner's default: OUT/.cache)",
        OUTPUT,
        "--cache-dir",
        option_default="",
    ),
    Setting(
        "EXPORT_TFLITE",
        bool,
        True,
        "write the deployed model as float32 and quantised TensorFlow Lite",
        OUTPUT,
        "--no-export",
        inverted=True,
        option_help="skip the TensorFlow Lite export of the deployed model (EXPORT_TFLITE false)",
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
NOTEBOOK_ONLY: dict[str, type] = {"RUN_DIR": str, "MODEL_NAME": str}  # passed to notebooks, not run settings
PARAMETER_TYPES: dict[str, type] = {**NOTEBOOK_ONLY, **{setting.name: setting.kind for setting in SETTINGS}}


def default(name: str) -> Any:
    """The table's default of setting `name` (as a notebook writes it)."""
    return BY_NAME[name].default


def choices(name: str) -> tuple[str, ...]:
    """The values setting `name` allows (empty: any of its type)."""
    return BY_NAME[name].choices


def add_options(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """Add every setting's option to `parser`, in sections; the sections by name, for the runner's own options."""
    sections = {name: parser.add_argument_group(name) for name in (DATA, TRAINING, SELECTION, OUTPUT)}
    for setting in SETTINGS:
        section = sections[setting.section]
        if setting.kind is bool:
            section.add_argument(setting.option, action="store_true", help=setting.flag_help)
            continue
        value = setting.default if setting.option_default is None else setting.option_default
        shown = value if value != "" else None
        section.add_argument(
            setting.option,
            type=setting.kind,
            default=value,
            choices=setting.choices or None,
            help=setting.help + (f" (default: {shown})" if shown is not None and "default" not in setting.help else ""),
        )
    return sections


def parameters_from(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings of a parsed command line, as notebook parameters (inverted flags turned back)."""
    return {s.name: (not getattr(args, s.dest)) if s.inverted else getattr(args, s.dest) for s in SETTINGS}


def markdown_table() -> str:
    """docs/options.md: the settings' table (option, notebook parameter, type, default, meaning)."""
    lines = [
        "# The run's settings",
        "",
        "Each `helmet-reports` option below is also a notebook parameter (papermill `-p NAME VALUE`), checked the",
        "same way. Generated from `helmetlib/core/settings.py` (`python -m helmetlib.core.settings >",
        "docs/options.md`); a test fails when this page or a notebook's parameters cell differs from it. The runner's",
        "own options (`--out`, `--run-id`, `--timeout`, `--fail-on-regression`, `--workers`, `--scheduler`) are in",
        "`helmet-reports --help`.",
        "",
        "| option | notebook parameter | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        shown = "" if s.inverted else repr(s.default if s.option_default is None else s.option_default)
        lines.append(f"| `{s.option}` | `{s.name}` | {s.kind.__name__} | {shown} | {s.flag_help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")

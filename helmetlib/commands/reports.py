"""`helmet-reports`: run the study and write its run folder (`helmet-reports clean`: retention)."""

from __future__ import annotations

import argparse
import sys

from helmetlib.core import cli, settings
from helmetlib.runner.engine import NOTEBOOKS_DIR
from helmetlib.runner.study import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(
        "helmet-reports",
        "Train and compare the helmet study's models, and write the run's decision-first HTML reports. "
        "`helmet-reports clean --help` for the clean-up of old runs.",
        """examples:
  helmet-reports                                       # the demo set, every model: a first look in minutes
  helmet-reports --data data/site-a --split grouped --models cnn,vgg16_mlp --fail-on-regression
exit codes: 0 done; 1 a notebook failed (the run page says which); 2 bad options or data (nothing started);
  3 done, with a regression against the previous run on the same data (--fail-on-regression);
  4 done, but no model can be deployed (every model collapsed): latest stays on the last run that deployed one;
  130 / 143 interrupted (SIGINT / SIGTERM)""",
    )
    sections = settings.add_options(parser)
    output = sections[settings.OUTPUT]
    output.add_argument("--out", default="reports", help="one folder per run in it (default: %(default)s)")
    output.add_argument("--run-id", help="the run's folder name (default: UTC time + random)")
    output.add_argument("--timeout", type=int, default=3600, help="seconds per notebook cell (%(default)s)")
    output.add_argument("--fail-on-regression", action="store_true", help="exit 3 on a regression")
    distribution = parser.add_argument_group("distribution (model notebooks on Dask)")
    distribution.add_argument("--workers", type=int, default=1, help="local worker processes (%(default)s)")
    distribution.add_argument("--scheduler", help="tcp://HOST:PORT of a running Dask scheduler")
    parser.add_argument("--notebooks", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["clean"]:
        from helmetlib.runner.retention import main as clean

        return clean(argv[1:])
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

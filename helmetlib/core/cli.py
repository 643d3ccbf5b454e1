"""What every command line shares: `--version`, and help that keeps its examples and exit codes as written."""

from __future__ import annotations

import argparse


def version() -> str:
    """helmetlib's installed version ("unknown" when run from a checkout that was never installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("helmetlib")
    except PackageNotFoundError:
        return "unknown"


def parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An argument parser whose epilog (examples, exit codes) keeps its lines, with `--version`."""
    made = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    made.add_argument("--version", action="version", version=f"%(prog)s (helmetlib {version()})")
    return made

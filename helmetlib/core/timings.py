"""Where a stage's seconds go, for `benchmarks/pipeline.py`: library code wraps the arithmetic the study needs
(`timed("backbone")` around backbone passes and model inference, `timed("training")` around training epochs); with
`HELMETLIB_TIMINGS` naming a file, each wrapped call appends one JSON line with the run's stage (`HELMETLIB_STAGE`,
set by the runner for the kernel it starts), its kind and its seconds. Without it nothing is written.

With `HELMETLIB_PROFILE` naming a folder, `profile_cells()` (called by every notebook's `start`) profiles the
kernel's cells with cProfile and writes the stage's statistics to `<folder>/<stage>.prof` (`pstats` format)."""

from __future__ import annotations

import cProfile
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helmetlib.core.env import PROFILE_ENV, STAGE_ENV, TIMINGS_ENV

_depth = 0  # nested timed calls count once, in the outermost


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Time the block as `kind` ("backbone" or "training") when timings are being recorded."""
    global _depth
    path = os.environ.get(TIMINGS_ENV)
    if not path or _depth:
        yield
        return
    _depth += 1
    started = time.perf_counter()
    try:
        yield
    finally:
        _depth -= 1
        line = {"stage": os.environ.get(STAGE_ENV, ""), "kind": kind, "seconds": time.perf_counter() - started}
        with open(path, "a") as file:
            file.write(json.dumps(line) + "\n")


def profile_cells() -> cProfile.Profile | None:
    """In a kernel, with `HELMETLIB_PROFILE` set: profile the cells from here on and, after every cell, write the
    statistics so far to `<HELMETLIB_PROFILE>/<stage>.prof` (the file survives a kernel ended without shutdown);
    returns the profiler. Otherwise nothing (None)."""
    folder = os.environ.get(PROFILE_ENV)
    if not folder:
        return None
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return None
    stage = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.environ.get(STAGE_ENV, "notebook")).strip("_")
    path = Path(folder) / f"{stage}.prof"
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()

    def write_statistics(result=None) -> None:
        profiler.dump_stats(path)  # stops the profiler
        profiler.enable()

    shell.events.register("post_run_cell", write_statistics)
    profiler.enable()
    return profiler

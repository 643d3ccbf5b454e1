"""Where a stage's seconds go, for `benchmarks/pipeline.py`: library code wraps the arithmetic the study needs
(`timed("backbone")` around backbone passes and model inference, `timed("training")` around training epochs); with
`HELMETLIB_TIMINGS` naming a file, each wrapped call appends one JSON line with the run's stage (`HELMETLIB_STAGE`,
set by the runner for the kernel it starts), its kind and its seconds. Without it nothing is written."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from helmetlib.core.env import STAGE_ENV, TIMINGS_ENV

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

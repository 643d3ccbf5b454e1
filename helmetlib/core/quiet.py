"""Keep native libraries' log lines (TensorFlow, OpenCV, libpng) out of reports and terminals.

Native code writes to file descriptor 2 directly, past Python's `sys.stderr`; `native_stderr_filtered` diverts
the descriptor while a block runs and writes back only the lines a filter keeps.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager


@contextmanager
def native_stderr_filtered(keep: Callable[[str], bool] = lambda line: False):
    """Divert file descriptor 2 while the block runs; replay the lines for which `keep` is true."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line for line in captured.read().decode(errors="replace").splitlines() if line.strip() and keep(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)

"""What a run prints while it works, for terminals and nightly logs: `[stage k/n]` lines with the elapsed time and
an estimate of what remains (`Progress`), and the kernels' own lines (training epochs) relayed from the run's
progress file (`ProgressRelay`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from helmetlib.core.env import PROGRESS_ENV


class Progress:
    """`[stage k/n]` lines with the elapsed time and an estimate of what remains, and the kernels' own progress
    lines (training epochs) relayed from the run's progress file, for nightly logs."""

    def __init__(self, total: int, expected: dict[str, float]):
        self.started = time.perf_counter()
        self.total, self.expected = total, expected
        self.seconds: dict[str, float] = {}
        self.count = 0

    def run(self, label: str, action):
        self.count += 1
        print(
            f"[stage {self.count}/{self.total}] {label} ... elapsed {_clock(self.elapsed())}{self._remaining(label)}",
            flush=True,
        )
        begin = time.perf_counter()
        outcome = "failed"
        try:
            result = action()
            outcome = "done"
            return result
        finally:
            self.seconds[label] = round(time.perf_counter() - begin, 2)
            print(f"[stage {self.count}/{self.total}] {label} {outcome} in {self.seconds[label]:.1f}s", flush=True)

    def finished(self, label: str, seconds: float, *, failed: bool) -> None:
        """Record a stage that ran elsewhere (a Dask task) and print its line."""
        self.count += 1
        self.seconds[label] = round(seconds, 2)
        print(
            f"[stage {self.count}/{self.total}] {label} {'failed' if failed else 'done'} in {seconds:.1f}s "
            f"(Dask task), elapsed {_clock(self.elapsed())}",
            flush=True,
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _remaining(self, label: str) -> str:
        done = sum(self.seconds.values())
        if self.expected:
            left = sum(seconds for stage, seconds in self.expected.items() if stage not in self.seconds)
            return f", about {_clock(left)} left (from the last ok run)"
        if self.seconds:
            return f", about {_clock(done / len(self.seconds) * (self.total - len(self.seconds)))} left"
        return ""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressRelay:
    """Prints the lines the kernels append to the run's progress file, indented under the current stage."""

    def __init__(self, path: Path):
        self.path = path
        self.path.touch()
        os.environ[PROGRESS_ENV] = str(path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self):
        with self.path.open() as lines:
            while not self.stop.is_set():
                line = lines.readline()
                if line:
                    print(f"    {line.rstrip()}", flush=True)
                else:
                    time.sleep(0.2)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        os.environ.pop(PROGRESS_ENV, None)

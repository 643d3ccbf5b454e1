"""Shared fixtures: small synthetic sets, tiny report runs, the optional real photos and stand-in weights."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from filelock import FileLock

matplotlib.use("Agg")

from helmetlib.data.dataset import make_demo_dataset, write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SHARED = Path(os.environ.get("HELMETLIB_SHARED", REPO.parent / "shared"))
# Every test run (and the runner processes and kernels it starts) computes in float32, whatever the machine: the
# numbers the tests assert then do not depend on whether the CPU has bfloat16 (the bfloat16 CNN has its own test).
os.environ.setdefault("HELMETLIB_PRECISION", "float32")
HELMET_DEV = SHARED / "data" / "helmet-dev"
STAND_IN_WEIGHTS = SHARED / "weights" / "vgg16-hed-notop.weights.h5"

# a tiny study: 160 demo images of 64 px (the CNN learns them in 15 epochs), random backbone, one augmented view
TINY = [
    "--epochs",
    "15",
    "--weights",
    "none",
    "--demo-size",
    "160",
    "--image-size",
    "64",
    "--augmented-views",
    "1",
    "--bootstrap-resamples",
    "500",
]
# the smallest study that still runs every notebook: the CNN alone
CNN_ONLY = [
    "--models",
    "cnn",
    "--weights",
    "none",
    "--demo-size",
    "40",
    "--image-size",
    "32",
    "--no-export",
    "--bootstrap-resamples",
    "200",
]


# what a reader or a log scanner must never meet on a command's stderr: TensorFlow's / absl's C++ log lines, Python
# warnings, CUDA probing
LOG_NOISE = re.compile(r"E0000|W0000|I0000|absl|cuInit|Warning")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require(path: Path, what: str) -> Path:
    """Skip the calling test, saying why, when an optional shared file is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (only present beside a developer checkout; see README)")
    return path


@pytest.fixture(scope="session")
def helmetlib_kernel() -> str:
    """The kernelspec the notebooks name, installed for this Python (as `helmet-reports` does on every run)."""
    from helmetlib.runner.kernel import ensure_kernel

    return ensure_kernel()


@pytest.fixture(scope="session")
def demo_small():
    """48 synthetic images of 48x48 pixels."""
    return make_demo_dataset(48, seed=3, image_size=48)


@pytest.fixture(scope="session")
def demo_64():
    """160 synthetic images of 64x64 pixels: the CNN learns them in 15 epochs."""
    return make_demo_dataset(160, seed=1, image_size=64)


@pytest.fixture(scope="session")
def learnt_cnn(demo_64):
    """The CNN trained 15 epochs on `demo_64` (the study's split), shared by the tests that need a learnt model."""
    from helmetlib import split, train_model

    return train_model("cnn", demo_64, split(demo_64.labels), epochs=15, batch_size=16)


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory, demo_small):
    """The small demo set written in the study's file format."""
    return write_dataset(demo_small, tmp_path_factory.mktemp("demo"))


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def pytest_xdist_auto_num_workers(config) -> int:
    """Workers for `-n auto`: the CPUs this process may run on (a container's or taskset's; xdist's default counts
    the host's cores), at most 4: each worker starts runner processes and kernels of its own, and past a few the
    longest test file bounds the suite."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(usable or 1, 4)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory, worker_id) -> Path:
    """A temporary folder every pytest-xdist worker of this test run shares (.ci/run runs the suite on `-n auto`
    workers); without xdist, the run's own."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def build_once(folder: Path, build) -> dict:
    """`build(folder)` (a JSON-able record) by the first worker of this test run that asks; the others wait on a lock
    and read the record it left beside the folder. Tests of several files share such a build, and xdist hands files
    to different workers."""
    record = folder.with_name(folder.name + ".json")
    with FileLock(f"{folder}.lock"):
        if not record.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            record.write_text(json.dumps(build(folder)))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def finished_run(shared_tmp):
    """(exit status, output folder, stderr) of one tiny helmet-reports run of every model, shared by the tests."""

    def run(folder: Path) -> dict:
        groups = folder / "groups.csv"
        groups.write_text("path\n" + "".join(f"photo{row // 2}.png\n" for row in range(160)))  # two crops per photo
        result = runner(["--out", str(folder / "reports"), "--run-id", "tiny", "--groups", str(groups), *TINY])
        return {"returncode": result.returncode, "stderr": result.stderr}

    built = build_once(shared_tmp / "finished_run", run)
    return built["returncode"], shared_tmp / "finished_run" / "reports", built["stderr"]


def runner(arguments: list[str], **options) -> subprocess.CompletedProcess:
    """`helmet-reports` in a process of its own (as a scheduler runs it), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "helmetlib.commands.reports", *arguments], capture_output=True, text=True, **options
    )

"""Shared fixtures: small synthetic sets, the optional real photos and stand-in weights beside the repository."""

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from helmetlib.data import make_demo_dataset, write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HELMETLIB_SHARED", REPO.parent / "shared"))
HELMET_DEV = SHARED / "data" / "helmet-dev"
STAND_IN_WEIGHTS = SHARED / "weights" / "vgg16-hed-notop.weights.h5"


def require(path: Path, what: str) -> Path:
    """Skip the calling test, saying why, when an optional shared file is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (only present beside a developer checkout; see README)")
    return path


@pytest.fixture(scope="session")
def demo_small():
    """48 synthetic images of 48x48 pixels."""
    return make_demo_dataset(48, seed=3, image_size=48)


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


TINY = ["--epochs", "1", "--weights", "none", "--demo-size", "40", "--image-size", "48", "--augmented-views", "1"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(exit status, output folder) of one tiny helmet-reports run on the demo set, shared by the tests."""
    from helmetlib.reports import main

    out = tmp_path_factory.mktemp("reports")
    groups = tmp_path_factory.mktemp("groups") / "groups.csv"
    groups.write_text("path\n" + "".join(f"photo{row // 2}.png\n" for row in range(40)))  # two crops per photo
    status = main(["--out", str(out), "--run-id", "tiny", "--groups", str(groups), *TINY])
    return status, out

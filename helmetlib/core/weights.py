"""Where the backbone's weights (`backbones.BACKBONE`, VGG16) come from, and an honest record of what was used."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import warnings
from pathlib import Path
from typing import Literal

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.records import Record, record

DOWNLOAD_TIMEOUT_S = 20
RANDOM_BACKBONE_SEED = 0  # a random backbone is the same for every seed and repeat, so its features are shared


class WeightsFallbackWarning(UserWarning):
    """Pretrained weights were requested but could not be had; the backbone is randomly initialised."""


@record
class WeightsChoice(Record):
    """What was asked for (`imagenet`, `none` or a path), what is used (`imagenet`, `random` or `file`, or `unused`
    when no model of the run stands on the backbone: nothing is fetched or loaded) and why."""

    requested: str
    used: Literal["imagenet", "random", "file", "unused"]
    path: str | None = None
    sha256: str | None = None
    fallback_reason: str | None = None

    @property
    def is_fallback(self) -> bool:
        """True when pretrained weights were requested but the backbone is random."""
        return self.fallback_reason is not None

    def describe(self) -> str:
        """One line: which weights, and where they come from (file name and fingerprint for a local file)."""
        if self.used == "imagenet":
            return f"ImageNet (Keras' {BACKBONE.application} no-top file, sha256 {self.sha256[:12]})"
        if self.used == "unused":
            return f"none loaded: no model of this run uses the {BACKBONE.application} backbone"
        if self.used == "file":
            return f"local file {Path(self.path).name} (sha256 {self.sha256[:12]}; not ImageNet)"
        if self.is_fallback:
            return "RANDOM (ImageNet weights could not be loaded)"
        return "random (--weights none)"

    def banner(self) -> str | None:
        """A warning for every page when the backbone is not ImageNet's, or None when it is (or is not used)."""
        if self.used in ("imagenet", "unused"):
            return None
        backbone = BACKBONE.application
        if self.is_fallback:
            return (
                f"WARNING: {self.requested} weights were requested but could not be loaded ({self.fallback_reason}). "
                f"The {backbone} backbone is RANDOMLY INITIALISED: transfer-learning results are not those of a "
                "pretrained network."
            )
        if self.used == "random":
            return (
                f"The {backbone} backbone is RANDOMLY INITIALISED (--weights none): transfer-learning results are not "
                "those of a pretrained network."
            )
        return (
            f"The {backbone} backbone uses the local weights file {Path(self.path).name} (sha256 {self.sha256[:12]}), "
            "not ImageNet: results differ from the study's pretrained backbone."
        )

    @property
    def banner_level(self) -> Literal["danger", "warning"]:
        """`danger` for a random backbone, `warning` for a local file."""
        return "danger" if self.used == "random" else "warning"

    def check_file(self) -> None:
        """Raise `FileNotFoundError` / `ValueError` when the recorded weights file is gone or has changed."""
        if self.path is None:
            return
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.path}: weights file recorded for this run is gone")
        if file_sha256(self.path) != self.sha256:
            raise ValueError(f"{self.path}: weights file changed since the run resolved it (sha256 differs)")


def check_backbone_weights(path: str | Path) -> None:
    """`ValueError` naming the first mismatch when `path` is not an HDF5 file of the backbone's no-top weights
    (its 3x3 convolutions with their channels, each a kernel and a bias; Keras 3 `.weights.h5` or the legacy
    layout).

    Read from the file's structure alone (h5py, no TensorFlow), so a run refuses a wrong file before it starts."""
    import h5py

    expected = []
    channels, name = BACKBONE.conv_channels, BACKBONE.application
    for inputs, outputs in zip((3, *channels[:-1]), channels, strict=True):
        expected += [(3, 3, inputs, outputs), (outputs,)]
    found: list[tuple[str, tuple[int, ...]]] = []
    try:
        with h5py.File(path, "r") as weights:
            weights.visititems(lambda name, item: found.append((name, item.shape)) if hasattr(item, "shape") else None)
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 weights file ({error})") from None
    missing = list(expected)
    for array, shape in found:
        if shape not in missing:
            raise ValueError(
                f"{path}: not {name} no-top weights: {array} has shape {shape}, which {name} does not have (or has "
                f"fewer times); expected the {len(channels)} convolutions of {', '.join(map(str, channels))} channels"
            )
        missing.remove(shape)
    if missing:
        raise ValueError(
            f"{path}: not {name} no-top weights: {len(found)} arrays, none of shape {missing[0]} "
            f"({len(missing)} of {name}'s {len(expected)} arrays missing)"
        )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(
    weights: str | Path | WeightsChoice | None = "imagenet",
    *,
    url: str = BACKBONE.imagenet_url,
    cache_dir: str | Path | None = None,
) -> WeightsChoice:
    """Resolve `imagenet` (download or Keras cache), `None`/`"none"` or a local weights file to a `WeightsChoice`.

    A missing local file is an error; ImageNet weights that cannot be downloaded fall back to random
    initialisation with a `WeightsFallbackWarning` and the reason recorded. `cache_dir` defaults to Keras' (~/.keras).
    An already resolved `WeightsChoice` is returned as it is.
    """
    if isinstance(weights, WeightsChoice):
        return weights
    if weights is None or str(weights).lower() in ("none", "random"):
        return WeightsChoice(requested="none", used="random")
    if str(weights).lower() == "imagenet":
        try:
            path = _download_imagenet_notop(url, cache_dir)
        except Exception as error:  # any failure to obtain the file means the same thing: no pretrained weights
            reason = f"could not download {BACKBONE.application} ImageNet weights: {error}"
            warnings.warn(
                f"ImageNet weights for {BACKBONE.application} unavailable ({reason}); using RANDOM initialisation",
                WeightsFallbackWarning,
                stacklevel=2,
            )
            return WeightsChoice(requested="imagenet", used="random", fallback_reason=reason)
        return WeightsChoice(requested="imagenet", used="imagenet", path=str(path), sha256=file_sha256(path))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (use 'imagenet', 'none' or an existing .h5 file)")
    check_backbone_weights(path)
    return WeightsChoice(requested=str(path), used="file", path=str(path.resolve()), sha256=file_sha256(path))


def _download_imagenet_notop(url: str, cache_dir: str | Path | None) -> Path:
    """Fetch (or find in the Keras cache) VGG16's ImageNet no-top weights."""
    from helmetlib.core.backend import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:  # Keras prints "Downloading data from ..." and a progress bar: not for reports (a failure is a warning)
        with contextlib.redirect_stdout(io.StringIO()):
            return Path(
                keras.utils.get_file(
                    Path(BACKBONE.imagenet_url).name,
                    url,
                    cache_dir=None if cache_dir is None else str(cache_dir),
                    cache_subdir="models",
                    file_hash=BACKBONE.imagenet_md5,
                )
            )
    finally:
        socket.setdefaulttimeout(previous)

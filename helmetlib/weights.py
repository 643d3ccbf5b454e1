"""Where the VGG16 backbone's weights come from, and an honest record of what was used."""

from __future__ import annotations

import hashlib
import socket
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
IMAGENET_NOTOP_HASH = "6d6bbae143d832006294945121d1f1fc"
DOWNLOAD_TIMEOUT_S = 20


class WeightsFallbackWarning(UserWarning):
    """Pretrained weights were requested but could not be had; the backbone is randomly initialised."""


@dataclass(frozen=True)
class WeightsChoice:
    """What was asked for (`imagenet`, `none` or a path), what is used (`imagenet`, `random` or `file`) and why."""

    requested: str
    used: str
    path: str | None = None
    sha256: str | None = None
    fallback_reason: str | None = None

    @property
    def is_fallback(self) -> bool:
        """True when pretrained weights were requested but the backbone is random."""
        return self.fallback_reason is not None

    def banner(self) -> str | None:
        """A loud one-paragraph warning for reports, or None when there is nothing to warn about."""
        if not self.is_fallback:
            return None
        return (
            f"WARNING: {self.requested} weights were requested but could not be loaded ({self.fallback_reason}). "
            "The VGG16 backbone is RANDOMLY INITIALISED: transfer-learning results below are not those of a "
            "pretrained network."
        )

    def banner_html(self) -> str:
        """The banner as a red HTML box for notebooks and pages ("" when there is nothing to warn about)."""
        text = self.banner()
        return f'<div style="background:#fdd;border:3px solid #c00;padding:1em"><b>{text}</b></div>' if text else ""

    def to_dict(self) -> dict:
        """Plain-dict form for JSON metadata."""
        return asdict(self)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(
    weights: str | Path | None = "imagenet", *, url: str = IMAGENET_NOTOP_URL, cache_dir: str | Path | None = None
) -> WeightsChoice:
    """Resolve `imagenet` (download or Keras cache), `None`/`"none"` or a local weights file to a `WeightsChoice`.

    A missing local file is an error; ImageNet weights that cannot be downloaded fall back to random
    initialisation with a `WeightsFallbackWarning` and the reason recorded. `cache_dir` defaults to Keras' (~/.keras).
    """
    if weights is None or str(weights).lower() in ("none", "random"):
        return WeightsChoice(requested="none", used="random")
    if str(weights).lower() == "imagenet":
        try:
            path = _download_imagenet_notop(url, cache_dir)
        except Exception as error:  # any failure to obtain the file means the same thing: no pretrained weights
            reason = f"could not download VGG16 ImageNet weights: {error}"
            warnings.warn(
                f"ImageNet weights for VGG16 unavailable ({reason}); using RANDOM initialisation",
                WeightsFallbackWarning,
                stacklevel=2,
            )
            return WeightsChoice(requested="imagenet", used="random", fallback_reason=reason)
        return WeightsChoice(requested="imagenet", used="imagenet", path=str(path), sha256=file_sha256(path))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (use 'imagenet', 'none' or an existing .h5 file)")
    return WeightsChoice(requested=str(path), used="file", path=str(path.resolve()), sha256=file_sha256(path))


def _download_imagenet_notop(url: str, cache_dir: str | Path | None) -> Path:
    """Fetch (or find in the Keras cache) VGG16's ImageNet no-top weights."""
    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return Path(
            keras.utils.get_file(
                Path(IMAGENET_NOTOP_URL).name,
                url,
                cache_dir=None if cache_dir is None else str(cache_dir),
                cache_subdir="models",
                file_hash=IMAGENET_NOTOP_HASH,
            )
        )
    finally:
        socket.setdefaulttimeout(previous)

"""Frozen-backbone features computed once per data, weights, preprocessing, size and precision, cached on disk.

One backbone pass computes every feature kind that shares its normalisation (`PASSES`): the `unit` pass gives
models 2-4 their `block5` maps, the `vgg16` pass gives model 5 its `gap5` vector and model 6 its `multiscale`
vector. Features are written batch by batch into memory-mapped `.npy` files (a pass over more images than fit in
memory runs in constant memory), with the number of finished rows recorded so that an interrupted pass resumes
where it stopped. Stored entries are read as `data.RowFile`s: only the rows asked for are read, never the whole
file. A finished entry stores the SHA-256 of its array beside its key: an entry whose bytes, shape or
dtype no longer match is recomputed with a `CacheWarning`, never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helmetlib.core.backbones import BACKBONE
from helmetlib.core.env import PRECISION_ENV
from helmetlib.core.preprocess import Normalization, normalize
from helmetlib.core.timings import timed
from helmetlib.data.dataset import RowFile

if TYPE_CHECKING:
    from helmetlib.core.backend import keras

PRECISIONS = ("float32", "bfloat16", "float16")
PASSES: dict[str, tuple[str, ...]] = {"unit": ("block5",), BACKBONE.name: ("gap5", "multiscale")}
FEATURES_FOLDER = "features"
BACKBONES_FOLDER = "backbones"
USERS_FOLDER = "users"  # one small file per reports folder whose runs use this cache: `clean` reads all their cards


def register_cache_user(cache_dir: str | Path, reports_dir: str | Path) -> None:
    """Record that runs in `reports_dir` use entries of the cache `cache_dir` (idempotent), so that cleaning any
    reports folder sharing the cache keeps what these runs need."""
    import hashlib

    reports = str(Path(reports_dir).resolve())
    users = Path(cache_dir) / USERS_FOLDER
    users.mkdir(parents=True, exist_ok=True)
    entry = users / f"{hashlib.sha256(reports.encode()).hexdigest()[:16]}.json"
    if not entry.is_file():
        entry.write_text(json.dumps({"reports": reports}) + "\n")


def cache_users(cache_dir: str | Path, *, missing: bool = False) -> list[Path]:
    """The reports folders registered as users of the cache `cache_dir` that still exist (`missing=True`: those
    that cannot be found, moved or deleted; each registration is a file in `<cache>/users/`)."""
    folders = []
    for entry in sorted((Path(cache_dir) / USERS_FOLDER).glob("*.json")):
        try:
            folder = Path(json.loads(entry.read_text())["reports"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if folder.is_dir() != missing:
            folders.append(folder)
    return folders


class CacheWarning(UserWarning):
    """A cache entry was damaged (checksum, shape or dtype mismatch) and has been recomputed."""


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX), where bfloat16 inference pays off."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(cpuinfo.split()))


def gpu_available() -> bool:
    """True when TensorFlow sees a GPU."""
    from helmetlib.core.backend import tf

    return bool(tf.config.list_physical_devices("GPU"))


def precision_override() -> str | None:
    """The precision forced by the environment variable HELMETLIB_PRECISION, if set (for all backbone features)."""
    override = os.environ.get(PRECISION_ENV)
    if override and override not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV}={override!r}; choose one of {PRECISIONS}")
    return override or None


def backbone_precision() -> str:
    """The faster precision for backbone inference here: `bfloat16` on a GPU or a bf16-capable CPU, else `float32`."""
    return precision_override() or ("bfloat16" if gpu_available() or cpu_supports_bfloat16() else "float32")


def feature_precision(*, faithful: bool) -> str:
    """The precision of a run's shared feature passes (the EDA's look-alike audit and the heads read the same
    cached pass): the study's float32 when `faithful`, else the faster one here (`backbone_precision`)."""
    return "float32" if faithful else backbone_precision()


def weights_fingerprint(model: keras.Model) -> str:
    """Short sha256 of a model's weight values (changes whenever any weight does)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def pass_extractor(vgg16: keras.Model, normalization: str, precision: str) -> keras.Model:
    """One model computing every feature kind of `PASSES[normalization]` from the backbone `vgg16` (its plain
    application, `backbones.BACKBONE`), in `precision`."""
    from helmetlib.core.backend import keras
    from helmetlib.models.builders import frozen_backbone

    base = vgg16
    if precision != "float32":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(f"mixed_{precision}")  # clone_model would keep each layer's float32 policy
        try:
            base = BACKBONE.build(vgg16.input_shape[1:])
        finally:
            keras.config.set_dtype_policy(previous)
        base.set_weights(vgg16.get_weights())
    outputs = [frozen_backbone(kind, base).output for kind in PASSES[normalization]]
    return keras.Model(base.input, outputs, name=f"{normalization}_pass")


def compute_features(
    extractor: keras.Model,
    images_rgb: np.ndarray,
    *,
    normalization: Normalization,
    augmenter: keras.Layer | None = None,
    batch_size: int = 32,
    outputs: list[np.ndarray] | None = None,
    start: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """The extractor's outputs for uint8 RGB images (N, H, W, 3) as float32 arrays (N, ...), one per output.

    Images are normalised (and augmented) batch by batch. Given `outputs` (arrays or memory maps of the right
    shapes) it fills them from row `start` on and calls `on_batch(rows_done)` after each batch.
    """
    with timed("backbone"):
        for row in range(start, len(images_rgb), batch_size):
            batch = np.asarray(images_rgb[row : row + batch_size])
            x = normalize(batch, normalization)
            if augmenter is not None:
                x = augmenter(x, training=True)
            values = extractor(x, training=False)
            values = values if isinstance(values, list | tuple) else [values]
            if outputs is None:
                outputs = [np.empty((len(images_rgb), *v.shape[1:]), np.float32) for v in values]
            for target, value in zip(outputs, values, strict=True):
                target[row : row + len(batch)] = np.asarray(value, dtype=np.float32)
            if on_batch is not None:
                on_batch(row + len(batch))
    return outputs


def pass_key(
    data_hash: str, vgg16: keras.Model, normalization: str, precision: str, view: str, **extra: str | int
) -> dict:
    """What identifies a backbone pass: data, backbone weights, preprocessing, input size, precision and view."""
    return {
        "data": data_hash,
        "weights": weights_fingerprint(vgg16),
        "normalization": normalization,
        "input_shape": list(vgg16.input_shape[1:]),
        "precision": precision,
        "view": view,
        **extra,
    }


def cached_features(
    images_rgb: np.ndarray,
    data_hash: str,
    vgg16: keras.Model,
    cache: FeatureCache,
    *,
    kind: str = "block5",
    precision: str = "float32",
) -> np.ndarray:
    """Backbone features of one kind for all images (N, ...), from `cache` or computed in one shared pass.

    `vgg16` is the plain VGG16 base (`models.vgg16_backbone`); `kind` one of the kinds in `PASSES`.
    """
    normalization = next(norm for norm, kinds in PASSES.items() if kind in kinds)
    key = pass_key(data_hash, vgg16, normalization, precision, "original")
    arrays = cache.get_or_compute(
        key,
        PASSES[normalization],
        lambda outputs, start, on_batch: compute_features(
            pass_extractor(vgg16, normalization, precision),
            images_rgb,
            normalization=normalization,
            outputs=outputs,
            start=start,
            on_batch=on_batch,
        ),
        shapes=_pass_shapes(vgg16, normalization, len(images_rgb)),
    )
    return arrays[PASSES[normalization].index(kind)]


def _pass_shapes(vgg16: keras.Model, normalization: str, n: int) -> list[tuple[int, ...]]:
    extractor = pass_extractor(vgg16, normalization, "float32")
    outputs = extractor.output if isinstance(extractor.output, list | tuple) else [extractor.output]
    return [(n, *output.shape[1:]) for output in outputs]


class FeatureCache:
    """Feature arrays on disk under `folder/features`, one `.npy` per key and output; None keeps them in memory.

    `hits`, `misses` and `warnings` (damaged entries that were recomputed) say what happened; `entries` lists the
    file names used, so that a run can record which cache entries it needs.
    """

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) / FEATURES_FOLDER if folder is not None else None
        self.hits = 0
        self.misses = 0
        self.warnings: list[str] = []
        self.entries: list[str] = []

    def path(self, key: dict, output: str) -> Path | None:
        """Where the array `output` of `key` lives (None without a folder)."""
        if self.folder is None:
            return None
        digest = hashlib.sha256(json.dumps({**key, "output": output}, sort_keys=True).encode()).hexdigest()[:24]
        return self.folder / f"features-{digest}.npy"

    def get_or_compute(
        self,
        key: dict,
        names: tuple[str, ...],
        compute: Callable[[list[np.ndarray] | None, int, Callable[[int], None] | None], list[np.ndarray]],
        *,
        shapes: list[tuple[int, ...]],
    ) -> list[np.ndarray]:
        """The arrays `names` stored for `key` (`RowFile`s, read window by window), or computed and stored.

        `compute(outputs, start, on_batch)` fills `outputs` (memory maps of `shapes`) from row `start` and
        reports finished rows; it is resumed from the last finished row when an earlier pass was interrupted.
        """
        if self.folder is None:
            self.misses += 1
            return compute(None, 0, None)
        paths = [self.path(key, name) for name in names]
        self.folder.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(paths[0].with_suffix(".lock"))):  # one writer per entry, across processes
            stored = [
                self._load(path, key, name, shape) for path, name, shape in zip(paths, names, shapes, strict=True)
            ]
            if all(array is not None for array in stored):
                self.hits += 1
                self.entries += [path.name for path in paths]
                return stored
            arrays = self._compute(paths, key, names, compute, shapes)
        self.misses += 1
        self.entries += [path.name for path in paths]
        return arrays

    def _load(self, path: Path, key: dict, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            array = RowFile.open(path)
        except (OSError, ValueError, EOFError) as error:
            return self._discard(path, f"unreadable ({error})")
        expected = {**key, "output": name, "shape": list(shape), "dtype": "float32"}
        if {k: meta.get(k) for k in expected} != expected:
            return self._discard(path, "its key file does not match the request")
        if list(array.shape) != list(shape) or array.dtype != np.float32:
            return self._discard(path, f"shape {array.shape} / dtype {array.dtype}, expected {shape} / float32")
        if array_sha256(array) != meta.get("sha256"):
            return self._discard(path, "checksum mismatch (the array's bytes changed after it was written)")
        return array

    def _discard(self, path: Path, reason: str) -> None:
        message = f"feature cache entry {path.name} was damaged ({reason}); recomputed"
        warnings.warn(message, CacheWarning, stacklevel=3)
        self.warnings.append(message)
        for stale in (path, path.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        return None

    def _compute(self, paths, key, names, compute, shapes) -> list[np.ndarray]:
        partials = [path.with_suffix(".partial.npy") for path in paths]
        progress = paths[0].with_suffix(".partial.json")
        start = 0
        if progress.is_file() and all(partial.is_file() for partial in partials):
            state = json.loads(progress.read_text())
            if state.get("key") == key and state.get("shapes") == [list(shape) for shape in shapes]:
                start = int(state["rows_done"])  # resume an interrupted pass
        mode = "r+" if start else "w+"
        outputs = [
            np.lib.format.open_memmap(partial, mode=mode, dtype=np.float32, shape=shape)
            for partial, shape in zip(partials, shapes, strict=True)
        ]

        def finished(rows: int) -> None:
            for output in outputs:
                output.flush()
            state = {"key": key, "shapes": [list(s) for s in shapes], "rows_done": rows}
            progress.write_text(json.dumps(state))

        compute(outputs, start, finished)
        arrays = []
        for output, partial, path, name, shape in zip(outputs, partials, paths, names, shapes, strict=True):
            output.flush()
            meta = {**key, "output": name, "shape": list(shape), "dtype": "float32", "sha256": array_sha256(output)}
            del output
            partial.replace(path)
            path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))  # written last
            arrays.append(RowFile.open(path))
        progress.unlink(missing_ok=True)
        return arrays


def array_sha256(array: np.ndarray, *, chunk_bytes: int = 2**24) -> str:
    """Hex sha256 of an array's bytes in C order, read in chunks of whole rows of about `chunk_bytes` (files are
    not read whole)."""
    digest = hashlib.sha256()
    row_bytes = max(1, math.prod(array.shape[1:]) * array.dtype.itemsize)
    chunk_rows = max(1, chunk_bytes // row_bytes)
    for start in range(0, len(array), chunk_rows):
        digest.update(np.ascontiguousarray(array[start : start + chunk_rows]))
    return digest.hexdigest()

"""Scale benchmark: synthetic sets of 6,000 and 60,000 images, the light stages at every size, the full study at
the sizes asked for.

The sets are written once into `--workdir` from helmet-dev's 600 crops with a random horizontal flip, a random
crop (80-100 % of the side, resized back), and brightness / contrast jitter, so no image is an exact copy. Each
stage runs in a process of its own, so that its peak RSS (the process and its children: kernels, workers) is its
own. Light stages: load and validate (header, labels, memory map), content hash, leakage audit (perceptual-hash
near duplicates, groups, closest cross-split pairs), EDA statistics. With `--study-sizes`, the full default study
(`helmet-reports`, cold cache) runs at those sizes and at 600 images, and its cost ratio is printed;
`--study-options` passes options to both runs (a reduced study where the full one does not fit the time).

    python benchmarks/scale.py --data ../shared/data/helmet-dev --sizes 6000,60000
    python benchmarks/scale.py --data ../shared/data/helmet-dev --sizes 6000 --study-sizes 6000 \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5
    python benchmarks/scale.py --data ../shared/data/helmet-dev --sizes "" --study-sizes 6000 \\
        --weights ../shared/weights/vgg16-hed-notop.weights.h5 --study-options "--models cnn,vgg16_linear --repeats 1"
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pipeline import PeakMemory

from helmetlib.data.dataset import IMAGES_FILE, LABELS_FILE, load_dataset
from helmetlib.run.folder import RunFolder, RunRecord

LIGHT_STAGES = {
    "load + validate": "dataset = load_dataset(DATA)",
    "content hash": "dataset = load_dataset(DATA); content_hash(dataset.images, dataset.labels)",
    "audit": (
        "dataset = load_dataset(DATA); parts = split(dataset.labels); prints = fingerprints(dataset.images); "
        "pairs = near_duplicate_pairs(dataset.images, parts, prints=prints); "
        "groups = duplicate_groups(len(dataset), pairs); "
        "closest = closest_cross_split_pairs(dataset.images, parts, n=6, prints=prints); "
        "print('pairs', len(pairs), 'across', len(across_parts(pairs)), 'groups', len(set(groups)))"
    ),
    "EDA statistics": "dataset = load_dataset(DATA); image_statistics(dataset.images, dataset.labels)",
}
PRELUDE = (
    "from helmetlib.data.dataset import load_dataset, content_hash; from helmetlib.data.splits import split; "
    "from helmetlib.data.audit import fingerprints, near_duplicate_pairs, duplicate_groups, closest_cross_split_pairs, "
    "across_parts; from helmetlib.reports.eda import image_statistics; "
)


def write_synthetic(source: Path, n: int, folder: Path, *, seed: int = 0) -> Path:
    """`n` augmented copies of the source crops in the dataset format (BGR), written chunk by chunk."""
    if (folder / IMAGES_FILE).is_file() and (folder / LABELS_FILE).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    original = load_dataset(source)
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(original), size=n)
    out = np.lib.format.open_memmap(folder / ".partial.npy", mode="w+", dtype=np.uint8, shape=(n, 200, 200, 3))
    for start in range(0, n, 500):
        rows = picks[start : start + 500]
        images = original.images[rows]  # RGB
        for offset, image in enumerate(images):
            if rng.random() < 0.5:
                image = image[:, ::-1]
            side = int(200 * rng.uniform(0.8, 1.0))
            top, left = rng.integers(0, 200 - side + 1, size=2)
            image = cv2.resize(
                np.ascontiguousarray(image[top : top + side, left : left + side]),
                (200, 200),
                interpolation=cv2.INTER_AREA,
            )
            gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
            image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
            out[start + offset] = image[..., ::-1]  # back to BGR, as the file format wants
    out.flush()
    del out
    (folder / ".partial.npy").replace(folder / IMAGES_FILE)
    pd.DataFrame({"Label": original.labels[picks]}).to_csv(folder / LABELS_FILE, index=False)
    return folder


def measure(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS of the process tree in GiB, last output line) of a command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(process.pid, interval=0.1)
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed: {stderr[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    return seconds, memory.peak / 2**30, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="helmet-dev (the source crops)")
    parser.add_argument("--sizes", default="6000,60000")
    parser.add_argument("--study-sizes", default="", help="sizes at which the full default study also runs")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--study-options", default="", help="helmet-reports options for the study runs")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "helmet-scale"))
    args = parser.parse_args()

    rows = []
    for n in [int(size) for size in args.sizes.split(",") if size]:
        folder = write_synthetic(Path(args.data), n, Path(args.workdir) / f"synthetic-{n}")
        for stage, code in LIGHT_STAGES.items():
            seconds, peak, note = measure([sys.executable, "-c", PRELUDE + f"DATA = {str(folder)!r}; " + code])
            rows.append((n, stage, seconds, peak, note))
            print(f"{n:>6} {stage:18s} {seconds:8.1f}s {peak:6.2f} GiB {note}", flush=True)
    study = {}
    study_options = shlex.split(args.study_options)
    study_name = f"study {' '.join(study_options)}" if study_options else "full default study"
    study_sizes = [int(size) for size in args.study_sizes.split(",") if size]
    for n in [600] + study_sizes if study_sizes else []:
        data = (
            Path(args.data) if n == 600 else write_synthetic(Path(args.data), n, Path(args.workdir) / f"synthetic-{n}")
        )
        out = Path(tempfile.mkdtemp(prefix="helmet-scale-run-"))
        command = [
            sys.executable,
            "-m",
            "helmetlib.runner.study",
            "--data",
            str(data),
            "--weights",
            args.weights,
            "--out",
            str(out),
            "--cache-dir",
            str(out / ".cache"),
            "--run-id",
            f"n{n}",
            *study_options,
        ]
        seconds, peak, note = measure(command)
        study[n] = seconds
        rows.append((n, study_name, seconds, peak, note))
        print(f"{n:>6} {study_name:18s} {seconds:8.1f}s {peak:6.2f} GiB {note}", flush=True)
        for stage, stage_seconds in RunRecord.read(RunFolder(out / f"n{n}").record_file).stage_seconds.items():
            rows.append((n, f"  {stage}", stage_seconds, None, ""))
            print(f"{n:>6}   {stage:40s} {stage_seconds:8.1f}s", flush=True)
    for n, seconds in study.items():
        if n != 600:
            ratio = seconds / study[600]
            print(f"study at {n} images / at 600: {ratio:.2f}x (per-image cost {ratio / (n / 600):.2f}x)")
    print("\n| N | stage | seconds | peak RSS (GiB) |\n|---|---|---|---|")
    for n, stage, seconds, peak, _ in rows:
        print(f"| {n} | {stage} | {seconds:.1f} | {'' if peak is None else f'{peak:.2f}'} |")


if __name__ == "__main__":
    main()
